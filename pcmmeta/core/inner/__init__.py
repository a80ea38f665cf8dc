"""Inner rules: how the chip turns the head's support gradient into programming pulses."""

from pcmmeta.core.inner.base import AbstractInnerRule, HeadAdaptation, HeadChip
from pcmmeta.core.inner.blind_pulse import BlindPulse
from pcmmeta.core.inner.eprop_lsg import EpropLSG
from pcmmeta.core.inner.planned_pulse import PlannedPulse
from pcmmeta.core.inner.quantized_sgd import QuantizedSGD
from pcmmeta.core.inner.reprogram_sgd import ReprogramSGD

#: Inner rules by the name a recipe gives in `inner.rule`.
INNER_RULES: dict[str, type[AbstractInnerRule]] = {
    r.name: r for r in (BlindPulse, PlannedPulse, QuantizedSGD, ReprogramSGD, EpropLSG)
}

__all__ = [
    "AbstractInnerRule",
    "BlindPulse",
    "EpropLSG",
    "HeadAdaptation",
    "HeadChip",
    "INNER_RULES",
    "PlannedPulse",
    "QuantizedSGD",
    "ReprogramSGD",
]
