"""Verified re-programming of changed weights: Ortner et al.'s on-chip update (Nat. Commun. 16,
2025; their public code's `quantize_stochastic` and `re_program`).

A weight update Δw (weight units) is stochastically rounded to steps of `step_fraction` of a
pair's range (a full-range pair carries `scale`; Ortner: 1/16): Δw_q = s·⌊Δw/s + u⌋,
u ~ U[0, 1), s = step_fraction·scale, so E[Δw_q] = Δw. Only the pairs whose Δw_q ≠ 0 are
re-programmed, both devices, by write-verify to the targets of w_read + Δw_q (one device at
g_min, the other carrying |w|, `crossbar.conductances_from_weights`), with the mode's
programmed state: the device family's programming error and a fresh drift exponent from that
time on (`joshi2020`: aihwkit's σ_p(G); `nandakumar2018` programs exactly, so there the update's
only error is the read it starts from) on the chip, the exact targets in the software modes.
w_read is the pair's weight as read before the update (a chip controller knows no better).
Unchanged pairs keep every field.

Gradient for the outer loop: straight-through. The backward pass sees the targets of the
intended, unrounded update w_read + Δw; the forward pass what was programmed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.crossbar import conductances_from_weights, pair_weights
from pcmmeta.core.devices import DeviceState
from pcmmeta.core.devices.base import where_state
from pcmmeta.core.modes import straight_through


def stochastic_round(key: PRNGKeyArray, dw: Float[Array, "..."], step: float | Array) -> Float[Array, "..."]:
    """Δw rounded to a multiple of `step`, up with probability frac(Δw/step): unbiased."""
    u = jax.random.uniform(key, dw.shape, dw.dtype)
    return step * jnp.floor(dw / step + u)


def reprogram(
    key: PRNGKeyArray,
    state: DeviceState,
    g_read: Float[Array, "2 ..."],
    dw: Float[Array, "..."],
    scale: Float[Array, ""],
    t: Float[Array, ""],
    chip,
    step_fraction: float,
) -> tuple[DeviceState, Float[Array, "2 ..."]]:
    """One layer's update Δw (weight units) by verified re-programming of the pairs it changes;
    the new state and the re-programming events per device (1 where re-programmed)."""
    k_round, k_prog = jax.random.split(key)
    device = chip.device
    w_read = pair_weights(g_read, device, scale)
    dw_q = stochastic_round(k_round, jax.lax.stop_gradient(dw), step_fraction * scale)
    changed = jnp.broadcast_to(dw_q != 0, g_read.shape)
    target = jnp.stack(conductances_from_weights(jax.lax.stop_gradient(w_read + dw_q), device, scale))
    intended = jnp.stack(conductances_from_weights(w_read + dw, device, scale))
    programmed = chip.mode.programmed_state(k_prog, target, device, t)
    new = where_state(changed, jax.lax.stop_gradient(programmed), jax.lax.stop_gradient(state))
    g_prog = straight_through(new.g_prog, jnp.where(changed, intended, state.g_prog))
    return DeviceState(g_prog, new.t_prog, new.nu, new.n_set), changed.astype(jnp.float32)
