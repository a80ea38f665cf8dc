"""`pcmmeta learn-programming` as a service: train a programming policy for a device, write its
policy file, and measure it against write-verify on held-out targets."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.networks import AbstractNetwork
from pcmmeta.core.programming import (
    PolicyTraining,
    ProgrammingCost,
    ProgrammingPolicy,
    WriteVerify,
    learn_policy,
    make_method,
)
from pcmmeta.core.programming.compare import MethodFigures, compare_methods
from pcmmeta.core.programming.policy_info import PolicyInfo
from pcmmeta.core.programming.training import sample_targets
from pcmmeta.io.policy_file import cached_policy_path, save_policy

#: Held-out targets the report measures the policy on.
HELD_OUT_TARGETS = 100_000
#: The held-out targets and the comparison's noise come from the training seed plus these (large
#: primes: no training seed a user gives lands on them).
HELD_OUT_TARGETS_OFFSET = 1_000_003
HELD_OUT_NOISE_OFFSET = 2_000_003


def trained_conductances(network: AbstractNetwork) -> Float[Array, " m"]:
    """Every conductance of a trained network (µS), flat, in the order of `network.layers`:
    targets as a deployment meets them (`learn-programming --targets RUN`'s pool)."""
    return jnp.concatenate([g.ravel() for g in network.layers.values()])


@dataclasses.dataclass
class LearnProgrammingReport:
    policy_path: Path
    info: PolicyInfo
    objective_per_iteration: list[float]
    held_out: list[MethodFigures]  # write-verify, then the learned policy

    def to_json(self) -> dict:
        return {
            "policy": str(self.policy_path),
            "info": dataclasses.asdict(self.info),
            "objective_per_iteration": self.objective_per_iteration,
            "held_out": [dataclasses.asdict(f) for f in self.held_out],
        }


@dataclasses.dataclass
class LearnedPolicy:
    policy: ProgrammingPolicy
    info: PolicyInfo
    path: Path  # the policy file written
    objective_per_iteration: list[float]


def learn_programming(
    device: AbstractPCMDevice,
    tolerance: float,
    max_pulses: int,
    cost: ProgrammingCost,
    iterations: int,
    seed: int,
    out: Path | None,
    cache_dir: Path,
    pool: Float[Array, " m"] | None = None,
    targets_label: str = "uniform",
    on_iteration: Callable[[int, float], None] | None = None,
) -> LearnedPolicy:
    """Train (`iterations` calibration steps, `seed`; targets uniform or drawn from `pool`, a
    run's conductances) and write the policy to `out` (default: the cache `deploy --method
    learned` reads under `cache_dir`)."""
    policy, info, history = learn_policy(
        jax.random.key(seed),
        device,
        tolerance,
        max_pulses,
        cost,
        PolicyTraining(iterations=iterations),
        pool,
        targets_label,
        seed,
        on_iteration,
    )
    path = out if out is not None else cached_policy_path(device, tolerance, max_pulses, cost, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_policy(path, policy, info)
    return LearnedPolicy(policy, info, path, history)


def held_out_report(
    learned: LearnedPolicy,
    device: AbstractPCMDevice,
    tolerance: float,
    max_pulses: int,
    cost: ProgrammingCost,
    seed: int,
    pool: Float[Array, " m"] | None = None,
) -> LearnProgrammingReport:
    """The policy against write-verify on `HELD_OUT_TARGETS` targets drawn like the training
    targets, with targets and noise of their own (`seed` + the offsets above)."""
    held_out = sample_targets(jax.random.key(seed + HELD_OUT_TARGETS_OFFSET), device, HELD_OUT_TARGETS, pool)
    methods = [WriteVerify(tolerance, max_pulses), make_method("learned", tolerance, max_pulses, learned.policy)]
    figures, _ = compare_methods(
        jax.random.key(seed + HELD_OUT_NOISE_OFFSET), device, held_out, methods, tolerance, cost
    )
    return LearnProgrammingReport(learned.path, learned.info, learned.objective_per_iteration, list(figures))
