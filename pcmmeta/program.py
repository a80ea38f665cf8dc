"""Programming methods: how target conductances get into the devices.

A method is an `AbstractProgrammingMethod` with one operation, `program(key, device, targets)`,
on a flat array of targets (µS), returning a `ProgramResult`:

- `WriteVerify` (all devices in parallel, a `lax.while_loop` with masks): RESET at t = 0, then
  each iteration, one `step_s` apart: read; within `tolerance` of the target → done; below → one
  SET pulse; above (overshoot) → RESET and start again. A device stops when done or when it has
  spent `max_pulses` pulses (SET and RESET both count). Precision is bounded by read noise: a
  correct device can read out of tolerance and be pulsed or RESET again (docs/chip.md).
- `SingleShot`: RESET, then the number of SET pulses that the device's *mean* trajectory needs
  to reach the target, applied blind (no verify).
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .device import DeviceState, PCMDevice


class ProgramResult(eqx.Module):
    state: DeviceState  # devices after programming, times as programmed (t = 0 at the start)
    set_pulses: Int[Array, "..."]
    resets: Int[Array, "..."]  # RESETs after the initial one (overshoots)
    converged: Bool[Array, "..."]  # verify read within tolerance (write-verify), True for single-shot
    t_end: Float[Array, ""]  # s: when the last device finished

    @property
    def pulses(self) -> Int[Array, "..."]:
        return self.set_pulses + self.resets


class AbstractProgrammingMethod(eqx.Module):
    name: ClassVar[str]
    #: Whether a pulse budget applies (devices that end at it are reported).
    has_budget: ClassVar[bool] = False

    @classmethod
    def from_options(cls, tolerance: float, max_pulses: int) -> "AbstractProgrammingMethod":
        """The method from `deploy`'s options (each takes what applies to it)."""
        return cls()

    @abc.abstractmethod
    def program(self, key: PRNGKeyArray, device: PCMDevice, target: Float[Array, " n"]) -> ProgramResult: ...


def write_verify(
    key: PRNGKeyArray,
    device: PCMDevice,
    target: Float[Array, "..."],
    tolerance: float = 0.5,
    max_pulses: int = 100,
    step_s: float = 1.0,
) -> ProgramResult:
    """Iterative write-verify of every device to `target` (µS) within `tolerance` (µS)."""
    k_reset, k_loop = jax.random.split(key)
    state = device.initial_state(k_reset, target.shape, t=0.0)
    zeros = jnp.zeros(target.shape, jnp.int32)
    active = jnp.ones(target.shape, bool)

    def cond(carry):
        _, _, _, _, active, i = carry
        return jnp.any(active) & (i <= max_pulses)

    def body(carry):
        state, sets, resets, converged, active, i = carry
        t = (i + 1).astype(jnp.float32) * step_s
        k_read, k_set, k_reset = jax.random.split(jax.random.fold_in(k_loop, i), 3)
        error = device.read(k_read, state, t) - target
        ok = jnp.abs(error) <= tolerance
        converged = converged | (active & ok)
        budget_left = sets + resets < max_pulses
        do_set = active & ~ok & (error < 0) & budget_left
        do_reset = active & ~ok & (error > 0) & budget_left
        state = device.set_pulse(k_set, state, do_set, t)
        state = device.reset(k_reset, state, do_reset, t)
        sets, resets = sets + do_set, resets + do_reset
        active = active & ~ok & budget_left
        return state, sets, resets, converged, active, i + 1

    init = (state, zeros, zeros, jnp.zeros(target.shape, bool), active, jnp.zeros((), jnp.int32))
    state, sets, resets, converged, _, i = jax.lax.while_loop(cond, body, init)
    return ProgramResult(state, sets, resets, converged, i.astype(jnp.float32) * step_s)


def single_shot(key: PRNGKeyArray, device: PCMDevice, target: Float[Array, "..."], step_s: float = 1.0) -> ProgramResult:
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
    return ProgramResult(state, n_pulses, jnp.zeros_like(n_pulses), jnp.ones(target.shape, bool), t_end)


class WriteVerify(AbstractProgrammingMethod):
    name = "write-verify"
    has_budget = True
    tolerance: float = eqx.field(static=True, default=0.5)  # µS
    max_pulses: int = eqx.field(static=True, default=100)  # per device, SET + RESET

    @classmethod
    def from_options(cls, tolerance, max_pulses):
        return cls(tolerance, max_pulses)

    def program(self, key, device, target):
        return write_verify(key, device, target, self.tolerance, self.max_pulses)


class SingleShot(AbstractProgrammingMethod):
    name = "single-shot"

    def program(self, key, device, target):
        return single_shot(key, device, target)


#: Programming methods by the name `deploy --method` takes.
PROGRAMMING_METHODS: dict[str, type[AbstractProgrammingMethod]] = {m.name: m for m in (WriteVerify, SingleShot)}
