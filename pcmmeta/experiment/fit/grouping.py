"""Reads grouped by programming event, the first stage of every family's fit.

A (device, pulse) *group* is the reads taken after one programming event (a RESET, pulse 0, or
a SET pulse); a *pair* is two consecutive pulses (k − 1, k) of one device, whose groups give the
conductance before and after pulse k. Computed once per data set, in NumPy; the estimate and
every bootstrap replica reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcmmeta.io.measurements import Measurements


@dataclass(frozen=True)
class Groups:
    """The reads of a data set, indexed by group and by consecutive pulse pair."""

    group: np.ndarray  # (reads,) group of each read
    t: np.ndarray  # (reads,) s since the group's programming event
    g: np.ndarray  # (reads,) µS
    read_device: np.ndarray  # (reads,) device of each read
    first_at_time: np.ndarray  # (reads,) the first read of its (group, t)
    n_groups: int
    group_device: np.ndarray  # (groups,)
    group_pulse: np.ndarray  # (groups,) SET pulses since RESET
    n_reads: np.ndarray  # (groups,)
    n_times: np.ndarray  # (groups,) distinct read times
    all_positive: np.ndarray  # (groups,) every read > 0
    last_t: np.ndarray  # (groups,) s: the next pulse follows this read
    pair_before: np.ndarray  # (pairs,) group of pulse k − 1
    pair_after: np.ndarray  # (pairs,) group of pulse k of the same device
    reset_reads: np.ndarray  # indices of the reads of freshly RESET devices (pulse-0 groups)

    def seg(self, values: np.ndarray) -> np.ndarray:
        """Sum of per-read `values` over each group's reads."""
        return np.bincount(self.group, values, minlength=self.n_groups)


def group_reads(data: Measurements) -> Groups:
    """Index the reads by group and the groups by consecutive pulse pair."""
    n = data.n_groups
    first = np.zeros(data.g_uS.size, bool)
    first[np.unique(np.stack([data.group, data.t_s]), axis=1, return_index=True)[1]] = True
    last_t = np.full(n, -np.inf)
    np.maximum.at(last_t, data.group, data.t_s)
    order = np.lexsort((data.group_pulse, data.group_device))
    dev, pul = data.group_device[order], data.group_pulse[order]
    consecutive = (dev[1:] == dev[:-1]) & (pul[1:] == pul[:-1] + 1)
    return Groups(
        group=data.group,
        t=data.t_s,
        g=data.g_uS,
        read_device=data.group_device[data.group],
        first_at_time=first,
        n_groups=n,
        group_device=data.group_device,
        group_pulse=data.group_pulse,
        n_reads=np.bincount(data.group, minlength=n),
        n_times=np.bincount(data.group[first], minlength=n),
        all_positive=np.bincount(data.group, data.g_uS <= 0, minlength=n) == 0,
        last_t=last_t,
        pair_before=order[:-1][consecutive],
        pair_after=order[1:][consecutive],
        reset_reads=np.flatnonzero(data.group_pulse[data.group] == 0),
    )
