"""What a programming policy was trained for (`PolicyInfo`, stored in the policy file's header)
and the device fingerprint that keys it. The file itself is `pcmmeta.io.policy_file`."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from pcmmeta.core.devices import AbstractPCMDevice

#: Format 1: an MLP choosing the burst and an acceptance band (trained by evolution strategies);
#: format 2: action tables planned by dynamic programming.
POLICY_FORMAT = 2


def device_fingerprint(device: AbstractPCMDevice) -> str:
    """A short hash of the device's family and parameters (not its name): a policy is valid for
    these. A nandakumar2018 device hashes its parameters alone, as before there were families;
    every other family hashes its name too."""
    params = {k: float(v) for k, v in device.to_dict().items() if k != "name"}
    body = params if device.family == "nandakumar2018" else {"family": device.family, "parameters": params}
    text = json.dumps(body, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class PolicyInfo:
    """What a policy was trained for and how; stored in the policy file's header."""

    device_name: str
    device_fingerprint: str
    tolerance_uS: float
    max_pulses: int
    cost: dict
    grid: dict  # `ProgrammingPolicy.grid()`: the tables' shape and axes
    price_us: float = 0.0  # the calibrated price of one device outside tolerance
    targets: str = "uniform"
    iterations: int = 0
    seed: int = 0
    format: int = POLICY_FORMAT
