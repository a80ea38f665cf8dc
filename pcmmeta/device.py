"""The device interface under its historical name: re-exports `pcmmeta.devices`.

`PCMDevice` is the abstract device (`AbstractPCMDevice`): annotations `device: PCMDevice`
accept every family. Build a concrete device with `Nandakumar2018(...)` / `Joshi2020(...)` or
`load_device(name_or_path)`. See docs/device-model.md.
"""

from __future__ import annotations

from .devices import (
    BUILTIN_DEVICES,
    DEFAULT_DEVICE,
    DEFAULT_FAMILY,
    FAMILIES,
    FAMILY_DEVICES,
    AbstractPCMDevice,
    DeviceState,
    Joshi2020,
    Nandakumar2018,
    load_device,
)

PCMDevice = AbstractPCMDevice

#: Parameters of the `nandakumar2018` family (each family: `FAMILIES[f].parameter_names()`).
PARAMETER_NAMES: tuple[str, ...] = Nandakumar2018.parameter_names()


def _check_parameters(device: AbstractPCMDevice, where: str) -> None:
    """Refuse parameters that describe no device (`UserInputError` naming `where`)."""
    device.check(where)


__all__ = [
    "BUILTIN_DEVICES",
    "DEFAULT_DEVICE",
    "DEFAULT_FAMILY",
    "FAMILIES",
    "FAMILY_DEVICES",
    "AbstractPCMDevice",
    "DeviceState",
    "Joshi2020",
    "Nandakumar2018",
    "PARAMETER_NAMES",
    "PCMDevice",
    "load_device",
]
