"""Iterative write-verify: what every PCM chip does.

All devices in parallel, a `lax.while_loop` with masks: RESET at t = 0, then each tick, one
`step_s` apart: verify read; within `tolerance` of the target → done; below → one SET pulse;
above (overshoot) → RESET and start again. A device stops when done or when it has spent
`max_pulses` pulses (SET and RESET both count; it still gets its last verify read). Precision is
bounded by read noise: a correct device can read out of tolerance and be pulsed or RESET again
(docs/chip.md).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..device import PCMDevice
from .base import TICK_S, AbstractProgrammingMethod, ProgramResult


def write_verify(
    key: PRNGKeyArray,
    device: PCMDevice,
    target: Float[Array, "..."],
    tolerance: float = 0.5,
    max_pulses: int = 100,
    step_s: float = TICK_S,
) -> ProgramResult:
    """Iterative write-verify of every device to `target` (µS) within `tolerance` (µS)."""
    k_reset, k_loop = jax.random.split(key)
    state = device.initial_state(k_reset, target.shape, t=0.0)
    zeros = jnp.zeros(target.shape, jnp.int32)
    active = jnp.ones(target.shape, bool)

    def cond(carry):
        active, i = carry[-2], carry[-1]
        return jnp.any(active) & (i <= max_pulses)

    def body(carry):
        state, sets, resets, reads, converged, active, i = carry
        t = (i + 1).astype(jnp.float32) * step_s
        k_read, k_set, k_reset = jax.random.split(jax.random.fold_in(k_loop, i), 3)
        error = device.read(k_read, state, t) - target
        reads = reads + active
        ok = jnp.abs(error) <= tolerance
        converged = converged | (active & ok)
        budget_left = sets + resets < max_pulses
        do_set = active & ~ok & (error < 0) & budget_left
        do_reset = active & ~ok & (error > 0) & budget_left
        state = device.set_pulse(k_set, state, do_set, t)
        state = device.reset(k_reset, state, do_reset, t)
        sets, resets = sets + do_set, resets + do_reset
        active = active & ~ok & budget_left
        return state, sets, resets, reads, converged, active, i + 1

    init = (state, zeros, zeros, zeros, jnp.zeros(target.shape, bool), active, jnp.zeros((), jnp.int32))
    state, sets, resets, reads, converged, _, i = jax.lax.while_loop(cond, body, init)
    return ProgramResult(state, sets, resets, reads, converged, i.astype(jnp.float32) * step_s)


class WriteVerify(AbstractProgrammingMethod):
    name: ClassVar[str] = "write-verify"
    tolerance: float = eqx.field(static=True, default=0.5)  # µS
    max_pulses: int = eqx.field(static=True, default=100)

    @property
    def budget(self) -> int:
        return self.max_pulses  # per device, SET + RESET

    def program(self, key, device, target):
        return write_verify(key, device, target, self.tolerance, self.max_pulses)
