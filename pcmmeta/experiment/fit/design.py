"""What measurement data can support: the thresholds, shared refusals and notes of the families'
fits."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from pcmmeta.errors import UserInputError
from pcmmeta.experiment.fit.grouping import Groups

#: Groups below this conductance are left out of the read-noise and drift fits: there reads are
#: floored at 0 µS often enough (for joshi2020, 1/f noise of ≥ 30% relative) to bias residuals
#: and log reads.
MIN_G_FOR_NOISE_FIT = 1.0
#: Reads at this many distinct times let a group have its own ν (two parameters, two spare).
MIN_TIMES_FOR_FREE_NU = 4
#: Each population stage needs this much data, else its parameters keep the prior's values.
MIN_DRIFT_GROUPS = 10
MIN_RESET_READS = 10
MIN_PULSE_PAIRS = 20
MIN_READ_NOISE_DOF = 20

#: Why read noise keeps the prior's values when no group was read twice (any family).
NO_REPEATED_READS = (
    "no (device, pulse) was read more than once, so read noise cannot be told apart from programming noise"
)


@dataclass
class Design:
    """What the reads can constrain, decided once from the layout of the data."""

    stages: dict[str, bool]  # read_noise, drift, reset, increments
    reasons: dict[str, str]  # stage -> why it keeps the prior's values (for stages that do)
    warnings: list[str]


def refuse_constant_reads(g: np.ndarray, where: str) -> None:
    """Reads that are all equal carry no information (any family)."""
    if g.min() == g.max():
        raise UserInputError(
            f"{where}: every g_uS is {g[0]:g} µS: constant reads carry no read-noise, drift or programming information"
        )


def decide(verdicts: dict[str, str | None], groups: Groups, prior, where: str) -> Design:
    """The design from a family's verdict on each of its stages (why the reads cannot fit it,
    None if they can), in the order read_noise, drift, reset; every family alike: drift is off
    when every read is at one time, increments need `MIN_PULSE_PAIRS` consecutive pulse pairs.
    Refuses when no stage is left; notes reads above the prior's range."""
    reasons = {stage: why for stage, why in verdicts.items() if why is not None}
    stages = {stage: why is None for stage, why in verdicts.items()}
    notes = []
    t = groups.t
    if t.min() == t.max():
        stages["drift"] = False
        reasons["drift"] = f"every read is at t_s = {t[0]:g} s: no drift information"
        notes.append(f"every read is at t_s = {t[0]:g} s: drift cannot be fitted and keeps the prior's values")
    n_pairs = len(groups.pair_before)
    stages["increments"] = n_pairs >= MIN_PULSE_PAIRS
    if not stages["increments"]:
        reasons["increments"] = (
            f"fewer than {MIN_PULSE_PAIRS} consecutive pulse pairs (pulses k − 1 and k of one device; found {n_pairs})"
        )
    refuse_if_nothing_fits(stages, reasons, where)
    notes.extend(reads_above_range(groups.g, prior))
    return Design(stages, reasons, notes)


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


@contextmanager
def numpy_quiet() -> Iterator[None]:
    """No NumPy warning reaches the user: a fit's empty slices and 0/0 are masked on purpose."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
