"""The joshi2020 family (pcmmeta/core/devices/joshi.py) against the closed-form equations of IBM
aihwkit's PCM model (docs/device-model.md), device files with a family,
and training on it."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from scipy.stats import norm

from pcmmeta import UserInputError
from pcmmeta.core.devices import BUILTIN_DEVICES, AbstractPCMDevice, DeviceState, Joshi2020, Nandakumar2018
from pcmmeta.io.device_file import load_device, save_device

JOSHI = BUILTIN_DEVICES["joshi2020"]
N = 200_000


def fixed_state(g: float, nu: float = 0.05, n_set: int = 3, shape=(N,)) -> DeviceState:
    return DeviceState(
        jnp.full(shape, g, jnp.float32), jnp.zeros(shape, jnp.float32), jnp.full(shape, nu, jnp.float32), jnp.full(shape, n_set, jnp.int32)
    )


def sigma_p(g_target: float) -> float:
    g = g_target / 25.0
    return 0.26348 + 1.9650 * g - 1.1731 * g * g


def folded_normal_moments(mu: float, sigma: float) -> tuple[float, float]:
    mean = sigma * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * sigma**2)) + mu * (1 - 2 * norm.cdf(-mu / sigma))
    return mean, math.sqrt(mu**2 + sigma**2 - mean**2)


def test_both_families_are_devices_and_builtin():
    assert isinstance(JOSHI, Joshi2020) and isinstance(JOSHI, AbstractPCMDevice)
    assert isinstance(BUILTIN_DEVICES["nandakumar2018"], AbstractPCMDevice) and not isinstance(JOSHI, Nandakumar2018)
    assert (JOSHI.family, JOSHI.g_min, JOSHI.g_max, JOSHI.drift_t0) == ("joshi2020", 0.0, 25.0, 20.0)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.84, 1.0])
def test_programming_noise_std_follows_the_polynomial(fraction):
    target = 25.0 * fraction
    state = JOSHI.programmed_state(jax.random.key(0), jnp.full((N,), target), 0.0)
    g = np.asarray(state.g_prog, np.float64)
    sd = sigma_p(target)
    # 200k draws: s.e. of the std is sd/632; no draw reaches the floor at 0 for these targets.
    assert g.std() == pytest.approx(sd, rel=5 / math.sqrt(2 * N))
    assert g.mean() == pytest.approx(target, abs=5 * sd / math.sqrt(N))
    assert np.all(np.asarray(state.t_prog) == 0.0)


def test_programming_to_zero_clamps_half_the_draws_and_reset_is_programming_to_g_min():
    sd = sigma_p(0.0)
    for state in (JOSHI.programmed_state(jax.random.key(1), jnp.zeros(N), 0.0), JOSHI.initial_state(jax.random.key(2), (N,), 5.0)):
        g = np.asarray(state.g_prog, np.float64)
        assert (g == 0).mean() == pytest.approx(0.5, abs=0.005)
        assert g.mean() == pytest.approx(sd / math.sqrt(2 * math.pi), rel=0.01)  # 0.105 µS
        assert g.std() == pytest.approx(sd * math.sqrt(0.5 - 1 / (2 * math.pi)), rel=0.01)  # 0.154 µS
    assert float(JOSHI.reset_mean) == pytest.approx(sd / math.sqrt(2 * math.pi))
    assert np.all(np.asarray(state.n_set) == 0) and np.all(np.asarray(state.t_prog) == 5.0)


@pytest.mark.parametrize("fraction", [0.005, 0.03, 0.1, 0.2, 0.5, 1.0])
def test_drift_exponent_mean_and_spread_depend_on_the_target(fraction):
    state = JOSHI.programmed_state(jax.random.key(3), jnp.full((N,), 25.0 * fraction), 0.0)
    nu = np.asarray(state.nu, np.float64)
    mu = min(max(-0.0155 * math.log(fraction) + 0.0244, 0.049), 0.1)
    sigma = min(max(-0.0125 * math.log(fraction) - 0.0059, 0.008), 0.045)
    mean, sd = folded_normal_moments(mu, sigma)  # ν = |μ + σξ|
    assert nu.min() >= 0
    assert nu.mean() == pytest.approx(mean, abs=5 * sd / math.sqrt(N))
    assert nu.std() == pytest.approx(sd, rel=0.01)


def test_drift_starts_at_once_and_follows_the_power_law():
    rng = np.random.default_rng(0)
    state = DeviceState(
        jnp.asarray(rng.uniform(0.5, 25, 1000), jnp.float32), jnp.asarray(rng.uniform(0, 100, 1000), jnp.float32),
        jnp.asarray(rng.uniform(0, 0.1, 1000), jnp.float32), jnp.zeros(1000, jnp.int32),
    )
    for elapsed in (0.0, 1.0, 20.0, 3600.0, 2.6e6):
        got = np.asarray(JOSHI.drifted(state, state.t_prog + elapsed))
        want = np.asarray(state.g_prog) * ((elapsed + 20.0) / 20.0) ** -np.asarray(state.nu)
        np.testing.assert_allclose(got, want, rtol=2e-5)
    assert np.all(np.asarray(JOSHI.drifted(state, state.t_prog + 1.0)) < np.asarray(state.g_prog))  # no plateau


@pytest.mark.parametrize("g_prog", [2.5, 12.5, 25.0])
def test_read_noise_grows_with_log_time_since_programming(g_prog):
    state = fixed_state(g_prog, nu=0.05)
    relative = []
    for k, elapsed in enumerate((10.0, 3600.0, 30 * 86400.0)):
        reads = np.asarray(JOSHI.read(jax.random.key(10 + k), state, elapsed), np.float64)
        g_t = g_prog * ((elapsed + 20.0) / 20.0) ** -0.05
        q = min(0.0088 / max((g_prog / 25.0) ** 0.65, 1e-3), 0.2)
        sd = g_t * q * math.sqrt(math.log((elapsed + 20.0 + 250e-9) / (2 * 250e-9)))
        assert reads.mean() == pytest.approx(g_t, abs=5 * sd / math.sqrt(N))
        assert reads.std() == pytest.approx(sd, rel=0.02)
        assert float(JOSHI.read_std(jnp.float32(g_t), elapsed, jnp.float32(g_prog))) == pytest.approx(sd, rel=1e-5)
        relative.append(reads.std() / g_t)
    assert relative[0] < relative[1] < relative[2]


def test_read_noise_amplitude_is_keyed_by_the_programmed_conductance():
    # A strongly drifted device (ν = 0.5): G(t) is far below G_p, but Q_s stays Q_s(G_p).
    state = fixed_state(20.0, nu=0.5)
    elapsed = 3600.0
    reads = np.asarray(JOSHI.read(jax.random.key(4), state, elapsed), np.float64)
    g_t = 20.0 * ((elapsed + 20.0) / 20.0) ** -0.5
    log_factor = math.sqrt(math.log((elapsed + 20.0 + 250e-9) / 5e-7))
    at_g_prog = g_t * 0.0088 / 0.8**0.65 * log_factor
    at_g_now = g_t * 0.0088 / (g_t / 25) ** 0.65 * log_factor
    assert reads.std() == pytest.approx(at_g_prog, rel=0.02)
    assert abs(reads.std() - at_g_now) > 10 * abs(reads.std() - at_g_prog)


def test_reads_are_never_negative_and_a_device_at_zero_reads_zero():
    low = np.asarray(JOSHI.read(jax.random.key(5), fixed_state(0.2), 10.0))
    assert low.min() >= 0.0 and (low == 0).any()  # Q_s at its cap 0.2: reads often floored
    assert np.all(np.asarray(JOSHI.read(jax.random.key(6), fixed_state(0.0), 10.0)) == 0.0)


def test_set_pulse_uses_the_scaled_nandakumar_law_and_redraws_nu_for_the_new_conductance():
    g, n_set = 10.0, 4
    new = JOSHI.set_pulse(jax.random.key(7), fixed_state(g, nu=0.0, n_set=n_set), jnp.ones(N, bool), 0.0)
    inc = np.asarray(new.g_prog, np.float64) - g
    p = math.exp(-(n_set + 1) / 2.6)
    mean = -0.084 * g + 0.880 * 25 / 12 + 1.40 * 25 / 12 * p
    std = 0.091 * g + 0.260 * 25 / 12 + 2.15 * 25 / 12 * p
    assert inc.mean() == pytest.approx(mean, abs=5 * std / math.sqrt(N))
    assert inc.std() == pytest.approx(std, rel=5 / math.sqrt(2 * N))
    assert np.all(np.asarray(new.n_set) == n_set + 1)
    # ν is keyed by each device's new conductance: the first pulse after RESET spreads devices
    # over 0–15 µS; binned, ν's mean follows the law (log-linear below 5 µS, flat above).
    first = JOSHI.set_pulse(jax.random.key(8), fixed_state(3.0, nu=0.0, n_set=0), jnp.ones(N, bool), 0.0)
    g_new, nu = np.asarray(first.g_prog), np.asarray(first.nu)
    for lo, hi in ((1.5, 2.5), (3.0, 4.0), (10.0, 12.0)):
        sel = (g_new >= lo) & (g_new < hi)
        want = np.asarray(JOSHI.nu_mean(jnp.asarray(g_new[sel]))).mean()
        assert sel.sum() > 5000 and nu[sel].mean() == pytest.approx(want, abs=0.001), (lo, hi)
    assert nu[(g_new >= 1.5) & (g_new < 2.5)].mean() > nu[(g_new >= 10) & (g_new < 12)].mean() + 0.01


def test_gradients_are_finite_at_zero_conductance():
    def loss(g):
        state = JOSHI.programmed_state(jax.random.key(8), g, 0.0)
        state = JOSHI.set_pulse_outcome(jax.random.key(9), state, 100.0)
        return jnp.sum(JOSHI.read(jax.random.key(10), state, 1000.0)) + jnp.sum(JOSHI.read(jax.random.key(11), JOSHI.programmed_state(jax.random.key(12), g, 0.0), 50.0))

    grad = jax.jit(jax.grad(loss))(jnp.asarray([0.0, 0.0, 1e-6, 3.0, 24.9, 25.0]))
    assert np.all(np.isfinite(np.asarray(grad)))


# ------------------------------------------------------------------ device files and families
def test_yaml_round_trip_keeps_the_family(tmp_path):
    device = dataclasses.replace(JOSHI, read_noise_q=0.01, drift_t0=30.0, name="mine")
    path = tmp_path / "dev.yaml"
    save_device(device, path)
    body = yaml.safe_load(path.read_text())
    assert body["family"] == "joshi2020" and body["name"] == "mine" and set(body["parameters"]) == set(Joshi2020.parameter_names())
    loaded = load_device(path)
    assert isinstance(loaded, Joshi2020) and loaded == device
    # nandakumar2018 files carry their family too; a file without one is nandakumar2018
    save_device(BUILTIN_DEVICES["nandakumar2018"], tmp_path / "n.yaml")
    assert yaml.safe_load((tmp_path / "n.yaml").read_text())["family"] == "nandakumar2018"
    legacy = yaml.safe_load((tmp_path / "n.yaml").read_text())
    del legacy["family"]
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(legacy))
    assert isinstance(load_device(tmp_path / "old.yaml"), Nandakumar2018)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda b: b.update(family="joshi2021"), "'family' must be one of nandakumar2018, joshi2020, got 'joshi2021' (did you mean 'joshi2020'?)"),
        (lambda b: b.update(family=3), "'family' must be one of nandakumar2018, joshi2020, got 3"),
        (lambda b: b.update(famliy="joshi2020"), "unknown key 'famliy' (did you mean 'family'?)"),
        (lambda b: b.pop("family"), "unknown parameter 'parameters.nu_mean_intercept' for family nandakumar2018 (a joshi2020 parameter: add 'family: joshi2020')"),
        (lambda b: b["parameters"].pop("t_read"), "missing parameter 'parameters.t_read' (family joshi2020)"),
        (lambda b: b["parameters"].update(read_std_slope=0.1), "unknown parameter 'parameters.read_std_slope' for family joshi2020"),
        (lambda b: b["parameters"].update(nu_mean_min=0.2), "'parameters.nu_mean_max' must be ≥ 'parameters.nu_mean_min' (0.2)"),
        (lambda b: b["parameters"].update(nu_std_min=-0.01), "'parameters.nu_std_min' must be ≥ 0, got -0.01"),
        (lambda b: b["parameters"].update(t_read=30.0), "'parameters.t_read' must be below 'parameters.drift_t0' (20.0 s)"),
        (lambda b: b["parameters"].update(prog_noise_c0=-0.1), "'parameters.prog_noise_c0' must be ≥ 0 (σ_p at G = 0)"),
        (lambda b: b["parameters"].update(prog_noise_c2=-3.0), "'parameters.prog_noise_c1' must be such that σ_p = c0 + c1·g + c2·g² is ≥ 0"),
        (lambda b: b["parameters"].update(g_max=1e39), "'parameters.g_max' must be a finite float32"),
        (lambda b: b["parameters"].update(read_noise_q="x"), "'parameters.read_noise_q' must be a finite number, got 'x'"),
    ],
)
def test_bad_joshi_device_files_are_one_line(tmp_path, edit, message):
    path = tmp_path / "dev.yaml"
    save_device(JOSHI, path)
    body = yaml.safe_load(path.read_text())
    edit(body)
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(UserInputError) as err:
        load_device(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text


def test_bad_family_name_via_the_cli_is_one_line_exit_2(tmp_path):
    from typer.testing import CliRunner

    from pcmmeta.cli.app import app

    path = tmp_path / "dev.yaml"
    path.write_text("family: aihwkit\nparameters: {}\n")
    result = CliRunner().invoke(app, ["simulate-measurements", "--device", str(path), "--out", str(tmp_path / "m.csv")])
    assert result.exit_code == 2
    assert f"{path}: 'family' must be one of nandakumar2018, joshi2020, got 'aihwkit'" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "m.csv").exists()


def test_policy_fingerprint_names_the_family_and_keeps_nandakumar_fingerprints():
    import hashlib

    from pcmmeta.core.programming import device_fingerprint

    nandakumar = BUILTIN_DEVICES["nandakumar2018"]
    old = json.dumps({k: float(v) for k, v in nandakumar.to_dict().items() if k != "name"}, sort_keys=True)
    assert device_fingerprint(nandakumar) == hashlib.sha256(old.encode()).hexdigest()[:12]  # cached policies stay valid
    assert device_fingerprint(JOSHI) != device_fingerprint(nandakumar)
    assert device_fingerprint(JOSHI) == device_fingerprint(dataclasses.replace(JOSHI, name="other"))
    assert device_fingerprint(JOSHI) != device_fingerprint(dataclasses.replace(JOSHI, drift_t0=21.0))


@pytest.mark.slow
def test_meta_train_sine_quick_on_joshi2020(tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    from pcmmeta.cli.app import app

    recipe = yaml.safe_load((Path(__file__).parent.parent / "recipes" / "sine-quick.yaml").read_text())
    recipe["device"] = "joshi2020"
    recipe["train"].update(iterations=2, meta_batch=4, checkpoint_every=2)
    recipe["eval"] = {"tasks": 4, "plot_tasks": 1}
    path = tmp_path / "sine-quick-joshi.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["meta-train", str(path), "--runs-dir", str(tmp_path / "runs"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert math.isfinite(report["mse_after"]) and report["pulses_per_task"] > 0
    run_dir = Path(report["run_dir"])
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["device"] == "joshi2020"
