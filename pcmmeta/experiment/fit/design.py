"""What measurement data can support: shared refusals and notes of the families' fits."""

from __future__ import annotations

import numpy as np

from pcmmeta.errors import UserInputError


def refuse_if_nothing_fits(stages: dict[str, bool], reasons: dict[str, str], where: str) -> None:
    """One line naming every stage and why the data cannot fit it, when none can (any family)."""
    if not any(stages.values()):
        missing = "; ".join(f"{stage.replace('_', ' ')}: {why}" for stage, why in reasons.items())
        raise UserInputError(f"{where}: nothing can be fitted: {missing}")


def reads_above_range(g: np.ndarray, prior) -> list[str]:
    """A note when reads lie far above the prior's g_max: the clip range is not fitted."""
    high = g > prior.g_max * 1.5
    if not high.any():
        return []
    return [
        f"{int(high.sum())} reads above 1.5 × the prior's g_max ({prior.g_max:g} µS; highest {g.max():.4g} µS): "
        "the clip range is not fitted, pass a --prior whose g_min/g_max match the devices"
    ]
