"""Policy files and the policy cache: what a policy was trained for, and refusing it elsewhere.

A file is a magic line, a JSON header line (`PolicyInfo`: the device's parameter hash, tolerance,
budget, cost model, the planning grid, how it was trained) and the Equinox leaves (the action
tables). A policy is valid for one device's parameters, tolerance and budget; `deploy --method
learned` reads it from `$PCMMETA_CACHE/policies/`, keyed by those and the cost model, and trains
one there on first use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import equinox as eqx

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.programming.cost import ProgrammingCost
from pcmmeta.core.programming.learned import ProgrammingPolicy
from pcmmeta.core.programming.policy_info import POLICY_FORMAT, PolicyInfo, device_fingerprint
from pcmmeta.errors import UserInputError
from pcmmeta.io.runs import atomic_write_bytes
from pcmmeta.runtime.cache_dir import default_cache_dir

_MAGIC = b"PCMMETA-PROGRAMMING-POLICY\n"


def save_policy(path: str | Path, policy: "ProgrammingPolicy", info: PolicyInfo) -> None:
    """One file: the magic line, the JSON header line, then the Equinox leaves."""
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, policy)
    header = json.dumps(dataclasses.asdict(info), sort_keys=True).encode()
    atomic_write_bytes(Path(path), _MAGIC + header + b"\n" + buf.getvalue())


def load_policy(path: str | Path) -> tuple["ProgrammingPolicy", PolicyInfo]:
    """The policy in `path` and what it was trained for; one-line errors for other files."""
    path = Path(path)
    again = "train it again with `pcmmeta learn-programming`"
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise UserInputError(f"{path}: is a folder, not a policy file") from None
    except OSError as err:
        raise UserInputError(f"{path}: cannot read the policy: {err.strerror}") from None
    if not data.startswith(_MAGIC) or b"\n" not in data[len(_MAGIC) :]:
        raise UserInputError(f"{path}: not a programming-policy file (write one with `pcmmeta learn-programming`)")
    header, leaves = data[len(_MAGIC) :].split(b"\n", 1)
    try:
        fields = json.loads(header)
    except ValueError:
        raise UserInputError(f"{path}: damaged policy header; {again}") from None
    if isinstance(fields, dict) and fields.get("format", POLICY_FORMAT) != POLICY_FORMAT:
        raise UserInputError(
            f"{path}: a policy of format {fields.get('format')!r} (an older pcmmeta); this pcmmeta reads format {POLICY_FORMAT}: {again}"
        )
    try:
        info = PolicyInfo(**fields)
        like = ProgrammingPolicy.like(info.grid)
    except (TypeError, KeyError, ValueError):
        raise UserInputError(f"{path}: damaged policy header; {again}") from None
    try:
        policy = eqx.tree_deserialise_leaves(io.BytesIO(leaves), like)
    except Exception:  # numpy/equinox raise several kinds for a truncated file
        raise UserInputError(f"{path}: damaged policy (truncated?); {again}") from None
    return policy, info


def check_policy_fits(
    path: str | Path, info: PolicyInfo, device: AbstractPCMDevice, tolerance: float, max_pulses: int
) -> None:
    """Refuse a policy trained for other device parameters, tolerance or budget (one line)."""
    if info.device_fingerprint != device_fingerprint(device):
        raise UserInputError(
            f"{path}: trained for device {info.device_name!r} (parameters {info.device_fingerprint}), not for "
            f"{device.name!r} ({device_fingerprint(device)}); train one with `pcmmeta learn-programming --device …` or pass --force-policy"
        )
    if info.tolerance_uS != tolerance or info.max_pulses != max_pulses:
        raise UserInputError(
            f"{path}: trained for --tolerance {info.tolerance_uS} --max-pulses {info.max_pulses}, asked for "
            f"{tolerance} and {max_pulses}; train one for these or pass --force-policy"
        )


def cached_policy_path(
    device: AbstractPCMDevice, tolerance: float, max_pulses: int, cost: ProgrammingCost, cache_dir: Path
) -> Path:
    """Where the policy for this device, tolerance, budget and cost model is cached (the file
    format is part of the name: an older pcmmeta's cached policies are not picked up)."""
    cost_hash = hashlib.sha256(json.dumps(cost.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return (
        Path(cache_dir)
        / "policies"
        / f"{device_fingerprint(device)}-tol{tolerance!r}-b{max_pulses}-c{cost_hash}-f{POLICY_FORMAT}.policy"
    )


def obtain_policy(
    device: AbstractPCMDevice,
    tolerance: float,
    max_pulses: int,
    cost: ProgrammingCost = ProgrammingCost(),
    path: str | Path | None = None,
    force: bool = False,
    cache_dir: Path | None = None,
    train: Callable[[], tuple["ProgrammingPolicy", PolicyInfo]] | None = None,
) -> tuple["ProgrammingPolicy", PolicyInfo, Path, bool]:
    """The policy for this device, tolerance and budget: from `path` (checked unless `force`),
    else from the cache, else trained by `train()` and cached. Returns (policy, info, the file,
    whether it was trained now)."""
    if path is not None:
        policy, info = load_policy(path)
        if not force:
            check_policy_fits(path, info, device, tolerance, max_pulses)
        return policy, info, Path(path), False
    if cache_dir is None:
        cache_dir = default_cache_dir()
    cached = cached_policy_path(device, tolerance, max_pulses, cost, cache_dir)
    if cached.is_file():
        policy, info = load_policy(cached)
        check_policy_fits(cached, info, device, tolerance, max_pulses)
        return policy, info, cached, False
    if train is None:
        raise UserInputError(
            f"no programming policy for device {device.name!r} in {cached.parent}; run `pcmmeta learn-programming` first"
        )
    policy, info = train()
    cached.parent.mkdir(parents=True, exist_ok=True)
    save_policy(cached, policy, info)
    return policy, info, cached, True
