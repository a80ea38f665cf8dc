"""Numbers as text the same way everywhere a figure is printed: the command line's tables and
the HTML report."""

from __future__ import annotations

import math


def _fixed(x: float, decimals: int) -> str:
    text = f"{x:.{decimals}f}" if decimals > 0 else f"{round(x, decimals):.0f}"
    if text.startswith("-") and float(text) == 0:
        text = text[1:]  # no "-0.00"
    return text


def mean_sem_text(mean: float | None, sem: float | None) -> str:
    """The text "mean ± s.e.": the standard error to 2 significant digits, the mean to the same
    decimal place (0.70312, 0.03812 → "0.703 ± 0.038"; 3.255, 1.02 → "3.3 ± 1.0"); without a
    finite standard error, the mean to 4 significant digits."""
    if mean is None:
        return "–"
    mean = float(mean)
    if not math.isfinite(mean):
        return f"{mean:.4g}"
    if sem is None or not math.isfinite(float(sem)):
        return f"{mean:.4g}"
    sem = abs(float(sem))
    if sem == 0:
        return f"{mean:.4g} ± 0"
    exponent = math.floor(math.log10(sem))
    decimals = 1 - exponent
    if round(sem, decimals) >= 10.0 ** (exponent + 1):  # 0.0996 → 0.10: two digits, one place fewer
        decimals -= 1
    if decimals > 15:  # a standard error far below the mean's precision
        return f"{mean:.6g} ± {sem:.2g}"
    return f"{_fixed(mean, decimals)} ± {_fixed(round(sem, decimals), decimals)}"
