"""The device interface: per-device state, and the operations every PCM device family provides.

A family is a subclass of `AbstractPCMDevice` (as diffrax's solvers subclass `AbstractSolver`):
an immutable Equinox module whose float fields are its parameters (µS, s), with the laws that
differ between families — SET-increment statistics, drift exponents, drift, reads, the RESET
and the offline-programmed state — and the family-specific validation of its parameters. What
every family shares is written once here: masked SET pulses and RESETs, the SET-pulse outcome
(the increment acts on the drifted conductance, ν is drawn afresh for the new conductance), the
mean SET trajectory from RESET, and the device file.

Every operation works on arrays of any shape and under `jax.jit`, `jax.vmap` and `jax.grad`:
noise enters by reparameterisation (G + σ(G)·ξ, ξ ~ N(0, 1)). Randomness is an argument (`key`).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from pcmmeta.core import noise
from pcmmeta.core.fields import FLOAT32_MAX
from pcmmeta.errors import UserInputError

#: Number of SET pulses tabulated for `AbstractPCMDevice.pulses_to_reach`.
MAX_TABULATED_PULSES = 64

#: What a family's laws let a controller do (`AbstractPCMDevice.capabilities`), as
#: `pcmmeta.core.compatibility` says it in a refusal: blind SET pulses and write-verify need the
#: SET-increment law, write-verify and single-shot the RESET, every chip mode and verified
#: re-programming the state right after programming to a target.
DEVICE_CAPABILITIES = {
    "set-pulses": "take SET pulses (an increment law of G and the pulse count)",
    "reset": "be RESET",
    "programmed-state": "be programmed to a target (the state after verified programming)",
}
SET_PULSES, RESET, PROGRAMMED_STATE = DEVICE_CAPABILITIES


class DeviceState(eqx.Module):
    """Per-device state of an array of PCM devices; every field has the array's shape."""

    g_prog: Float[Array, "..."]  # conductance right after the last programming event, µS
    t_prog: Float[Array, "..."]  # time of the last programming event, s
    nu: Float[Array, "..."]  # drift exponent drawn at the last programming event
    n_set: Int[Array, "..."]  # SET pulses applied since the last RESET

    @property
    def shape(self) -> tuple[int, ...]:
        return self.g_prog.shape


def drift_factor(ratio: Float[Array, "..."], nu: Float[Array, "..."]) -> Float[Array, "..."]:
    """ratio^(−ν) for time ratios ≥ 1, as exp(−ν·ln ratio): the same value, faster
    than `jnp.power` with an array exponent on a CPU (which handles signs, zeros and integer
    exponents that never occur here)."""
    return jnp.exp(-nu * jnp.log(ratio))


def where_state(mask: Bool[Array, "..."], new: DeviceState, old: DeviceState) -> DeviceState:
    """`new` where the mask is set, `old` elsewhere, field by field."""
    return jax.tree.map(lambda a, b: jnp.where(mask, a, b), new, old)


class AbstractPCMDevice(eqx.Module):
    """A PCM device family: its parameters (fields, µS and s) and laws. Immutable."""

    #: The family's name: the `family:` key of a device file.
    family: ClassVar[str]
    #: What the family's laws let a controller do (`DEVICE_CAPABILITIES`): what the inner rules,
    #: modes and programming methods that need them check (`pcmmeta.core.compatibility`). A
    #: family without a capability may leave the laws behind it raising `NotImplementedError`.
    capabilities: ClassVar[frozenset[str]]

    g_min: eqx.AbstractVar[float]  # µS, lower end of the programmable range
    g_max: eqx.AbstractVar[float]  # µS, upper end of the programmable range
    name: eqx.AbstractVar[str]

    # ------------------------------------------------------------ the laws of a family
    @property
    @abc.abstractmethod
    def reset_mean(self) -> float | Array:
        """Mean conductance (µS) of a freshly RESET device."""

    @abc.abstractmethod
    def set_increment_mean(self, g: Float[Array, "..."], n: Array) -> Float[Array, "..."]:
        """Mean increment (µS) of the n-th SET pulse since RESET at conductance g (µS)."""

    @abc.abstractmethod
    def set_increment_std(self, g: Float[Array, "..."], n: Array) -> Float[Array, "..."]:
        """Std (µS) of the increment of the n-th SET pulse at conductance g (µS), ≥ 0."""

    @abc.abstractmethod
    def draw_nu(
        self, key: PRNGKeyArray, shape: tuple[int, ...], g: Float[Array, "..."] | None = None
    ) -> Float[Array, "..."]:
        """Drift exponents ν ≥ 0, one per device, for devices programmed to conductance g (µS;
        families whose ν does not depend on G ignore it)."""

    @abc.abstractmethod
    def initial_state(self, key: PRNGKeyArray, shape: tuple[int, ...], t: float = 0.0) -> DeviceState:
        """Every device freshly RESET at time t (s)."""

    @abc.abstractmethod
    def programmed_state(self, key: PRNGKeyArray, g: Float[Array, "..."], t: float | Array = 0.0) -> DeviceState:
        """Devices after ideal offline programming to targets g (µS) at time t (s)."""

    @abc.abstractmethod
    def drifted(self, state: DeviceState, t: float | Array) -> Float[Array, "..."]:
        """Noiseless conductance (µS) at time t (s)."""

    @abc.abstractmethod
    def read(self, key: PRNGKeyArray, state: DeviceState, t: float | Array) -> Float[Array, "..."]:
        """One noisy read (µS) at time t (s), ≥ 0."""

    @abc.abstractmethod
    def read_std(
        self, g: Float[Array, "..."], elapsed: float | Array, g_prog: Float[Array, "..."] | None = None
    ) -> Float[Array, "..."]:
        """Std (µS) of one read of a device at (drifted) conductance g, `elapsed` s after it was
        programmed to g_prog (µS; default g). Families whose read noise depends on G alone
        ignore `elapsed` and `g_prog`."""

    @property
    @abc.abstractmethod
    def reset_normal(self) -> tuple[float, float]:
        """(mean, std) in µS of the Normal a RESET draws, before the conductance is clipped to
        [g_min, g_max]: what a controller planning RESETs needs."""

    @abc.abstractmethod
    def check(self, where: str) -> None:
        """Raise `UserInputError` naming `where` and the parameter when the parameters describe
        no device (beyond float32, g_min ≥ g_max, a negative spread…)."""

    # ------------------------------------------------------------ shared operations
    def clip(self, g: Float[Array, "..."]) -> Float[Array, "..."]:
        """g clipped to [g_min, g_max] (µS). Its gradient is 1 on the closed range, bounds
        included, and 0 outside: `jnp.clip` splits the gradient at a tie (0.5 at g = g_max), and
        conductances sit exactly on a bound after every clip, so a straight-through gradient
        passing through a second clip would be halved there."""
        g = jnp.asarray(g)
        return jnp.where(g > self.g_max, self.g_max, jnp.where(g < self.g_min, self.g_min, g)).astype(g.dtype)

    def mean_trajectory(self) -> Float[Array, " pulses"]:
        """Conductance after 0, 1, … mean SET pulses from the mean RESET state (µS)."""

        def step(g, n):
            g_next = self.clip(g + self.set_increment_mean(g, n))
            return g_next, g_next

        g0 = jnp.asarray(self.clip(self.reset_mean), jnp.float32)
        _, gs = jax.lax.scan(step, g0, jnp.arange(1, MAX_TABULATED_PULSES + 1))
        return jnp.concatenate([g0[None], gs])

    def pulses_to_reach(self, g: Float[Array, "..."]) -> Int[Array, "..."]:
        """Smallest number of mean SET pulses whose mean trajectory reaches g."""
        traj = jax.lax.cummax(self.mean_trajectory())
        n = jnp.searchsorted(traj, g, side="left")
        return jnp.minimum(n, MAX_TABULATED_PULSES).astype(jnp.int32)

    def reset(self, key: PRNGKeyArray, state: DeviceState, mask: Bool[Array, "..."], t: float | Array) -> DeviceState:
        """RESET the masked devices at time t; the others keep every field."""
        return where_state(mask, self.initial_state(key, state.shape, t), state)

    def set_pulse_outcome(self, key: PRNGKeyArray, state: DeviceState, t: float | Array) -> DeviceState:
        """State of every device if it received one SET pulse at time t.

        The increment acts on the drifted conductance at t and depends on it and on the pulse's
        index since RESET; the new conductance is clipped to [g_min, g_max], the programming
        time becomes t and ν is drawn afresh for the new conductance.
        """
        k_inc, k_nu = jax.random.split(key)
        g_now = self.drifted(state, t)
        n = state.n_set + 1
        inc = self.set_increment_mean(g_now, n) + self.set_increment_std(g_now, n) * noise.normal(k_inc, g_now.shape)
        g_new = self.clip(g_now + inc)
        return DeviceState(
            g_prog=g_new,
            t_prog=jnp.broadcast_to(jnp.asarray(t, jnp.float32), g_now.shape),
            nu=self.draw_nu(k_nu, g_now.shape, g_new),
            n_set=n,
        )

    def set_pulse(
        self, key: PRNGKeyArray, state: DeviceState, mask: Bool[Array, "..."], t: float | Array
    ) -> DeviceState:
        """One SET pulse at time t to the masked devices; the others keep every field."""
        return where_state(mask, self.set_pulse_outcome(key, state, t), state)

    # ------------------------------------------------------------ parameters and files
    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        """The family's parameters: every field but the name, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "name")

    def to_dict(self) -> dict[str, Any]:
        """Parameters and name (the family is `device.family`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    # ------------------------------------------------------------ validation helpers
    def _refuse(self, where: str, key: str, rule: str) -> None:
        raise UserInputError(f"{where}: 'parameters.{key}' must be {rule}, got {getattr(self, key)!r}")

    def _check_range(self, where: str) -> None:
        """Checks every family shares: each parameter a finite float32, 0 ≤ g_min < g_max."""
        for key in self.parameter_names():
            if not abs(getattr(self, key)) <= FLOAT32_MAX:
                self._refuse(where, key, f"a finite float32 (|value| ≤ {FLOAT32_MAX:.4g})")
        if self.g_min < 0:
            self._refuse(where, "g_min", "≥ 0 µS")
        if not self.g_min < self.g_max:
            raise UserInputError(
                f"{where}: 'parameters.g_min' ({self.g_min!r}) must be below 'parameters.g_max' ({self.g_max!r})"
            )
