"""Inner rules: how the chip turns the head's support gradient into programming pulses."""

from .base import AbstractInnerRule, HeadAdaptation, HeadChip
from .blind_pulse import BlindPulse
from .eprop_lsg import EpropLSG
from .planned_pulse import PlannedPulse
from .quantized_sgd import QuantizedSGD
from .reprogram_sgd import ReprogramSGD

#: Inner rules by the name a recipe gives in `inner.rule`.
INNER_RULES: dict[str, type[AbstractInnerRule]] = {r.name: r for r in (BlindPulse, PlannedPulse, QuantizedSGD, ReprogramSGD, EpropLSG)}

__all__ = ["AbstractInnerRule", "BlindPulse", "EpropLSG", "HeadAdaptation", "HeadChip", "INNER_RULES", "PlannedPulse", "QuantizedSGD", "ReprogramSGD"]
