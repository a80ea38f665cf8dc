"""PCM device families behind one interface (`AbstractPCMDevice`): `nandakumar2018`
(Nandakumar et al. 2018) and `joshi2020` (IBM aihwkit's PCM inference model, Joshi et al. 2020).
docs/device-model.md describes both and when to prefer which."""

from pcmmeta.core.devices.base import AbstractPCMDevice, DeviceState, where_state
from pcmmeta.core.devices.joshi import Joshi2020
from pcmmeta.core.devices.nandakumar import Nandakumar2018
from pcmmeta.core.devices.registry import (
    BUILTIN_DEVICES,
    DEFAULT_DEVICE,
    DEFAULT_FAMILY,
    FAMILIES,
    FAMILY_DEVICES,
)

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
    "where_state",
]
