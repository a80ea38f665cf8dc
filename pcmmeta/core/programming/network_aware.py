"""Programming that knows the network: precision where the network's objective needs it.

A network does not need every device equally precise (SWIM, Yan et al. DAC 2022). This method
programs every device blind (`single_shot`: RESET, then the mean trajectory's pulse count, no
read) and verifies (`write_verify` with the open-loop burst and SET-on-flat, the strongest
write-verify here) only the devices whose precision is worth its time, within a budget of total
device time, each to one of two tolerances: the tight one (write-verify's) or a loose one
(`loose_tolerance`, cheaper: fewer pulses and reads near the target):

1. **Where precision pays.** For device i, `sensitivity.conductance_sensitivity` gives s_i, the
   empirical Fisher diagonal of the meta-objective. Simulating each way on the device model
   (a few draws) gives the expected squared error and time of each: e_blind, e_loose, e_tight,
   t_blind, t_loose, t_tight. Verifying device i is expected to save ½·s_i·(e_blind − e) of
   loss for t − t_blind of time. The plan (`tiers`) spends the budget greedily on
   the upgrades blind → loose and loose → tight of all devices, in order of loss saved per
   second (a device whose second upgrade pays better than its first goes straight to tight),
   until their expected times fill it; devices are verified in order of their first upgrade's
   rate, each to the tolerance the plan chose (devices beyond the planned ones follow, to the
   tolerance of their first upgrade, if the actual times leave room).
2. **The budget is never exceeded.** Every device's blind cost is known before programming (the
   pulse count is a function of its target), so the plan refuses a budget below it. Then, in
   order of priority, a device is verified only if the budget left covers the worst case of its
   verification (`max_pulses` pulses and `max_pulses` + 1 reads; `worst_case_s`); what it
   actually spends is taken from the budget. The total device time is therefore ≤ `budget_s`
   for every draw of the device noise, not only on average.
3. **Lower pairs.** A weight is W ∝ G⁺ − G⁻: a pair (5, 3) µS and a pair (2.1, 0.1) µS are the
   same weight, and the second needs far fewer pulses (the smaller device is the RESET level
   itself). In the layers named in `lowered` (the body: the head keeps its trained operating
   point, where the inner rule's pulses were meta-learned) the smaller device of every pair is
   programmed to g_min and the larger to g_min + |G⁺ − G⁻|.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.programming.base import AbstractProgrammingMethod, ProgramResult
from pcmmeta.core.programming.cost import ProgrammingCost, counts_time
from pcmmeta.core.programming.single_shot import single_shot
from pcmmeta.core.programming.write_verify import write_verify

#: Mean SET increment (µS) below which an overshoot is answered with a SET, not a RESET: the
#: same as `WriteVerifySetOnFlat`'s default.
SET_ON_FLAT_US = 0.1


def lowered_pair(g: Float[Array, "2 ..."], g_min: float) -> Float[Array, "2 ..."]:
    """The same weights (G⁺ − G⁻) with the smaller device of each pair at `g_min` (µS)."""
    return g - (jnp.minimum(g[0], g[1]) - g_min)[None]


def verified(
    key: PRNGKeyArray, device: AbstractPCMDevice, target: Float[Array, " n"], tolerance: float, max_pulses: int
) -> ProgramResult:
    """The verification a device gets when the plan chooses it: write-verify with the open-loop
    burst and SET-on-flat (`WriteVerifyBurst`)."""
    return write_verify(key, device, target, tolerance, max_pulses, burst=True, set_on_flat_uS=SET_ON_FLAT_US)


#: The loose tolerance as a multiple of the tight one (write-verify's), fixed a priori: twice the
#: read noise at mid-range for the default 0.5 µS, where a verify read still tells the target
#: from its neighbours.
LOOSE_FACTOR = 2.0


def worst_case_s(cost: ProgrammingCost, max_pulses: int) -> float:
    """The most time (s) one verified device can take: the initial RESET, `max_pulses` pulses
    (SET or RESET) and a verify read before each and after the last."""
    return cost.reset_s + max_pulses * max(cost.set_s, cost.reset_s) + (max_pulses + 1) * cost.read_s


def _compensated_sum(values: Float[Array, " n"]) -> Float[Array, ""]:
    """Σ values in float32 with Kahan's compensation: an error of a few ulps of the sum, not
    the n ulps a plain running sum of a million devices' times can reach."""

    def step(carry, x):
        total, c = carry
        y = x - c
        t = total + y
        return (t, (t - total) - y), None

    (total, _), _ = jax.lax.scan(step, (jnp.zeros((), values.dtype), jnp.zeros((), values.dtype)), values)
    return total


def admitted(
    order: Int[Array, " m"],
    blind_s: Float[Array, " n"],
    verified_s: Float[Array, " n"],
    budget_s: float,
    worst_s: float,
) -> Bool[Array, " n"]:
    """Which devices are verified. Blind programming of every device is paid first; then, in
    `order` (the devices worth verifying, m ≤ n), a device is verified if the budget left covers
    its worst case (`worst_s` − its blind cost), and its actual extra time (`verified_s` −
    `blind_s`) is spent. Sums are compensated and a margin of 1e-5 of the budget is kept, so
    float32 rounding cannot admit a device the exact sums would refuse."""
    margin = 1e-5 * budget_s
    left0 = jnp.float32(budget_s) - _compensated_sum(blind_s)

    def step(carry, i):
        left, c = carry  # the budget left, with its Kahan compensation
        take = left - margin >= worst_s - blind_s[i]
        y = -jnp.where(take, verified_s[i] - blind_s[i], 0.0) - c
        t = left + y
        return (t, (t - left) - y), take

    _, taken = jax.lax.scan(step, (left0, jnp.zeros((), left0.dtype)), order)
    return jnp.zeros(blind_s.shape, bool).at[order].set(taken)


class NetworkAwareProgramming(AbstractProgrammingMethod):
    """Blind for every device, verified where the plan's priority says and the budget allows
    (module docstring). Build it with `plan_network_aware`."""

    name: ClassVar[str] = "network-aware"
    order: Int[Array, " m"]  # the devices worth verifying (flat index, layer order), highest priority first
    loose: Bool[Array, " m"]  # per device of `order`: verified to `loose_tolerance` (else to `tolerance`)
    budget_s: float = eqx.field(static=True)  # total device time allowed, s
    tolerance: float = eqx.field(static=True, default=0.5)  # µS, of the tightly verified devices
    max_pulses: int = eqx.field(static=True, default=100)  # per verified device, SET + RESET
    cost: ProgrammingCost = ProgrammingCost()
    lowered: tuple[str, ...] = eqx.field(static=True, default=())  # layers whose pairs are lowered
    loose_tolerance: float | None = eqx.field(static=True, default=None)  # µS; None: LOOSE_FACTOR × tolerance

    @property
    def budget(self) -> int:
        return self.max_pulses

    @property
    def loose_uS(self) -> float:
        """The loose tier's tolerance, µS."""
        return LOOSE_FACTOR * self.tolerance if self.loose_tolerance is None else self.loose_tolerance

    def conductances(self, layers, device):
        return {n: lowered_pair(g, device.g_min) if n in self.lowered else g for n, g in layers.items()}

    def program(self, key, device, target):
        blind = single_shot(key, device, target)
        tight = verified(key, device, target, self.tolerance, self.max_pulses)
        loose = verified(key, device, target, self.loose_uS, self.max_pulses)
        is_loose = jnp.zeros(target.shape, bool).at[self.order].set(self.loose)

        def pick(mask, a, b):
            return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b) if a.ndim else jnp.maximum(a, b)

        # the same worst case for both tolerances (`max_pulses`): only the time spent differs
        checked = jax.tree.map(lambda a, b: pick(is_loose, a, b), loose, tight)
        chosen = admitted(
            self.order,
            counts_time(self.cost, blind),
            counts_time(self.cost, checked),
            self.budget_s,
            worst_case_s(self.cost, self.max_pulses),
        )
        return jax.tree.map(lambda a, b: pick(chosen, a, b), checked, blind)


class ProgrammingExpectation(eqx.Module):
    """Per device, over `draws` simulations on the device model: mean squared error (µS²) and
    mean time (s) of each way of programming it (verified: to the tight tolerance; loose: to
    the loose one)."""

    blind_error2: Float[Array, " n"]
    verified_error2: Float[Array, " n"]
    blind_s: Float[Array, " n"]
    verified_s: Float[Array, " n"]
    loose_error2: Float[Array, " n"]
    loose_s: Float[Array, " n"]


@eqx.filter_jit
def expectation(
    key: PRNGKeyArray,
    device: AbstractPCMDevice,
    target: Float[Array, " n"],
    tolerance: float,
    max_pulses: int,
    cost: ProgrammingCost,
    draws: int,
    loose_tolerance: float,
) -> ProgrammingExpectation:
    """Simulate each way of programming `draws` times (keys split from `key`)."""

    def one(k):
        blind, checked = single_shot(k, device, target), verified(k, device, target, tolerance, max_pulses)
        loose = verified(k, device, target, loose_tolerance, max_pulses)
        return (
            (blind.state.g_prog - target) ** 2,
            (checked.state.g_prog - target) ** 2,
            counts_time(cost, blind),
            counts_time(cost, checked),
            (loose.state.g_prog - target) ** 2,
            counts_time(cost, loose),
        )

    out = jax.lax.map(one, jax.random.split(key, draws))
    return ProgrammingExpectation(*(jnp.mean(a, axis=0) for a in out))


def tiers(
    sensitivity: np.ndarray, expected: ProgrammingExpectation, budget_left_s: float, cost: ProgrammingCost
) -> tuple[np.ndarray, np.ndarray]:
    """The devices to verify, in order, and whether each is verified loosely (module docstring,
    1): upgrades blind → loose and loose → tight ranked by expected loss saved per second, taken
    while their expected times fit `budget_left_s` (the budget after blind programming). A
    device whose loose → tight upgrade pays better than blind → loose goes straight to tight.
    Devices whose verification saves nothing are left out."""
    s = np.asarray(sensitivity, np.float64)
    e0, e1, e2 = (
        np.asarray(a, np.float64) for a in (expected.blind_error2, expected.loose_error2, expected.verified_error2)
    )
    t0, t1, t2 = (np.asarray(a, np.float64) for a in (expected.blind_s, expected.loose_s, expected.verified_s))
    floor = cost.read_s  # a verification never costs less than its reads
    cost1, cost2, cost_direct = np.maximum(t1 - t0, floor), np.maximum(t2 - t1, floor), np.maximum(t2 - t0, floor)
    rate1 = 0.5 * s * (e0 - e1) / cost1
    rate2 = 0.5 * s * (e1 - e2) / cost2
    rate_direct = 0.5 * s * (e0 - e2) / cost_direct
    direct = rate2 > rate1  # not concave: loose first would be the worse deal
    first_rate = np.where(direct, rate_direct, rate1)
    first_tier = np.where(direct, 2, 1)
    first_cost = np.where(direct, cost_direct, cost1)
    # candidate upgrades: every device's first; the loose ones' second where it saves loss
    second = ~direct & (rate2 > 0)
    device = np.concatenate([np.arange(s.size), np.flatnonzero(second)])
    rate = np.concatenate([first_rate, rate2[second]])
    tier = np.concatenate([first_tier, np.full(int(second.sum()), 2)])
    extra = np.concatenate([first_cost, cost2[second]])
    keep = rate > 0
    device, rate, tier, extra = device[keep], rate[keep], tier[keep], extra[keep]
    ranked = np.argsort(-rate, kind="stable")
    within = np.cumsum(extra[ranked]) <= budget_left_s
    planned = np.zeros(s.size, np.int64)  # 0: not planned (its first upgrade's tier then)
    np.maximum.at(planned, device[ranked][within], tier[ranked][within])
    order = np.argsort(-np.where(first_rate > 0, first_rate, -np.inf), kind="stable")
    order = order[first_rate[order] > 0]
    chosen = np.where(planned[order] > 0, planned[order], first_tier[order])
    return order, chosen == 1


def plan_network_aware(
    key: PRNGKeyArray,
    device: AbstractPCMDevice,
    target: Float[Array, " n"],
    sensitivity: Float[Array, " n"],
    budget_s: float,
    tolerance: float = 0.5,
    max_pulses: int = 100,
    cost: ProgrammingCost = ProgrammingCost(),
    lowered: tuple[str, ...] = (),
    draws: int = 4,
    loose_tolerance: float | None = None,
) -> NetworkAwareProgramming:
    """The method for these (already lowered) flat targets and their sensitivities: the devices
    whose verification is expected to save loss, in the order and to the tolerances `tiers`
    chooses from `draws` simulations (`loose_tolerance`: default `LOOSE_FACTOR` × `tolerance`;
    equal to `tolerance`, one tier). `ValueError` when `budget_s` does not cover programming
    every device blind (known exactly: the pulse counts follow from the targets)."""
    loose_tolerance = LOOSE_FACTOR * tolerance if loose_tolerance is None else loose_tolerance
    expected = expectation(key, device, target, tolerance, max_pulses, cost, draws, loose_tolerance)
    # each device's blind time (its pulse count follows from its target, whatever the key) summed
    # in float64, as a deployment's total is: a float32 sum can round below that total and admit
    # a budget that blind programming alone exceeds
    blind_total = float(np.sum(np.asarray(counts_time(cost, single_shot(key, device, target)), np.float64)))
    if budget_s < blind_total:
        raise ValueError(
            f"a budget of {budget_s * 1e6:.4g} µs does not cover programming every device blind ({blind_total * 1e6:.4g} µs)"
        )
    order, loose = tiers(np.asarray(sensitivity), expected, budget_s - blind_total, cost)
    return NetworkAwareProgramming(
        jnp.asarray(order, jnp.int32),
        jnp.asarray(loose),
        float(budget_s),
        tolerance,
        max_pulses,
        cost,
        tuple(lowered),
        loose_tolerance,
    )
