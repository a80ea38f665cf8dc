"""`quantized-sgd`: S gradient steps on the head, each Δw rounded to whole SET pulses.

Ortner et al., Nat. Commun. 16 (2025): MAML's inner loop on the chip's dense layer, 4 steps of
size 0.1. Step r reads the head, computes Δw = −lr·∂L/∂w, converts it to a conductance change of
the pair, Δg = Δw·(g_max − g_min)/scale, and applies round(|Δg| / step) SET pulses to G⁺ (Δg > 0)
or G⁻ (Δg < 0), at most `max_pulses` per device and step, with no verify. `step` is the
expected increment of the device's next pulse at its read conductance (`mode.pulse_step`: the
device model's mean increment for PCM, one level step (g_max − g_min)/(2^bits − 1) for the
quantized mode). PCM can only
raise a conductance, so a pair's weight moves down by pulsing its G⁻.

Gradient: straight-through. The outer loop sees the intended conductance change (exact SGD in
conductance space); the forward pass uses what the pulses actually did.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pcmmeta.core.fields import hyperparameter
from pcmmeta.core.inner.base import AbstractInnerRule, apply_pulses

#: Below this expected increment (µS) a device counts as saturated: no pulse can move it.
_MIN_STEP_US = 0.02


class QuantizedSGD(AbstractInnerRule):
    name = "quantized-sgd"

    steps: int = hyperparameter(4, "int", "SGD steps on the head (Ortner et al.: 4)", low=1, high=20)
    lr: float = hyperparameter(0.1, "float", "inner learning rate (Ortner et al.: 0.1)", positive=True)
    max_pulses: int = hyperparameter(15, "int", "SET pulses per device and step, at most", low=1, high=255)

    def float_lr(self) -> float:
        return self.lr

    def pulse_counts(self, dg, step):
        """Whole pulses for a wanted pair change dg (µS): (2, ...) counts for [G⁺, G⁻]."""
        want = jnp.stack([jnp.maximum(dg, 0.0), jnp.maximum(-dg, 0.0)])
        usable = step > _MIN_STEP_US
        n = jnp.where(usable, jnp.round(want / jnp.where(usable, step, 1.0)), 0.0)
        return jnp.clip(n, 0, self.max_pulses), want

    def pulse(self, key, state, g_read, grad, scale, t, chip):
        dev = chip.device
        dg = -self.lr * grad * (dev.g_max - dev.g_min) / scale
        step = chip.mode.pulse_step(dev, jax.lax.stop_gradient(g_read), state.n_set + 1)
        n, want = self.pulse_counts(dg, step)
        n = jax.lax.stop_gradient(n)
        return apply_pulses(key, state, n, want, t, chip, self.max_pulses), n
