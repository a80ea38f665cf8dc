"""Device families and built-in devices by name, and the body of a device file (read and
written by `pcmmeta.io.device_file`).

A device file names its family with the `family:` key (`nandakumar2018` or `joshi2020`); a file
without one is a `nandakumar2018` device (files written before there were two families). Each
family validates its own parameters (`AbstractPCMDevice.check`).
"""

from __future__ import annotations

import difflib

from pcmmeta.core.devices.base import AbstractPCMDevice
from pcmmeta.core.devices.joshi import Joshi2020
from pcmmeta.core.devices.nandakumar import Nandakumar2018
from pcmmeta.errors import UserInputError, safe_text, short_repr

#: Device families by the name a device file gives in `family:`.
FAMILIES: dict[str, type[AbstractPCMDevice]] = {f.family: f for f in (Nandakumar2018, Joshi2020)}
#: The family of a device file without a `family:` key.
DEFAULT_FAMILY = "nandakumar2018"
#: Top-level keys of a device file.
FILE_KEYS = ("name", "family", "parameters")

#: Built-in devices by name.
BUILTIN_DEVICES: dict[str, AbstractPCMDevice] = {
    "nandakumar2018": Nandakumar2018(),
    "nandakumar2018-simplified": Nandakumar2018(
        set_mean_intercept=0.892,
        set_mean_history=0.0,
        set_std_slope=0.09,
        set_std_intercept=0.575,
        set_std_history=0.0,
        name="nandakumar2018-simplified",
    ),
    "joshi2020": Joshi2020(),
}
DEFAULT_DEVICE = "nandakumar2018"
#: The built-in device that stands for each family (fit-device's default prior).
FAMILY_DEVICES = {"nandakumar2018": "nandakumar2018", "joshi2020": "joshi2020"}


def family_of(body: dict, where: str) -> type[AbstractPCMDevice]:
    """The family class a device file's `family:` key names (default nandakumar2018)."""
    family = body.get("family", DEFAULT_FAMILY)
    if not isinstance(family, str) or family not in FAMILIES:
        close = difflib.get_close_matches(str(family)[:100], list(FAMILIES), n=1) if isinstance(family, str) else []
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserInputError(f"{where}: 'family' must be one of {', '.join(FAMILIES)}, got {short_repr(family)}{hint}")
    return FAMILIES[family]


def device_from_body(body: object, where: str, default_name: str) -> AbstractPCMDevice:
    """The device a device file's parsed body describes (`UserInputError` naming `where`)."""
    if not isinstance(body, dict) or not isinstance(body.get("parameters"), dict):
        raise UserInputError(f"{where}: expected a mapping with a 'parameters' mapping")
    for key in body:
        if key not in FILE_KEYS:
            close = difflib.get_close_matches(str(key)[:100], FILE_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserInputError(
                f"{where}: unknown key '{safe_text(str(key), 80)}'{hint}; a device file holds {', '.join(FILE_KEYS)}"
            )
    cls = family_of(body, where)
    params = body["parameters"]
    names = cls.parameter_names()
    unknown = sorted((str(k) for k in set(params) - set(names)), key=str)
    if unknown:
        owner = [f for f, c in FAMILIES.items() if c is not cls and unknown[0] in c.parameter_names()]
        hint = f" (a {owner[0]} parameter: add 'family: {owner[0]}')" if owner and "family" not in body else ""
        raise UserInputError(
            f"{where}: unknown parameter 'parameters.{safe_text(unknown[0], 80)}' for family {cls.family}{hint}"
        )
    values = {}
    for key in names:
        if key not in params:
            raise UserInputError(f"{where}: missing parameter 'parameters.{key}' (family {cls.family})")
        value = params[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or value != value
            or abs(value) == float("inf")
        ):
            raise UserInputError(f"{where}: 'parameters.{key}' must be a finite number, got {short_repr(value)}")
        values[key] = float(value)
    name = body.get("name", default_name)
    device = cls(**values, name=safe_text(str(name), 100))
    device.check(where)
    return device


def device_body(device: AbstractPCMDevice) -> dict:
    """A device file's body: name, family, parameters."""
    return {
        "name": device.name,
        "family": device.family,
        "parameters": {k: float(v) for k, v in device.to_dict().items() if k != "name"},
    }
