import dataclasses
import warnings

import jax
import numpy as np
import pytest

from pcmmeta.core.devices import BUILTIN_DEVICES
from pcmmeta.errors import UserInputError
from pcmmeta.experiment.fit import fit_device
from pcmmeta.io.measurements import Measurements, simulate_measurements

DEFAULT = BUILTIN_DEVICES["nandakumar2018"]
# Every fitted parameter differs from the default the fit starts from.
TRUE = dataclasses.replace(
    DEFAULT,
    reset_mean=0.3,
    reset_std=0.05,
    set_mean_slope=-0.07,
    set_mean_intercept=1.0,
    set_mean_history=1.2,
    set_std_slope=0.07,
    set_std_intercept=0.4,
    set_std_history=1.8,
    set_history_decay=3.0,
    drift_t0=20.0,
    drift_nu_mean=0.06,
    drift_nu_std=0.02,
    read_std_slope=0.04,
    read_std_intercept=0.1,
)


def fitted(result):
    return [k for k, s in result.constrained.items() if s == "fitted"]


@pytest.fixture(scope="module")
def recovered():
    data = simulate_measurements(TRUE, jax.random.key(0), n_devices=2000)
    return fit_device(data, DEFAULT, n_bootstrap=3)


#: Relative tolerances of `test_parameter_recovery` (10% unless named).
LOOSE = {"set_std_slope": 0.20, "set_std_intercept": 0.20}


def test_the_prior_fails_every_recovery_check():
    """The recovery checks below can fail: the default the fit starts from is outside every
    tolerance, so a fit that returned its prior would not pass them."""
    for key in DEFAULT.parameter_names():
        if key in ("g_min", "g_max", "name"):
            continue
        assert getattr(DEFAULT, key) != pytest.approx(getattr(TRUE, key), rel=LOOSE.get(key, 0.10)), key
    for key, rel in RAGGED_TOLERANCE.items():
        assert getattr(DEFAULT, key) != pytest.approx(getattr(TRUE_RAGGED, key), rel=rel), key


@pytest.mark.slow
def test_parameter_recovery(recovered):
    # 10% relative: with 2,000 devices most parameters scatter by less than 3% of their value
    # from one simulation seed to the next, so 10% is > 3 s.d. and still fails on a missing
    # noise correction (uncorrected, read-noise and slope biases were 20–80%). The SET noise's
    # slope and intercept are estimated together and scatter more: over simulation seeds 0–8
    # their relative errors had s.d. 4% and 6% (largest: +10% and −18%, seed 0, in opposite
    # directions), hence 20% for those two.
    for key in fitted(recovered):
        assert getattr(recovered.device, key) == pytest.approx(getattr(TRUE, key), rel=LOOSE.get(key, 0.10)), key
    assert recovered.constrained["g_min"].startswith("default")
    assert len(fitted(recovered)) == 14
    assert all(recovered.stderr[k] > 0 for k in fitted(recovered))


@pytest.mark.slow
def test_goodness_of_fit_is_reported(recovered):
    gof = recovered.goodness
    assert gof["reads_reduced_chi2"] == pytest.approx(1.0, abs=0.05)
    assert gof["increment_z_std"] == pytest.approx(1.0, abs=0.05)


# Ragged protocol, 3,000 devices: one read after the RESET and after each pulse (5% missing),
# 10 to 20 pulses per device, a retention series after the last pulse on a quarter of them.
# Tolerances (relative) from the spread over seeds and the bootstrap s.e.: read noise, drift and
# RESET mean as well as from the full protocol; the increment std curve within 12% and the mean
# curve within 15% (+0.03 µS) over 2–10 µS (single reads put read noise on the conductance
# before each pulse: the regression calibration removes most of the slope dilution, not all).
# The truth differs from `TRUE` where the default would have been within these tolerances of it
# (read-noise intercept, history decay and amplitude).
TRUE_RAGGED = dataclasses.replace(TRUE, read_std_intercept=0.09, set_history_decay=3.1, set_mean_history=1.15)
RAGGED_TOLERANCE = {
    "read_std_slope": 0.10, "read_std_intercept": 0.30, "drift_t0": 0.10, "drift_nu_mean": 0.05,
    "drift_nu_std": 0.15, "reset_mean": 0.05, "set_history_decay": 0.15, "set_mean_history": 0.20,
}


@pytest.mark.slow
def test_ragged_protocol_recovery():
    data = simulate_measurements(TRUE_RAGGED, jax.random.key(5), n_devices=3000, protocol="ragged")
    reads_per_group = np.bincount(data.group)
    assert np.median(reads_per_group) == 1 and reads_per_group.max() == 6
    assert len(set(np.bincount(data.group_device))) > 5  # pulse counts differ between devices
    result = fit_device(data, DEFAULT, n_bootstrap=2)
    for key, rel in RAGGED_TOLERANCE.items():
        assert result.constrained[key] == "fitted", key
        assert getattr(result.device, key) == pytest.approx(getattr(TRUE_RAGGED, key), rel=rel), key
    # Slope and intercept of the increment mean/std trade off against each other; the curves
    # they make over the range devices live in are what a simulation uses.
    g = np.linspace(2.0, 10.0, 9)
    for n in (1, 4, 12):
        for curve, rel in (("set_increment_mean", 0.15), ("set_increment_std", 0.12)):
            got = np.asarray(getattr(result.device, curve)(g, n))
            want = np.asarray(getattr(TRUE_RAGGED, curve)(g, n))
            np.testing.assert_allclose(got, want, rtol=rel, atol=0.03, err_msg=f"{curve} at pulse {n}")
    # RESET spread 0.05 µS under read noise 0.1 µS from single reads: not resolved, but reported.
    assert result.constrained["reset_std"] == "fitted"


def single_reads(data: Measurements) -> Measurements:
    """Only the first read of every (device, pulse): no repeated reads at all."""
    first = np.r_[True, data.group[1:] != data.group[:-1]]
    return dataclasses.replace(data, group=data.group[first], t_s=data.t_s[first], g_uS=data.g_uS[first])


def test_without_repeated_reads_the_increment_spread_is_an_upper_bound():
    data = single_reads(simulate_measurements(TRUE, jax.random.key(2), n_devices=300, n_pulses=12, drift_read_times=()))
    result = fit_device(data, DEFAULT, n_bootstrap=0)
    for key in ("read_std_slope", "read_std_intercept", "drift_t0", "drift_nu_mean", "drift_nu_std"):
        assert result.constrained[key].startswith("default"), key
        assert getattr(result.device, key) == getattr(DEFAULT, key)
    assert "no (device, pulse) was read more than once" in result.constrained["read_std_slope"]
    for key in ("set_std_slope", "set_std_intercept", "set_std_history", "reset_std"):
        assert result.constrained[key].startswith("upper bound"), key
    # The read noise is left in: the fitted spread exceeds the true one over the whole range.
    g = np.linspace(2.0, 10.0, 5)
    fitted_sd = np.asarray(result.device.set_increment_std(g, 8))
    true_sd = np.asarray(TRUE.set_increment_std(g, 8))
    assert np.all(fitted_sd > true_sd)
    report = result.to_json()["parameters"]
    assert report["set_std_intercept"]["upper_bound"] and report["set_std_intercept"]["constrained"]
    assert not report["drift_t0"]["constrained"]


def test_without_late_reads_drift_keeps_default():
    data = simulate_measurements(TRUE, jax.random.key(1), n_devices=100, n_pulses=8, drift_read_times=())
    result = fit_device(data, DEFAULT, n_bootstrap=0)
    for key in ("drift_t0", "drift_nu_mean", "drift_nu_std"):
        assert result.constrained[key].startswith("default")
        assert getattr(result.device, key) == getattr(DEFAULT, key)
    assert result.constrained["set_mean_slope"] == "fitted"


def test_every_read_at_one_time_keeps_drift_default_and_warns():
    data = simulate_measurements(TRUE, jax.random.key(3), n_devices=100, n_pulses=8, read_times=(5.0,), drift_read_times=())
    data = dataclasses.replace(data, t_s=np.full_like(data.t_s, 5.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning may reach the user
        result = fit_device(data, DEFAULT, n_bootstrap=2)
    assert "every read is at t_s = 5 s" in result.constrained["drift_t0"]
    assert any("every read is at t_s = 5 s" in w for w in result.warnings)


def test_identical_repeated_reads_give_no_negative_read_noise():
    # Every (device, pulse) read three times with the same value: zero read noise. The fit must
    # neither report a negative intercept nor stay silent.
    base = single_reads(simulate_measurements(TRUE, jax.random.key(4), n_devices=100, n_pulses=8, drift_read_times=()))
    data = dataclasses.replace(base, group=np.repeat(base.group, 3), t_s=np.tile([1.0, 2.0, 3.0], base.t_s.size), g_uS=np.repeat(base.g_uS, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit_device(data, DEFAULT, n_bootstrap=2)
    assert result.device.read_std_intercept >= 0
    assert result.device.read_std(np.float32(5.0)) < 0.01
    assert any("read noise fitted as ≈ 0 µS" in w for w in result.warnings)


def test_constant_reads_are_refused():
    data = simulate_measurements(TRUE, jax.random.key(3), n_devices=20, n_pulses=4)
    data = dataclasses.replace(data, g_uS=np.full_like(data.g_uS, 2.5))
    with pytest.raises(UserInputError, match="every g_uS is 2.5 µS"):
        fit_device(data, DEFAULT, n_bootstrap=0, where="m.csv")


def test_nothing_to_fit_names_what_is_missing():
    # Two devices, one read each after RESET: no repeats, no pulse pairs, too few RESET reads.
    data = Measurements(
        group=np.array([0, 1]), t_s=np.array([1.0, 1.0]), g_uS=np.array([0.1, 0.2]),
        group_device=np.array([0, 1]), group_pulse=np.array([0, 0]), device_names=["a", "b"],
    )
    with pytest.raises(UserInputError) as err:
        fit_device(data, DEFAULT, n_bootstrap=0, where="m.csv")
    message = str(err.value)
    assert message.startswith("m.csv: nothing can be fitted")
    for missing in ("read more than once", "consecutive pulse pairs", "RESET devices"):
        assert missing in message
