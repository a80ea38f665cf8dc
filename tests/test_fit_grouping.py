"""Reads grouped by programming event (pcmmeta/experiment/fit/grouping.py), and what the groups
let a fit do (pcmmeta/experiment/fit/design.py), on hand-made data whose answers are counted by eye."""

import numpy as np
import pytest

from pcmmeta.core.devices import BUILTIN_DEVICES
from pcmmeta.errors import UserInputError
from pcmmeta.experiment.fit.design import MIN_PULSE_PAIRS, decide
from pcmmeta.experiment.fit.grouping import group_reads
from pcmmeta.io.measurements import Measurements

# Device a: RESET (group 0), pulses 1 and 2 (groups 1, 2); device b: RESET (group 3) and pulse 2
# (group 4; pulse 1 was not read, so b has no consecutive pair).
DATA = Measurements(
    group=np.array([0, 0, 0, 1, 2, 2, 3, 4, 4]),
    t_s=np.array([1.0, 1.0, 5.0, 2.0, 2.0, 30.0, 1.0, 2.0, 9.0]),
    g_uS=np.array([0.2, 0.0, 0.1, 3.0, 5.0, 4.5, 0.3, 2.0, 1.9]),
    group_device=np.array([0, 0, 0, 1, 1]),
    group_pulse=np.array([0, 1, 2, 0, 2]),
    device_names=["a", "b"],
)


def test_groups_count_reads_times_and_pairs():
    groups = group_reads(DATA)
    assert groups.n_groups == 5
    np.testing.assert_array_equal(groups.n_reads, [3, 1, 2, 1, 2])
    np.testing.assert_array_equal(groups.n_times, [2, 1, 2, 1, 2])  # group 0 read twice at t = 1 s
    np.testing.assert_array_equal(groups.first_at_time, [1, 0, 1, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(groups.all_positive, [False, True, True, True, True])
    np.testing.assert_array_equal(groups.last_t, [5.0, 2.0, 30.0, 1.0, 9.0])
    np.testing.assert_array_equal(groups.read_device, [0, 0, 0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(np.stack([groups.pair_before, groups.pair_after]), [[0, 1], [1, 2]])
    np.testing.assert_array_equal(groups.reset_reads, [0, 1, 2, 6])
    np.testing.assert_allclose(groups.seg(groups.g), [0.3, 3.0, 9.5, 0.3, 3.9])


def test_pairs_follow_pulse_order_not_group_order():
    # The same reads with device a's groups listed in reverse: the pairs still join pulse k − 1 to k.
    data = Measurements(
        group=np.array([2, 1, 0]), t_s=np.ones(3), g_uS=np.array([1.0, 2.0, 3.0]),
        group_device=np.zeros(3, int), group_pulse=np.array([2, 1, 0]), device_names=["a"],
    )
    groups = group_reads(data)
    np.testing.assert_array_equal(np.stack([groups.pair_before, groups.pair_after]), [[2, 1], [1, 0]])


def test_decide_turns_drift_off_at_one_read_time_and_counts_pairs():
    groups = group_reads(DATA)
    prior = BUILTIN_DEVICES["nandakumar2018"]
    design = decide({"read_noise": None, "drift": None, "reset": "too few"}, groups, prior, "m.csv")
    assert design.stages == {"read_noise": True, "drift": True, "reset": False, "increments": False}
    assert design.reasons["increments"].startswith(f"fewer than {MIN_PULSE_PAIRS} consecutive pulse pairs")
    assert "found 2" in design.reasons["increments"] and not design.warnings
    one_time = group_reads(Measurements(**{**DATA.__dict__, "t_s": np.full(9, 5.0)}))
    design = decide({"read_noise": None, "drift": "few groups", "reset": None}, one_time, prior, "m.csv")
    assert not design.stages["drift"] and design.reasons["drift"].startswith("every read is at t_s = 5 s")
    assert list(design.reasons) == ["drift", "increments"]
    assert design.warnings == ["every read is at t_s = 5 s: drift cannot be fitted and keeps the prior's values"]


def test_decide_refuses_when_no_stage_is_left():
    with pytest.raises(UserInputError, match=r"^m.csv: nothing can be fitted: read noise: r; drift: d; reset: s; increments"):
        decide({"read_noise": "r", "drift": "d", "reset": "s"}, group_reads(DATA), BUILTIN_DEVICES["nandakumar2018"], "m.csv")
