"""Standard errors of a device fit by the bootstrap over devices, the last stage of every
family's fit.

A replica resamples the devices with replacement, drawn as multinomial device weights (how
often each device was drawn) rather than as a new data set: every array keeps its shape, so a
family's estimator serves the estimate and every replica unchanged (a compiled one compiles
once), and a replica can start from the estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np


def device_weights(rng: np.random.Generator, n_devices: int) -> np.ndarray:
    """How often each of `n_devices` devices is drawn in one resample of `n_devices` (int)."""
    return np.bincount(rng.integers(0, n_devices, n_devices), minlength=n_devices)


def bootstrap(
    replica: Callable[[np.ndarray], dict[str, float]],
    n_devices: int,
    n_bootstrap: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, float]]:
    """The parameters `replica(weights)` fits at each of `n_bootstrap` device weightings drawn
    from `seed`. `progress(done, n_bootstrap + 1)` counts the estimate, done before, as 1 and
    is called again after each replica."""
    total = n_bootstrap + 1
    if progress:
        progress(1, total)
    rng = np.random.default_rng(seed)
    draws = []
    for i in range(n_bootstrap):
        draws.append(replica(device_weights(rng, n_devices)))
        if progress:
            progress(2 + i, total)
    return draws


def standard_errors(draws: list[dict[str, float]], names: Iterable[str]) -> dict[str, float | None]:
    """Sample standard deviation over the replicas of each of `names` (finite values only;
    None with fewer than two); nothing without two replicas."""
    stderr: dict[str, float | None] = {}
    if len(draws) < 2:
        return stderr
    for key in names:
        column = np.array([draw[key] for draw in draws], float)
        column = column[np.isfinite(column)]
        stderr[key] = float(np.std(column, ddof=1)) if column.size >= 2 else None
    return stderr
