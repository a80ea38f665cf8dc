"""PCM device families behind one interface (`AbstractPCMDevice`): `nandakumar2018`
(Nandakumar et al. 2018) and `joshi2020` (IBM aihwkit's PCM inference model, Joshi et al. 2020).
docs/device-model.md describes both and when to prefer which."""

from .base import AbstractPCMDevice, DeviceState, where_state
from .joshi import Joshi2020
from .nandakumar import Nandakumar2018
from .registry import BUILTIN_DEVICES, DEFAULT_DEVICE, DEFAULT_FAMILY, FAMILIES, FAMILY_DEVICES, load_device

__all__ = [
    "AbstractPCMDevice",
    "BUILTIN_DEVICES",
    "DEFAULT_DEVICE",
    "DEFAULT_FAMILY",
    "DeviceState",
    "FAMILIES",
    "FAMILY_DEVICES",
    "Joshi2020",
    "Nandakumar2018",
    "load_device",
    "where_state",
]
