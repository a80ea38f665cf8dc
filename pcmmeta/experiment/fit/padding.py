"""Array sizes of a fit: padded to buckets, so that data sets of nearby sizes share one
compiled estimator."""

from __future__ import annotations


def padded_size(n: int, minimum: int) -> int:
    """Padded length ≥ n: a multiple of 1/8 of the next power of two (≤ 14% padding), so files
    of similar size share one compiled fit."""
    step = max((1 << max(n - 1, 1).bit_length()) // 8, 1)
    return max(minimum, -(-n // step) * step)
