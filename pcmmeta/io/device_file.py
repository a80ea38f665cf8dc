"""Device YAML files: `name`, `family`, `parameters` (written by `fit-device` and `save_device`).

A file without `family:` is a `nandakumar2018` device (files written before there were two
families). Each family validates its own parameters (`AbstractPCMDevice.check`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pcmmeta.core.devices import BUILTIN_DEVICES, AbstractPCMDevice
from pcmmeta.core.devices.registry import device_body, device_from_body
from pcmmeta.errors import UserInputError
from pcmmeta.io.runs import atomic_write_text, read_yaml


def load_device(name_or_path: str | Path) -> AbstractPCMDevice:
    """A built-in device by name, or a device YAML file written by `fit-device` / `save_device`."""
    if str(name_or_path) in BUILTIN_DEVICES:
        return BUILTIN_DEVICES[str(name_or_path)]
    path = Path(name_or_path)
    if not path.exists():
        known = ", ".join(BUILTIN_DEVICES)
        raise UserInputError(f"{path}: no such device file (built-in devices: {known})")
    return device_from_body(read_yaml(path), str(path), path.stem)


def save_device(device: AbstractPCMDevice, path: str | Path) -> None:
    """Write a device YAML file (atomically): name, family, parameters."""
    atomic_write_text(Path(path), yaml.safe_dump(device_body(device), sort_keys=False))
