import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from pcmmeta import UserInputError, conductances_from_weights, weights_from_conductances
from pcmmeta.core.devices import BUILTIN_DEVICES, DeviceState
from pcmmeta.io.device_file import load_device, save_device

DEVICE = BUILTIN_DEVICES["nandakumar2018"]
N = 200_000


def state_at(g: float, n_set: int, shape=(N,), t_prog: float = 0.0, nu: float = 0.04) -> DeviceState:
    return DeviceState(
        g_prog=jnp.full(shape, g, jnp.float32),
        t_prog=jnp.full(shape, t_prog, jnp.float32),
        nu=jnp.full(shape, nu, jnp.float32),
        n_set=jnp.full(shape, n_set, jnp.int32),
    )


@pytest.mark.parametrize("g, n_set", [(5.0, 2), (3.0, 10), (6.0, 3)])
def test_set_increment_mean_and_std_match_parameters(g, n_set):
    state = state_at(g, n_set)
    t = 10.0  # before t0: the pulse acts on the undrifted conductance
    new = DEVICE.set_pulse(jax.random.key(0), state, jnp.ones(N, bool), t)
    inc = np.asarray(new.g_prog) - g
    n = n_set + 1
    p = np.exp(-n / DEVICE.set_history_decay)
    mean = DEVICE.set_mean_slope * g + DEVICE.set_mean_intercept + DEVICE.set_mean_history * p
    std = DEVICE.set_std_slope * g + DEVICE.set_std_intercept + DEVICE.set_std_history * p
    assert g + mean - 4 * std > DEVICE.g_min and g + mean + 4 * std < DEVICE.g_max  # no clipping here
    # 200k samples: s.e. of the mean is std/447, of the std std/632.
    assert inc.mean() == pytest.approx(mean, abs=5 * std / np.sqrt(N))
    assert inc.std() == pytest.approx(std, rel=5 / np.sqrt(2 * N))
    assert np.all(np.asarray(new.n_set) == n)
    assert np.all(np.asarray(new.t_prog) == t)


def test_pulse_redraws_drift_exponent_with_its_distribution():
    new = DEVICE.set_pulse(jax.random.key(1), state_at(5.0, 3, nu=0.5), jnp.ones(N, bool), 1.0)
    nu = np.asarray(new.nu)
    assert nu.min() >= 0
    assert nu.mean() == pytest.approx(DEVICE.drift_nu_mean, abs=1e-3)
    assert nu.std() == pytest.approx(DEVICE.drift_nu_std, rel=0.05)


def test_noiseless_drift_follows_power_law_exactly():
    rng = np.random.default_rng(0)
    shape = (1000,)
    state = DeviceState(
        g_prog=jnp.asarray(rng.uniform(0.5, 12, shape), jnp.float32),
        t_prog=jnp.asarray(rng.uniform(0, 100, shape), jnp.float32),
        nu=jnp.asarray(rng.uniform(0, 0.1, shape), jnp.float32),
        n_set=jnp.zeros(shape, jnp.int32),
    )
    for elapsed in (0.0, 1.0, 38.6, 100.0, 3600.0, 2.6e6):
        t = np.asarray(state.t_prog) + elapsed
        got = np.asarray(DEVICE.drifted(state, jnp.asarray(t)))
        factor = (max(elapsed, DEVICE.drift_t0) / DEVICE.drift_t0) ** -np.asarray(state.nu)
        np.testing.assert_allclose(got, np.asarray(state.g_prog) * factor, rtol=2e-5)
    # no drift before t0
    np.testing.assert_array_equal(np.asarray(DEVICE.drifted(state, state.t_prog + 20.0)), np.asarray(state.g_prog))


def test_read_noise_std_matches_and_reads_are_never_negative():
    for g in (0.5, 6.0, 11.0):
        reads = np.asarray(DEVICE.read(jax.random.key(2), state_at(g, 1), 10.0))
        assert reads.mean() == pytest.approx(g, abs=5 * float(DEVICE.read_std(g)) / np.sqrt(N))
        assert reads.std() == pytest.approx(float(DEVICE.read_std(g)), rel=0.02)
    low = np.asarray(DEVICE.read(jax.random.key(3), state_at(0.1, 0), 10.0))
    assert low.min() >= 0.0 and (low == 0).any()


def test_read_applies_drift_before_noise():
    state = state_at(8.0, 1)
    t = 3600.0 * 24
    reads = np.asarray(DEVICE.read(jax.random.key(4), state, t))
    expected = 8.0 * (t / DEVICE.drift_t0) ** -0.04
    assert reads.mean() == pytest.approx(expected, abs=0.01)
    # The spread tells the order apart: noise on the drifted conductance has std σ(G(t)); noise
    # drawn at programming and then drifted would have std f·σ(G_p) (0.306 vs 0.272 µS here).
    drift_first = float(DEVICE.read_std(expected))
    noise_first = float(DEVICE.read_std(8.0)) * expected / 8.0
    assert abs(drift_first - noise_first) > 0.03
    assert reads.std() == pytest.approx(drift_first, rel=0.02)
    assert abs(reads.std() - noise_first) > 10 * abs(reads.std() - drift_first)


def test_clipping_holds_under_many_pulses():
    state = DEVICE.initial_state(jax.random.key(5), (20_000,))
    pulse = jax.jit(lambda k, s, t: DEVICE.set_pulse(k, s, jnp.ones(s.shape, bool), t))
    for i, k in enumerate(jax.random.split(jax.random.key(6), 40)):
        state = pulse(k, state, float(i))
        g = np.asarray(state.g_prog)
        assert g.min() >= DEVICE.g_min and g.max() <= DEVICE.g_max
    assert np.isclose(g.max(), DEVICE.g_max) or g.max() > 10  # near saturation


def test_unmasked_devices_never_change():
    state = DEVICE.initial_state(jax.random.key(7), (50, 40), t=3.0)
    state = DEVICE.set_pulse(jax.random.key(8), state, jnp.ones((50, 40), bool), 10.0)
    mask = jax.random.bernoulli(jax.random.key(9), 0.3, (50, 40))
    for op in (DEVICE.set_pulse, DEVICE.reset):
        new = op(jax.random.key(10), state, mask, 500.0)
        for field in ("g_prog", "t_prog", "nu", "n_set"):
            old_v, new_v = np.asarray(getattr(state, field)), np.asarray(getattr(new, field))
            np.testing.assert_array_equal(new_v[~np.asarray(mask)], old_v[~np.asarray(mask)])
        assert np.all(np.asarray(new.t_prog)[np.asarray(mask)] == 500.0)
    reset = DEVICE.reset(jax.random.key(11), state, mask, 500.0)
    assert np.all(np.asarray(reset.n_set)[np.asarray(mask)] == 0)


def test_gradients_flow_through_noise_and_operations_compose_with_jit_vmap():
    state = state_at(5.0, 2, shape=(3, 4))

    def loss(g):
        s = DeviceState(g, state.t_prog, state.nu, state.n_set)
        s = DEVICE.set_pulse_outcome(jax.random.key(0), s, 100.0)
        return jnp.sum(DEVICE.read(jax.random.key(1), s, 1000.0))

    grad = jax.jit(jax.grad(loss))(state.g_prog)
    assert np.all(np.isfinite(np.asarray(grad))) and np.all(np.asarray(grad) != 0)
    keys = jax.random.split(jax.random.key(2), 5)
    reads = jax.vmap(lambda k: DEVICE.read(k, state, 10.0))(keys)
    assert reads.shape == (5, 3, 4)


def test_pulses_to_reach_is_monotone_from_reset():
    g = jnp.linspace(0.1, 12.0, 200)
    n = np.asarray(DEVICE.pulses_to_reach(g))
    assert n[0] == 0 and np.all(np.diff(n) >= 0) and n[-1] > 10


def test_builtin_devices_and_yaml_round_trip(tmp_path):
    simplified = BUILTIN_DEVICES["nandakumar2018-simplified"]
    assert simplified.set_mean_history == 0 and simplified.set_std_intercept == pytest.approx(0.575)
    path = tmp_path / "dev.yaml"
    save_device(DEVICE, path)
    loaded = load_device(path)
    for key, value in DEVICE.to_dict().items():
        if key != "name":
            assert getattr(loaded, key) == pytest.approx(value)


@pytest.mark.parametrize(
    "body, message",
    [
        ("parameters: {}\n", "missing parameter 'parameters.g_min'"),
        ("parameters:\n  g_mn: 1\n", "unknown parameter 'parameters.g_mn'"),
        ("- a\n- b\n", "expected a mapping"),
        ("parameters: [\n", "not valid YAML"),
    ],
)
def test_bad_device_files(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(UserInputError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_device(path)


def test_bad_device_value(tmp_path):
    path = tmp_path / "dev.yaml"
    save_device(DEVICE, path)
    path.write_text(path.read_text().replace("g_max: 12.0", "g_max: twelve"))
    with pytest.raises(UserInputError, match="'parameters.g_max' must be a finite number"):
        load_device(path)
    with pytest.raises(UserInputError, match="no such device file"):
        load_device(tmp_path / "missing.yaml")


def test_differential_pair_round_trip():
    w = jnp.linspace(-0.9, 0.9, 19)
    g_plus, g_minus = conductances_from_weights(w, DEVICE, scale=1.0)
    assert float(jnp.minimum(g_plus, g_minus).max()) == pytest.approx(DEVICE.g_min)
    np.testing.assert_allclose(np.asarray(weights_from_conductances(g_plus, g_minus, DEVICE)), np.asarray(w), atol=1e-6)
    g_plus, g_minus = conductances_from_weights(jnp.asarray([2.0, -3.0]), DEVICE, scale=0.5)
    np.testing.assert_allclose(np.asarray(weights_from_conductances(g_plus, g_minus, DEVICE, 0.5)), [0.5, -0.5], atol=1e-6)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"read_std_intercept": -0.5}, "'parameters.read_std_intercept' must be ≥ 0, got -0.5"),
        ({"set_std_intercept": -1.0}, "'parameters.set_std_intercept' must be ≥ 0"),
        ({"g_min": 12.0}, "'parameters.g_min' (12.0) must be below 'parameters.g_max' (12.0)"),
        ({"g_min": 13.0}, "'parameters.g_min' (13.0) must be below 'parameters.g_max' (12.0)"),
        ({"g_max": 1e40}, "'parameters.g_max' must be a finite float32"),
        ({"drift_t0": -1e39}, "'parameters.drift_t0' must be a finite float32"),
        ({"drift_nu_mean": -0.5}, "'parameters.drift_nu_mean' must be ≥ 0"),
        ({"reset_mean": -1.0}, "'parameters.reset_mean' must be ≥ 0"),
        ({"read_std_slope": -1.0}, "'parameters.read_std_slope' must be such that the read noise std is ≥ 0 up to g_max"),
        ({"set_history_decay": 0.0}, "'parameters.set_history_decay' must be > 0"),
    ],
)
def test_device_parameters_that_describe_no_device_are_refused(tmp_path, changes, message):
    import dataclasses

    path = tmp_path / "dev.yaml"
    save_device(dataclasses.replace(DEVICE, **changes), path)
    with pytest.raises(UserInputError) as err:
        load_device(path)
    assert f"{path}: {message}" in str(err.value)
    # the same file with the default value of that parameter loads
    body = yaml.safe_load(path.read_text())
    body["parameters"].update({k: float(getattr(DEVICE, k)) for k in changes})
    path.write_text(yaml.safe_dump(body))
    assert load_device(path) == dataclasses.replace(DEVICE, name=body["name"])
