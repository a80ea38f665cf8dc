"""`eprop-lsg`: one e-prop weight update from learned learning signals, written as blind pulses
(Ortner et al., Nat. Commun. 16, 2025; Bellec et al., Nat. Commun. 11, 2020).

The network (one with a learning-signal generator, `network.kind: rsnn`) gives the direction G
of each head layer from one run of the demonstration (`eprop_direction`): ΔW = −η G. On the
chip a weight change becomes whole SET pulses: Δg = ΔW·(g_max − g_min)/scale on the pair's
difference, on G⁺ where the weight grows and G⁻ where it shrinks, counted in units of
`pulse_fraction` of the pair's range (Ortner: 1/16) and capped at `max_pulses` per device; the
device model then gives each pulse's stochastic increment. For meta-training the update is
straight-through: the conductances change by what the pulses did, the gradient sees the wanted
continuous change (rounding and programming noise are invisible to it).

With `update: reprogram` the update is instead Ortner et al.'s verified re-programming:
ΔW stochastically rounded to `pulse_fraction` steps, the changed pairs write-verified to their
new weights with the device's programming error (`inner.reprogram`).

Modes: `ideal` applies ΔW in float; `quantized` makes each pulse a fixed step of
one level step (g_max − g_min)/(2^quantized_bits − 1); `pcm` uses the device's pulses; `no-adapt`
skips the update.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from pcmmeta.core.fields import hyperparameter
from pcmmeta.core.inner.base import AbstractInnerRule, SupportSet, apply_pulses
from pcmmeta.core.inner.reprogram import reprogram


class EpropLSG(AbstractInnerRule):
    name = "eprop-lsg"
    needs_network = frozenset({"learning-signal"})

    steps: int = hyperparameter(1, "int", "e-prop updates (Ortner: a single one)", low=1, high=10)
    learning_rate: float = hyperparameter(0.02, "float", "η of ΔW = −η Σ_t L_j(t) e_ij(t)", positive=True)
    pulse_fraction: float = hyperparameter(
        1 / 16,
        "float",
        "weight change counted as one SET pulse, as a fraction of the pair's range (Ortner: 1/16)",
        positive=True,
        high=1.0,
    )
    max_pulses: int = hyperparameter(15, "int", "SET pulses one device may receive in one update", low=1, high=255)
    update: str = hyperparameter(
        "pulses",
        "choice",
        "pulses: blind SET pulses counted in pulse_fraction steps; reprogram: Ortner's verified re-programming of the changed pairs, ΔW stochastically rounded to pulse_fraction steps",
        choices=("pulses", "reprogram"),
    )

    @property
    def adapts_by_set_pulses(self) -> bool:
        return self.update == "pulses"

    def float_lr(self) -> float:
        return self.learning_rate

    def direction(self, support_loss, weights):
        if not isinstance(support_loss, SupportSet):
            raise TypeError("eprop-lsg reads the support set's network and targets: give it a SupportSet")
        network: Any = support_loss.network  # it has a learning-signal generator: checked when the experiment is built
        return network.eprop_direction(weights, support_loss.features, support_loss.y, support_loss.family)

    def pulse_counts(self, grad, scale, device):
        """Whole SET pulses per device [G⁺, G⁻] for the update −η·grad, and the wanted
        conductance change (µS) they stand for."""
        span = device.g_max - device.g_min
        dg = -self.learning_rate * grad * span / scale
        wanted = jnp.stack([jnp.maximum(dg, 0.0), jnp.maximum(-dg, 0.0)])
        counts = jnp.clip(jnp.round(jax.lax.stop_gradient(wanted) / (self.pulse_fraction * span)), 0, self.max_pulses)
        return counts, wanted

    def pulse(self, key, state, g_read, grad, scale, t, chip):
        if self.update == "reprogram":
            return reprogram(key, state, g_read, -self.learning_rate * grad, scale, t, chip, self.pulse_fraction)
        counts, wanted = self.pulse_counts(grad, scale, chip.device)
        return apply_pulses(key, state, counts, wanted, t, chip, self.max_pulses), counts
