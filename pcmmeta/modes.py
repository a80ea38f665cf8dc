"""Modes: how the chip's physics enters meta-training. One class per mode; each fills in the
few operations that differ.

- `PCM`: offline programming noise (straight-through), drift, read noise, stochastic SET pulses.
- `NoAdapt`: `PCM` without the inner update (the control: what adaptation buys).
- `Quantized`: no noise, no drift; a SET pulse is a fixed step of g_max/2^bits; with
  `quantize_weights` the offline conductances also sit on that grid (straight-through), as in a
  b-bit model (Ortner et al. 2025 use 4 bits).
- `Ideal`: float weights, no device at all; the inner rule becomes plain SGD on the head.
"""

from __future__ import annotations

from typing import Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .device import DeviceState, PCMDevice
from .noise import normal


def straight_through(forward: Array, identity: Array) -> Array:
    """Value of `forward`, gradient of `identity`."""
    return identity + jax.lax.stop_gradient(forward - identity)


class AbstractMode(eqx.Module):
    name: ClassVar[str]
    #: Meta-parameters are clipped to the device's range after each optimiser step.
    clips: ClassVar[bool] = True

    @classmethod
    def from_recipe(cls, maml: dict) -> "AbstractMode":
        """The mode from the recipe's validated `maml:` section."""
        return cls()

    def program_offline(self, key: PRNGKeyArray, g: Float[Array, "..."], device: PCMDevice, noise_std: float) -> Float[Array, "..."]:
        """Conductances (µS) right after offline programming of targets g; straight-through."""
        return straight_through(device.clip(g), g)

    def read(self, key: PRNGKeyArray, state: DeviceState, t: Float[Array, ""], device: PCMDevice) -> Float[Array, "..."]:
        """One read (µS) at time t."""
        return state.g_prog

    def pulse_outcome(self, key: PRNGKeyArray, state: DeviceState, t: Float[Array, ""], device: PCMDevice) -> DeviceState:
        """Every device's state if it received one SET pulse at t."""
        return device.set_pulse_outcome(key, state, t)

    def pulse_step(self, device: PCMDevice, g: Float[Array, "..."], n_next: Array) -> Float[Array, "..."]:
        """Expected conductance change (µS) of the next SET pulse at read conductance g: what a
        controller converting a wanted Δg into a pulse count assumes."""
        return device.set_increment_mean(g, n_next)

    def pulse_spread(self, device: PCMDevice, g: Float[Array, "..."], n_next: Array) -> Float[Array, "..."]:
        """Standard deviation (µS) of that change: what a controller planning pulses expects of
        their noise."""
        return device.set_increment_std(g, n_next)

    def adapt(self, rule, key: PRNGKeyArray, states: dict[str, DeviceState], support_loss: Callable, chip) -> "object":
        """The head's inner update on the chip (`inner.base.HeadAdaptation`)."""
        return rule.on_chip(key, states, support_loss, chip)


class PCM(AbstractMode):
    name = "pcm"

    def program_offline(self, key, g, device, noise_std):
        noise = noise_std * normal(key, g.shape)
        return straight_through(device.clip(g + noise), g)

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

    def step_uS(self, device: PCMDevice) -> float:
        return device.g_max / 2**self.bits

    def program_offline(self, key, g, device, noise_std):
        target = g
        if self.quantize_weights:
            step = self.step_uS(device)
            target = device.g_min + jnp.round((g - device.g_min) / step) * step
        return straight_through(device.clip(target), g)

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
