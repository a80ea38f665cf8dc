"""Training a programming policy: plan it on the device model, calibrate it on the simulation.

`planning.plan_policy` gives the best policy for a price of precision (µs of programming time
that one device outside tolerance is worth). `train_policy` finds the cheapest price at which the
policy is at least as precise as write-verify on the training targets — the exact deploy-time
simulation (`learned_program`) against `write_verify` on the same targets with the same key:
fraction within tolerance not lower and RMS error not higher, each by `margin` standard errors of
the paired difference. It bisects the price on a log scale, one plan and one simulation per
iteration (the plan warm-starts from the last one). The training targets matter only here: the
plan itself is per target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.programming.cost import ProgrammingCost, counts_time
from pcmmeta.core.programming.learned import MAX_BURST, ProgrammingPolicy, learned_program
from pcmmeta.core.programming.planning import make_grid, plan_policy, transition_kernels
from pcmmeta.core.programming.policy_info import PolicyInfo, device_fingerprint
from pcmmeta.core.programming.write_verify import write_verify
from pcmmeta.runtime.compile_options import device_array_options


@dataclasses.dataclass(frozen=True)
class PolicyTraining:
    """Settings of `train_policy`."""

    iterations: int = 8  # bisection steps on the price (each: one plan, one simulation)
    batch: int = 200_000  # training targets, simulated with the policy and with write-verify
    cells: int = 240  # grid cells over [g_min, g_max] (≈ 0.05 µS on the default device)
    target_stride: int = 4  # a planned target every target_stride cells
    error_share: float = 0.25  # weight of min((error / tolerance)², 100) relative to a miss
    price_range: tuple[float, float] = (1.0, 1000.0)  # searched, in units of one SET pulse + one verify read
    margin: float = 2.0  # standard errors by which the policy must be at least as precise
    budget_slack: float = 0.005  # more devices at the pulse budget than write-verify: price too high
    max_burst: int = MAX_BURST


def sample_targets(
    key: PRNGKeyArray, device: AbstractPCMDevice, n: int, pool: Float[Array, " m"] | None = None
) -> Float[Array, " n"]:
    """Targets (µS): uniform over [g_min, g_max], or drawn from `pool` (a trained run's conductances)."""
    if pool is None:
        return jax.random.uniform(key, (n,), minval=device.g_min, maxval=device.g_max)
    return jax.random.choice(key, pool, (n,))


def as_precise(result, reference, target, tolerance: float, margin: float) -> bool:
    """Whether `result` lands at least as precisely as `reference` on the same targets: fraction
    within tolerance not lower and mean squared error not higher, by `margin` paired s.e."""
    target = np.asarray(target, np.float64)
    e, e_ref = (
        np.asarray(result.state.g_prog, np.float64) - target,
        np.asarray(reference.state.g_prog, np.float64) - target,
    )
    n = target.size

    def better_by(diff):  # mean of a paired difference, less `margin` standard errors
        se = diff.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0
        return diff.mean() - margin * se

    return bool(
        better_by((np.abs(e) <= tolerance).astype(float) - (np.abs(e_ref) <= tolerance)) >= 0
        and better_by(e_ref**2 - e**2) >= 0
    )


def _at_budget(result, max_pulses: int) -> float:
    return float(np.mean(np.asarray(result.pulses) >= max_pulses))


def _within(result, target, tolerance: float) -> float:
    return float(np.mean(np.abs(np.asarray(result.state.g_prog) - np.asarray(target)) <= tolerance))


def train_policy(
    key: PRNGKeyArray,
    device: AbstractPCMDevice,
    tolerance: float = 0.5,
    max_pulses: int = 100,
    cost: ProgrammingCost = ProgrammingCost(),
    settings: PolicyTraining = PolicyTraining(),
    pool: Float[Array, " m"] | None = None,
    on_iteration: Callable[[int, float], None] | None = None,
) -> tuple[ProgrammingPolicy, list[float], float]:
    """The cheapest planned policy as precise as write-verify on the training targets.

    The plan does not know the pulse budget: at too high a price it asks for more precision than
    the budget allows, devices end at the budget, and precision falls again; such a price counts
    as too high. Returns the policy, the time ratio (policy / write-verify) of every iteration's
    plan, and the price (µs) chosen. If no price tried reaches write-verify's precision, the one
    with the largest fraction within tolerance is used.
    """
    k_targets, k_prog = jax.random.split(key)
    target = sample_targets(k_targets, device, settings.batch, pool)
    wv = jax.jit(
        lambda k, g: write_verify(k, device, g, tolerance, max_pulses), compiler_options=device_array_options()
    )(k_prog, target)
    wv_time = float(np.mean(np.asarray(counts_time(cost, wv))))
    grid = make_grid(device, settings.cells, settings.target_stride)
    kernels = transition_kernels(device, grid, settings.max_burst)
    run = jax.jit(lambda k, g, p: learned_program(k, device, g, p, max_pulses), compiler_options=device_array_options())
    unit_us = max((cost.set_s + cost.read_s) * 1e6, cost.reset_s * 1e6, 1e-6)
    lo, hi = (np.log(p * unit_us) for p in settings.price_range)
    wv_at_budget = _at_budget(wv, max_pulses)
    best, value, history, tried = None, None, [], []

    def attempt(log_price):
        nonlocal value
        plan = plan_policy(
            device, grid, kernels, tolerance, cost, float(np.exp(log_price)), settings.error_share, value=value
        )
        value = plan.value
        result = run(k_prog, target, plan.policy)
        history.append(float(np.mean(np.asarray(counts_time(cost, result)))) / wv_time if wv_time > 0 else 1.0)
        if on_iteration is not None:
            on_iteration(len(history) - 1, history[-1])
        return plan.policy, result

    for _ in range(settings.iterations):
        mid = (lo + hi) / 2
        policy, result = attempt(mid)
        tried.append((mid, policy, _within(result, target, tolerance)))
        if as_precise(result, wv, target, tolerance, settings.margin):
            best, hi = (policy, mid), mid
        elif _at_budget(result, max_pulses) > wv_at_budget + settings.budget_slack:
            hi = mid  # the plan ignores the budget: asked for too much precision, devices end at the budget
        else:
            lo = mid
    if best is None:  # none was as precise as write-verify: the most precise tried
        log_price, policy, _ = max(tried, key=lambda row: row[2])
        best = (policy, log_price)
    return best[0], history, float(np.exp(best[1]))


def learn_policy(
    key: PRNGKeyArray,
    device: AbstractPCMDevice,
    tolerance: float = 0.5,
    max_pulses: int = 100,
    cost: ProgrammingCost = ProgrammingCost(),
    settings: PolicyTraining = PolicyTraining(),
    pool: Float[Array, " m"] | None = None,
    targets_label: str = "uniform",
    seed: int = 0,
    on_iteration: Callable[[int, float], None] | None = None,
) -> tuple[ProgrammingPolicy, PolicyInfo, list[float]]:
    """`train_policy` plus the `PolicyInfo` that goes into the policy file."""
    policy, history, price = train_policy(key, device, tolerance, max_pulses, cost, settings, pool, on_iteration)
    info = PolicyInfo(
        device_name=device.name,
        device_fingerprint=device_fingerprint(device),
        tolerance_uS=float(tolerance),
        max_pulses=int(max_pulses),
        cost=cost.to_dict(),
        grid=policy.grid(),
        price_us=price,
        targets=targets_label,
        iterations=settings.iterations,
        seed=seed,
    )
    return policy, info, history
