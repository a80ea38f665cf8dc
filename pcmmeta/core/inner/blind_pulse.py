"""`blind-pulse`: one SET pulse per device per step where the gradient passes a threshold.

Demirag et al. 2023: the support gradient of a weight w decides which device of its pair gets a
single SET pulse — G⁺ where w should grow (∂L/∂w < −θ), G⁻ where it should shrink (∂L/∂w > θ),
none otherwise — with the device's stochastic increment and no verify read. The threshold is a
Heaviside whose derivative is a fast sigmoid (`snn.spike`), so the outer loop sees it.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from pcmmeta.core.fields import hyperparameter
from pcmmeta.core.inner.base import AbstractInnerRule, soft_pulse
from pcmmeta.core.snn import spike


def pulse_masks(grad: Float[Array, "..."], threshold: float, beta: float) -> Float[Array, "2 ..."]:
    """[pulse G⁺ (weight should grow), pulse G⁻ (should shrink)], 0/1 with surrogate gradients."""
    return jnp.stack([spike(-grad - threshold, beta), spike(grad - threshold, beta)])


class BlindPulse(AbstractInnerRule):
    name = "blind-pulse"

    steps: int = hyperparameter(1, "int", "pulse rounds (inner steps)", low=1, high=10)
    pulse_threshold: float = hyperparameter(0.02, "float", "|∂L/∂w| a device's weight must pass to be pulsed", low=0.0)
    mask_surrogate_beta: float = hyperparameter(50.0, "float", "β of the threshold's surrogate gradient", positive=True)
    ideal_lr: float = hyperparameter(
        0.3,
        "float",
        "ideal mode: SGD step size instead of pulses (0.3 beat 0.05 clearly, benchmarks/quality.py)",
        positive=True,
    )

    def float_lr(self) -> float:
        return self.ideal_lr

    def pulse(self, key, state, g_read, grad, scale, t, chip):
        mask = pulse_masks(grad, self.pulse_threshold, self.mask_surrogate_beta)
        outcome = chip.mode.pulse_outcome(key, state, t, chip.device)
        return soft_pulse(state, outcome, mask), mask
