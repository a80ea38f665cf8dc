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

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.programming.base import TICK_S, AbstractProgrammingMethod, ProgramResult


def write_verify(
    key: PRNGKeyArray,
    device: AbstractPCMDevice,
    target: Float[Array, "..."],
    tolerance: float = 0.5,
    max_pulses: int = 100,
    step_s: float = TICK_S,
    burst: bool = False,
    set_on_flat_uS: float = 0.0,
) -> ProgramResult:
    """Iterative write-verify of every device to `target` (µS) within `tolerance` (µS).

    Two stronger variants (both off by default: plain write-verify):
    - `burst`: after every RESET (the first included) a device first gets, blind, one fewer SET
      pulses than the mean trajectory needs to come within tolerance below its target
      (`pulses_to_reach(target − tolerance)` − 1, one per tick, no verify read), then verifies
      as usual;
    - `set_on_flat_uS` > 0: on an overshoot at a read conductance where the next pulse's mean
      increment is at most this (µS; the flat top of the SET law, where a pulse mostly
      re-draws the conductance), a SET pulse instead of a RESET.
    """
    k_reset, k_loop = jax.random.split(key)
    state = device.initial_state(k_reset, target.shape, t=0.0)
    zeros = jnp.zeros(target.shape, jnp.int32)
    active = jnp.ones(target.shape, bool)
    n_burst = jnp.maximum(device.pulses_to_reach(target - tolerance) - 1, 0) if burst else zeros

    def cond(carry):
        active, i = carry[-2], carry[-1]
        return jnp.any(active) & (i <= max_pulses)

    def body(carry):
        state, sets, resets, reads, converged, burst_left, active, i = carry
        t = (i + 1).astype(jnp.float32) * step_s
        k_read, k_set, k_reset = jax.random.split(jax.random.fold_in(k_loop, i), 3)
        budget_left = sets + resets < max_pulses
        bursting = active & (burst_left > 0) & budget_left
        verifying = active & ~bursting
        g_read = device.read(k_read, state, t)
        error = g_read - target
        reads = reads + verifying
        ok = jnp.abs(error) <= tolerance
        converged = converged | (verifying & ok)
        fix = verifying & ~ok & budget_left
        below = error < 0
        if set_on_flat_uS > 0:
            below = below | (device.set_increment_mean(g_read, state.n_set + 1) <= set_on_flat_uS)
        do_set = bursting | (fix & below)
        do_reset = fix & ~below
        state = device.set_pulse(k_set, state, do_set, t)
        state = device.reset(k_reset, state, do_reset, t)
        sets, resets = sets + do_set, resets + do_reset
        burst_left = jnp.where(do_reset, n_burst, burst_left - bursting)
        active = active & ~(verifying & ok) & budget_left
        return state, sets, resets, reads, converged, burst_left, active, i + 1

    init = (state, zeros, zeros, zeros, jnp.zeros(target.shape, bool), n_burst, active, jnp.zeros((), jnp.int32))
    state, sets, resets, reads, converged, _, _, i = jax.lax.while_loop(cond, body, init)
    return ProgramResult(state, sets, resets, reads, converged, i.astype(jnp.float32) * step_s)


class WriteVerify(AbstractProgrammingMethod):
    name: ClassVar[str] = "write-verify"
    tolerance: float = eqx.field(static=True, default=0.5)  # µS
    max_pulses: int = eqx.field(static=True, default=100)  # per device, SET + RESET

    @property
    def budget(self) -> int:
        return self.max_pulses

    def program(self, key, device, target):
        return write_verify(key, device, target, self.tolerance, self.max_pulses)


class WriteVerifySetOnFlat(WriteVerify):
    """Write-verify that SETs instead of RESETting on an overshoot where the SET law is flat."""

    name: ClassVar[str] = "write-verify-set-on-flat"
    #: Also an open-loop burst after every RESET (`write_verify`'s `burst`).
    burst: ClassVar[bool] = False
    set_on_flat_uS: float = eqx.field(static=True, default=0.1)  # µS of mean increment

    def program(self, key, device, target):
        return write_verify(
            key, device, target, self.tolerance, self.max_pulses, burst=self.burst, set_on_flat_uS=self.set_on_flat_uS
        )


class WriteVerifyBurst(WriteVerifySetOnFlat):
    """`WriteVerifySetOnFlat` that starts from an open-loop burst (the mean trajectory's pulse
    count to the tolerance band, − 1) after every RESET."""

    name: ClassVar[str] = "write-verify-burst"
    burst: ClassVar[bool] = True
