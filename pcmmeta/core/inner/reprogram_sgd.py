"""`reprogram-sgd`: S gradient steps on the head, each applied as Ortner et al.'s verified
re-programming of the changed weights (Nat. Commun. 16, 2025: 4 steps of size 0.1).

Step r reads the head, computes Δw = −lr·∂L/∂w on the support set, rounds it stochastically to
steps of `step_fraction` of a pair's range, and re-programs (write-verify) the pairs whose
rounded Δw ≠ 0 to the new weights (`inner.reprogram`): on the chip with the device family's
programming error and a fresh drift, exactly in the software modes (`quantized`: Ortner's 4-bit
software; `ideal`: plain SGD in float, `inner.lr`). Unlike `quantized-sgd` no blind SET pulse
is involved: a weight can move down as well as up, and the error of an update is the
programming error of a write-verify, not the spread of a pulse. `pulses` in reports count the
devices re-programmed (both devices of each changed pair).
"""

from __future__ import annotations

from pcmmeta.core.fields import hyperparameter
from pcmmeta.core.inner.base import AbstractInnerRule
from pcmmeta.core.inner.reprogram import reprogram


class ReprogramSGD(AbstractInnerRule):
    name = "reprogram-sgd"

    steps: int = hyperparameter(4, "int", "SGD steps on the head (Ortner et al.: 4)", low=1, high=20)
    lr: float = hyperparameter(0.1, "float", "inner learning rate (Ortner et al.: 0.1)", positive=True)
    step_fraction: float = hyperparameter(
        1 / 16,
        "float",
        "Δw is stochastically rounded to steps of this fraction of a pair's weight range (Ortner: 1/16)",
        positive=True,
        high=1.0,
    )

    @property
    def adapts_by_set_pulses(self) -> bool:
        return False  # RESETs and write-verifies the changed pairs

    def float_lr(self) -> float:
        return self.lr

    def pulse(self, key, state, g_read, grad, scale, t, chip):
        return reprogram(key, state, g_read, -self.lr * grad, scale, t, chip, self.step_fraction)
