"""Blind single-shot programming: RESET, then the number of SET pulses that the device's *mean*
trajectory needs to reach the target, with no verify read."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.programming.base import AbstractProgrammingMethod, ProgramResult


def single_shot(
    key: PRNGKeyArray, device: AbstractPCMDevice, target: Float[Array, "..."], step_s: float = 1.0
) -> ProgramResult:
    """RESET, then the mean-trajectory number of SET pulses for each target, blind."""
    k_reset, k_loop = jax.random.split(key)
    state = device.initial_state(k_reset, target.shape, t=0.0)
    traj = device.mean_trajectory()
    n_mean = device.pulses_to_reach(target)
    # the count whose mean conductance is nearest the target, one fewer when that is closer
    below = jnp.maximum(n_mean - 1, 0)
    closer_below = jnp.abs(traj[below] - target) < jnp.abs(traj[n_mean] - target)
    n_pulses = jnp.where(closer_below, below, n_mean)
    n_max = traj.shape[0] - 1

    def body(i, state):
        t = (i + 1).astype(jnp.float32) * step_s
        return device.set_pulse(jax.random.fold_in(k_loop, i), state, i < n_pulses, t)

    state = jax.lax.fori_loop(0, n_max, body, state)
    t_end = (jnp.max(n_pulses) + 1).astype(jnp.float32) * step_s
    zeros = jnp.zeros_like(n_pulses)
    return ProgramResult(state, n_pulses, zeros, zeros, jnp.ones(target.shape, bool), t_end)


class SingleShot(AbstractProgrammingMethod):
    name: ClassVar[str] = "single-shot"

    def program(self, key, device, target):
        return single_shot(key, device, target)
