"""Modes: how the chip's physics enters meta-training. One class per mode; each fills in the
few operations that differ.

- `PCM`: offline programming noise (straight-through), the device family's own programmed
  state (for `joshi2020`, aihwkit's programming error), drift, read noise, stochastic SET pulses;
  with `quantize_weights` the offline targets sit on the 2^bits levels before they are
  programmed (a b-bit model on the chip, as Ortner et al.'s 4-bit hardware runs).
- `NoAdapt`: `PCM` without the inner update (the control: what adaptation buys).
- `Quantized`: software, no device noise and no drift: the conductances are exactly the targets
  (clipped to [g_min, g_max]); b bits are 2^b levels spanning [g_min, g_max], one SET pulse is
  one level step (g_max − g_min)/(2^b − 1); with `quantize_weights` the offline conductances
  also sit on those levels (straight-through), as in a b-bit model (Ortner et al. 2025 use 4 bits).
- `Ideal`: float weights, no device at all, and no bound: the conductances are the
  meta-parameters themselves, unclipped (the training loop does not clip them either), so no
  weight is ever frozen at a range bound; the inner rule becomes plain SGD on the head.
  Unbounded rather than clip-after-step: 32-bit software has no conductance range, and the
  software reference must be the best software can do.

Only the chip modes (`on_chip`) see the device's programming noise, drift and read noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.devices import AbstractPCMDevice, DeviceState
from pcmmeta.core.devices.base import PROGRAMMED_STATE
from pcmmeta.core.noise import normal


def straight_through(forward: Array, identity: Array) -> Array:
    """Value of `forward` exactly (identity − identity is exactly 0, whereas identity +
    (forward − identity) is off by rounding), gradient of `identity`."""
    return jax.lax.stop_gradient(forward) + (identity - jax.lax.stop_gradient(identity))


class AbstractMode(eqx.Module):
    name: ClassVar[str]
    #: Meta-parameters are clipped to the device's range after each optimiser step.
    clips: ClassVar[bool] = True
    #: The chip's physics applies: the device family's programmed state (its programming
    #: noise), drift and read noise. Software modes hold the targets exactly.
    on_chip: ClassVar[bool] = False

    @property
    def needs_device(self) -> frozenset[str]:
        """What the device family must be able to do (`DEVICE_CAPABILITIES`): a chip mode
        programs the offline targets with the family's programmed state; software needs nothing."""
        return frozenset({PROGRAMMED_STATE}) if self.on_chip else frozenset()

    @classmethod
    def from_recipe(cls, maml: dict) -> "AbstractMode":
        """The mode from the recipe's validated `maml:` section."""
        return cls()

    def program_offline(
        self, key: PRNGKeyArray, g: Float[Array, "..."], device: AbstractPCMDevice, noise_std: float
    ) -> Float[Array, "..."]:
        """Conductances (µS) right after offline programming of targets g; straight-through."""
        return straight_through(device.clip(g), g)

    def programmed_state(
        self, key: PRNGKeyArray, g: Float[Array, "..."], device: AbstractPCMDevice, t: float | Array = 0.0
    ) -> DeviceState:
        """The devices holding `program_offline`'s conductances g (µS) from time t (s): on the
        chip, the device family's programmed state; in software, exactly g, differentiable,
        with no drift (ν = 0) and the SET count of the mean trajectory that reaches g."""
        if self.on_chip:
            return device.programmed_state(key, g, t)
        return DeviceState(
            g_prog=g,
            t_prog=jnp.broadcast_to(jnp.asarray(t, jnp.float32), g.shape),
            nu=jnp.zeros(g.shape, jnp.float32),
            n_set=device.pulses_to_reach(jax.lax.stop_gradient(g)),
        )

    def read(
        self, key: PRNGKeyArray, state: DeviceState, t: Float[Array, ""], device: AbstractPCMDevice
    ) -> Float[Array, "..."]:
        """One read (µS) at time t."""
        return state.g_prog

    def pulse_outcome(
        self, key: PRNGKeyArray, state: DeviceState, t: Float[Array, ""], device: AbstractPCMDevice
    ) -> DeviceState:
        """Every device's state if it received one SET pulse at t."""
        return device.set_pulse_outcome(key, state, t)

    def pulse_step(self, device: AbstractPCMDevice, g: Float[Array, "..."], n_next: Array) -> Float[Array, "..."]:
        """Expected conductance change (µS) of the next SET pulse at read conductance g: what a
        controller converting a wanted Δg into a pulse count assumes."""
        return device.set_increment_mean(g, n_next)

    def pulse_spread(self, device: AbstractPCMDevice, g: Float[Array, "..."], n_next: Array) -> Float[Array, "..."]:
        """Standard deviation (µS) of that change: what a controller planning pulses expects of
        their noise."""
        return device.set_increment_std(g, n_next)

    def adapt(self, rule, key: PRNGKeyArray, states: dict[str, DeviceState], support_loss: Callable, chip) -> Any:
        """The head's inner update on the chip (`inner.base.HeadAdaptation`)."""
        return rule.on_chip(key, states, support_loss, chip)


def level_step(device: AbstractPCMDevice, bits: int) -> float:
    """One level step (µS) of a b-bit conductance: 2^bits levels g_min, g_min + step, …, g_max."""
    return (device.g_max - device.g_min) / (2**bits - 1)


def on_levels(g: Float[Array, "..."], device: AbstractPCMDevice, bits: int) -> Float[Array, "..."]:
    """g (µS) on the nearest of the 2^bits levels spanning [g_min, g_max] (no gradient of its own:
    callers pass it through `straight_through`)."""
    step = level_step(device, bits)
    return device.clip(device.g_min + jnp.round((g - device.g_min) / step) * step)


class PCM(AbstractMode):
    name = "pcm"
    on_chip = True
    bits: int = eqx.field(static=True, default=2)
    quantize_weights: bool = eqx.field(static=True, default=False)  # a b-bit model programmed onto the chip

    @classmethod
    def from_recipe(cls, maml):
        return cls(bits=maml["quantized_bits"], quantize_weights=maml["quantize_weights"])

    def program_offline(self, key, g, device, noise_std):
        target = on_levels(g, device, self.bits) if self.quantize_weights else g
        noise = noise_std * normal(key, g.shape)
        return straight_through(device.clip(target + noise), g)

    def read(self, key, state, t, device):
        return device.read(key, state, t)


class NoAdapt(PCM):
    name = "no-adapt"

    def adapt(self, rule, key, states, support_loss, chip):
        return rule.frozen(key, states, chip)


class Quantized(AbstractMode):
    name = "quantized"
    bits: int = eqx.field(static=True, default=2)
    quantize_weights: bool = eqx.field(static=True, default=False)

    @classmethod
    def from_recipe(cls, maml):
        return cls(bits=maml["quantized_bits"], quantize_weights=maml["quantize_weights"])

    def step_uS(self, device: AbstractPCMDevice) -> float:
        """One level step (µS): 2^bits levels g_min, g_min + step, …, g_max."""
        return level_step(device, self.bits)

    def program_offline(self, key, g, device, noise_std):
        target = on_levels(g, device, self.bits) if self.quantize_weights else device.clip(g)
        return straight_through(target, g)

    def pulse_outcome(self, key, state, t, device):
        g = device.clip(state.g_prog + self.step_uS(device))
        return DeviceState(g, jnp.broadcast_to(jnp.asarray(t, jnp.float32), g.shape), state.nu, state.n_set + 1)

    def pulse_step(self, device, g, n_next):
        return jnp.full(g.shape, self.step_uS(device))

    def pulse_spread(self, device, g, n_next):
        return jnp.zeros(g.shape)


class Ideal(AbstractMode):
    name = "ideal"
    clips = False

    def program_offline(self, key, g, device, noise_std):
        return g

    def adapt(self, rule, key, states, support_loss, chip):
        return rule.in_float(states, support_loss, chip)


MODES: dict[str, type[AbstractMode]] = {m.name: m for m in (PCM, Quantized, Ideal, NoAdapt)}
