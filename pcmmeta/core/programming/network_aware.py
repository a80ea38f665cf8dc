"""Programming that knows the network: precision where the network's objective needs it.

A network does not need every device equally precise (SWIM, Yan et al. DAC 2022). This method
programs every device blind (`single_shot`: RESET, then the mean trajectory's pulse count, no
read) and verifies (`write_verify` with the open-loop burst and SET-on-flat, the strongest
write-verify here) only the devices whose precision is worth its time, within a budget of total
device time:

1. **Where precision pays.** For device i, `sensitivity.conductance_sensitivity` gives s_i, the
   empirical Fisher diagonal of the meta-objective. Simulating both ways on the device model
   (a few draws) gives the expected squared error and time of each: e_blind, e_verified,
   t_blind, t_verified. Verifying device i is expected to save ½·s_i·(e_blind − e_verified) of
   loss for t_verified − t_blind of time; devices are ranked by that ratio (`priority`).
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
    budget_s: float = eqx.field(static=True)  # total device time allowed, s
    tolerance: float = eqx.field(static=True, default=0.5)  # µS, of the verified devices
    max_pulses: int = eqx.field(static=True, default=100)  # per verified device, SET + RESET
    cost: ProgrammingCost = ProgrammingCost()
    lowered: tuple[str, ...] = eqx.field(static=True, default=())  # layers whose pairs are lowered

    @property
    def budget(self) -> int:
        return self.max_pulses

    def conductances(self, layers, device):
        return {n: lowered_pair(g, device.g_min) if n in self.lowered else g for n, g in layers.items()}

    def program(self, key, device, target):
        blind = single_shot(key, device, target)
        checked = verified(key, device, target, self.tolerance, self.max_pulses)
        chosen = admitted(
            self.order,
            counts_time(self.cost, blind),
            counts_time(self.cost, checked),
            self.budget_s,
            worst_case_s(self.cost, self.max_pulses),
        )

        def pick(a, b):
            return jnp.where(chosen.reshape(chosen.shape + (1,) * (a.ndim - 1)), a, b) if a.ndim else jnp.maximum(a, b)

        return jax.tree.map(pick, checked, blind)


def priority(
    sensitivity: Float[Array, " n"],
    blind_error2: Float[Array, " n"],
    verified_error2: Float[Array, " n"],
    blind_s: Float[Array, " n"],
    verified_s: Float[Array, " n"],
    cost: ProgrammingCost,
) -> Float[Array, " n"]:
    """Expected loss saved per second of device time by verifying each device instead of
    programming it blind: ½·s·(e_blind − e_verified) / (t_verified − t_blind), the extra time
    floored at one verify read (a verification never costs less than its reads)."""
    saved = 0.5 * sensitivity * (blind_error2 - verified_error2)
    extra = jnp.maximum(verified_s - blind_s, cost.read_s)
    return saved / extra


class ProgrammingExpectation(eqx.Module):
    """Per device, over `draws` simulations on the device model: mean squared error (µS²) and
    mean time (s) of each way of programming it."""

    blind_error2: Float[Array, " n"]
    verified_error2: Float[Array, " n"]
    blind_s: Float[Array, " n"]
    verified_s: Float[Array, " n"]


@eqx.filter_jit
def expectation(
    key: PRNGKeyArray,
    device: AbstractPCMDevice,
    target: Float[Array, " n"],
    tolerance: float,
    max_pulses: int,
    cost: ProgrammingCost,
    draws: int,
) -> ProgrammingExpectation:
    """Simulate both ways of programming `draws` times (keys split from `key`)."""

    def one(k):
        blind, checked = single_shot(k, device, target), verified(k, device, target, tolerance, max_pulses)
        return (
            (blind.state.g_prog - target) ** 2,
            (checked.state.g_prog - target) ** 2,
            counts_time(cost, blind),
            counts_time(cost, checked),
        )

    out = jax.lax.map(one, jax.random.split(key, draws))
    return ProgrammingExpectation(*(jnp.mean(a, axis=0) for a in out))


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
) -> NetworkAwareProgramming:
    """The method for these (already lowered) flat targets and their sensitivities: the devices
    whose verification is expected to save loss, ranked by `priority` from `draws` simulations. `ValueError` when `budget_s` does not cover
    programming every device blind (known exactly: the pulse counts follow from the targets)."""
    expected = expectation(key, device, target, tolerance, max_pulses, cost, draws)
    blind_total = float(jnp.sum(expected.blind_s))
    if budget_s < blind_total:
        raise ValueError(
            f"a budget of {budget_s * 1e6:.4g} µs does not cover programming every device blind ({blind_total * 1e6:.4g} µs)"
        )
    rank = priority(
        sensitivity, expected.blind_error2, expected.verified_error2, expected.blind_s, expected.verified_s, cost
    )
    order = np.argsort(-np.asarray(rank), kind="stable")
    order = order[np.asarray(rank)[order] > 0]  # no time on devices whose precision saves nothing
    return NetworkAwareProgramming(
        jnp.asarray(order, jnp.int32), float(budget_s), tolerance, max_pulses, cost, tuple(lowered)
    )
