"""Fitting the joshi2020 family (pcmmeta/experiment/fit/joshi.py): simulate → fit round trips, what the
data constrain, and the command line."""

import dataclasses
import json

import jax
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from pcmmeta import load_device
from pcmmeta.cli.app import app
from pcmmeta.core.devices import BUILTIN_DEVICES, Joshi2020
from pcmmeta.core.devices.joshi import log_time_factor_law, read_noise_amplitude_law
from pcmmeta.errors import UserInputError
from pcmmeta.experiment.fit import fit_device
from pcmmeta.io.measurements import simulate_measurements

PRIOR = BUILTIN_DEVICES["joshi2020"]
# Every parameter the data can constrain differs from the prior the fit starts from.
TRUE = dataclasses.replace(
    PRIOR,
    drift_t0=60.0, nu_mean_slope=-0.018, nu_mean_intercept=0.02, nu_mean_min=0.065,
    nu_std_slope=-0.011, nu_std_intercept=-0.004, nu_std_min=0.016,
    read_noise_q=0.011, read_noise_exponent=0.55, prog_noise_c0=0.35,
    set_mean_slope=-0.07, set_mean_intercept=2.0, set_std_intercept=1.2,
)
G = np.array([2.5, 4.0, 8.0, 16.0])  # µS, where the simulated devices live


@pytest.fixture(scope="module")
def recovered():
    # 600 devices, 10 pulses, a retention series (6 reads, 2 s … 3 h) after every event: the
    # ν law is seen below 5 µS (first pulses) and on its lower clip above.
    data = simulate_measurements(TRUE, jax.random.key(0), n_devices=600, n_pulses=10, drift_every=1)
    return fit_device(data, PRIOR, n_bootstrap=2)


# Tolerances (relative unless said) from five seeds at this size (docs/device-model.md): the
# largest deviations seen were t0 +30%, μ_ν 7% over 2.5–16 µS, σ_ν 27% below 5 µS and 18%
# above, Q_s 5.3%, c0 6.3%, increment mean 0.31 µS, increment std 15%. The drift onset is weakly
# pinned down by six reads of 5–10% noise (a flat profile).
def close(device, law: str, rtol: float = 0.0, atol: float = 0.0, n: int | None = None) -> bool:
    """Whether `device`'s law over G is within the tolerance of the truth's."""
    args = (G,) if n is None else (G, n)
    got, want = np.asarray(getattr(device, law)(*args)), np.asarray(getattr(TRUE, law)(*args))
    return bool(np.allclose(got, want, rtol=rtol, atol=atol))


def test_the_prior_fails_every_recovery_check():
    """The recovery checks below can fail: the prior the fit starts from is outside each."""
    assert PRIOR.drift_t0 != pytest.approx(TRUE.drift_t0, rel=0.35)
    assert not close(PRIOR, "nu_mean", rtol=0.15)
    assert not close(PRIOR, "nu_std", rtol=0.4)
    assert not close(PRIOR, "read_noise_amplitude", rtol=0.08)
    assert PRIOR.prog_noise_c0 != pytest.approx(TRUE.prog_noise_c0, rel=0.10)
    assert not all(close(PRIOR, "set_increment_mean", atol=0.35, n=n) for n in (1, 4, 8))
    assert not all(close(PRIOR, "set_increment_std", rtol=0.2, n=n) for n in (1, 4, 8))


@pytest.mark.slow
def test_drift_and_read_noise_are_recovered(recovered):
    dev = recovered.device
    assert isinstance(dev, Joshi2020)
    assert dev.drift_t0 == pytest.approx(TRUE.drift_t0, rel=0.35)
    assert close(dev, "nu_mean", rtol=0.15)
    assert close(dev, "nu_std", rtol=0.4)
    assert close(dev, "read_noise_amplitude", rtol=0.08)
    assert dev.prog_noise_c0 == pytest.approx(TRUE.prog_noise_c0, rel=0.10)
    # A fit that ignores the growth of 1/f noise with time, or drift before noise, is far off:
    assert abs(dev.nu_mean_min - PRIOR.nu_mean_min) > 0.003 and abs(dev.read_noise_q - PRIOR.read_noise_q) > 0.001


@pytest.mark.slow
def test_set_pulse_law_is_recovered(recovered):
    dev = recovered.device
    for n in (1, 4, 8):
        assert close(dev, "set_increment_mean", atol=0.35, n=n), n
        assert close(dev, "set_increment_std", rtol=0.2, n=n), n


@pytest.mark.slow
def test_each_parameter_says_whether_the_data_constrained_it(recovered):
    status = recovered.constrained
    assert set(status) == set(Joshi2020.parameter_names())
    for key in ("g_min", "g_max", "t_read", "read_noise_q_max", "prog_noise_c1", "prog_noise_c2", "nu_mean_max", "nu_std_max"):
        assert status[key].startswith("default"), key
        assert getattr(recovered.device, key) == getattr(PRIOR, key), key
    assert "write-verify targets" in status["prog_noise_c1"]
    fitted = ("drift_t0", "nu_mean_slope", "nu_mean_intercept", "nu_mean_min", "nu_std_slope", "nu_std_min", "read_noise_q", "read_noise_exponent", "set_mean_slope")
    for key in fitted:
        assert status[key] == "fitted", (key, status[key])
        assert recovered.stderr[key] > 0, key
    assert status["prog_noise_c0"].startswith("fitted (from the RESET reads")
    assert recovered.goodness["reads_reduced_chi2"] == pytest.approx(1.0, abs=0.05)
    assert recovered.goodness["increment_z_std"] == pytest.approx(1.0, abs=0.05)
    report = recovered.to_json()
    assert report["family"] == "joshi2020" and not report["parameters"]["nu_std_max"]["constrained"]


@pytest.mark.slow
def test_ragged_protocol_fits_the_clips_it_sees_and_keeps_the_rest():
    # One read per pulse; retention series only after the last pulse (high G): the ν law's lower
    # clips are seen, its log-linear part is not.
    data = simulate_measurements(TRUE, jax.random.key(1), n_devices=1500, n_pulses=16, protocol="ragged")
    result = fit_device(data, PRIOR, n_bootstrap=0)
    st = result.constrained
    assert st["nu_mean_min"] == "fitted" and result.device.nu_mean_min == pytest.approx(TRUE.nu_mean_min, rel=0.05)
    for key in ("nu_mean_slope", "nu_mean_intercept", "nu_std_slope", "nu_std_intercept"):
        assert st[key].startswith("default: the drift groups where ν's"), (key, st[key])
        assert getattr(result.device, key) == getattr(PRIOR, key)
    assert st["read_noise_q"] == "fitted"


def test_without_retention_reads_drift_keeps_the_prior():
    data = simulate_measurements(TRUE, jax.random.key(2), n_devices=150, n_pulses=8, drift_read_times=())
    result = fit_device(data, PRIOR, n_bootstrap=0)
    for key in ("drift_t0", "nu_mean_slope", "nu_std_min"):
        assert result.constrained[key].startswith("default: fewer than 10 (device, pulse) read at ≥ 4 distinct times"), key
        assert getattr(result.device, key) == getattr(PRIOR, key)
    assert result.constrained["read_noise_q"] == "fitted" and result.constrained["set_mean_slope"] == "fitted"


def test_the_fit_reads_noise_with_the_device_law():
    """The fit evaluates the device's read-noise law in NumPy float64: the same values as the
    device's float32 JAX, floors and cap included (G = 0, tiny G, large e)."""
    g = np.concatenate([[0.0, 1e-9, 1e-4], np.geomspace(0.01, 40.0, 200)])
    t = np.concatenate([[0.0], np.geomspace(1e-3, 1e8, 50)])
    for device in (TRUE, PRIOR, dataclasses.replace(TRUE, read_noise_exponent=0.0), dataclasses.replace(TRUE, read_noise_exponent=2.5)):
        q = read_noise_amplitude_law(device, g, np)
        assert q.dtype == np.float64
        np.testing.assert_allclose(q, np.asarray(device.read_noise_amplitude(g.astype(np.float32))), rtol=2e-6)
        np.testing.assert_allclose(log_time_factor_law(device, t, np), np.asarray(device.log_time_factor(t.astype(np.float32))), rtol=2e-6)


def test_constant_reads_are_refused():
    data = simulate_measurements(TRUE, jax.random.key(3), n_devices=20, n_pulses=4)
    data = dataclasses.replace(data, g_uS=np.full_like(data.g_uS, 2.5))
    with pytest.raises(UserInputError, match="m.csv: every g_uS is 2.5 µS"):
        fit_device(data, PRIOR, n_bootstrap=0, where="m.csv")


# ------------------------------------------------------------------ command line
def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_simulate_then_fit_joshi_writes_a_joshi_device(tmp_path):
    csv = tmp_path / "m.csv"
    result = run("simulate-measurements", "--device", "joshi2020", "--devices", 150, "--pulses", 8, "--drift-every", 1, "--out", csv)
    assert result.exit_code == 0, result.output
    out, plot = tmp_path / "fit.yaml", tmp_path / "fit.png"
    result = run("fit-device", csv, "--family", "joshi2020", "--out", out, "--plot", plot, "--bootstrap", 2, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["family"] == "joshi2020" and report["parameters"]["read_noise_q"]["status"] == "fitted"
    body = yaml.safe_load(out.read_text())
    assert body["family"] == "joshi2020"
    device = load_device(out)
    assert isinstance(device, Joshi2020)
    assert device.read_noise_q == pytest.approx(report["parameters"]["read_noise_q"]["value"])
    from tiny import assert_png_drawn

    assert_png_drawn(plot)
    # The family follows the prior when --family is not given.
    result = run("fit-device", csv, "--prior", out, "--out", tmp_path / "again.yaml", "--bootstrap", 0, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["family"] == "joshi2020"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--family", "aihwkit"], "--family: one of nandakumar2018, joshi2020, got 'aihwkit'"),
        (["--family", "joshi2020", "--prior", "nandakumar2018"], "--prior nandakumar2018 is a nandakumar2018 device, not joshi2020"),
    ],
)
def test_cli_family_flags_are_checked_before_any_work(tmp_path, flags, message):
    out = tmp_path / "fit.yaml"
    result = run("fit-device", tmp_path / "missing.csv", "--out", out, *flags)
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()
