import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pcmmeta.device import BUILTIN_DEVICES
from pcmmeta.errors import UserInputError
from pcmmeta.programming import (
    PolicyInfo,
    PolicyTraining,
    ProgrammingPolicy,
    learned_program,
    load_policy,
    obtain_policy,
    save_policy,
    train_policy,
    write_verify,
)
from pcmmeta.programming.learned import MAX_BURST, device_fingerprint

DEVICE = BUILTIN_DEVICES["nandakumar2018"]
NOISELESS = dataclasses.replace(
    DEVICE, reset_std=0.0, set_std_slope=0.0, set_std_intercept=0.0, set_std_history=0.0,
    drift_nu_mean=0.0, drift_nu_std=0.0, read_std_slope=0.0, read_std_intercept=0.0,
)


def fixed_burst(k: float) -> ProgrammingPolicy:
    """A policy that always asks for k pulses (softplus(bias) = k, weights zero) and accepts
    reads within the tolerance (band 0.5 + sigmoid(0) = 1)."""
    policy = ProgrammingPolicy(jax.random.key(0))
    bias = jnp.array([np.log(np.expm1(k)), 0.0], jnp.float32)
    return eqx.tree_at(lambda p: p.mlp.layers[-1].bias, policy, bias)


def info_for(device, tolerance=0.5, max_pulses=100) -> PolicyInfo:
    return PolicyInfo(device.name, device_fingerprint(device), tolerance, max_pulses, {})


@pytest.mark.parametrize("budget", [3, 10, 40])
def test_learned_programming_never_exceeds_the_budget(budget):
    target = jax.random.uniform(jax.random.key(1), (4000,), minval=0.1, maxval=12.0)
    result = learned_program(jax.random.key(2), DEVICE, target, fixed_burst(7.0), tolerance=0.1, max_pulses=budget)
    pulses = np.asarray(result.pulses)
    assert pulses.max() <= budget and (pulses == budget).any()
    # every device got a verify read after its last pulse, and no more reads than pulses + 1
    assert np.all(np.asarray(result.reads) >= 1) and np.all(np.asarray(result.reads) <= pulses + 1)


def rule_on_mean_trajectory(traj: np.ndarray, g: float, tol: float, burst: int, budget: int, reset_level: float):
    """Reference: the learned method's rule, step by step, on a noiseless device."""
    n, sets, resets, reads, left = 0, 0, 0, 0, 0
    while True:
        if left == 0:
            reads += 1
            err = traj[n] - g
            if abs(err) <= tol:
                return sets, resets, reads, True
            if sets + resets >= budget:
                return sets, resets, reads, False
            if err > 0:
                resets, n = resets + 1, 0
                left = min(burst, budget - sets - resets) if sets + resets < budget else 0
                continue
            left = min(burst, budget - sets - resets)
        n, sets, left = n + 1, sets + 1, left - 1
        if sets + resets >= budget and left > 0:
            left = 0


def test_noiseless_learned_programming_follows_the_mean_trajectory():
    target = jnp.linspace(0.5, 10.0, 200)
    tol, burst, budget = 0.3, 3, 60
    result = learned_program(jax.random.key(0), NOISELESS, target, fixed_burst(float(burst)), tolerance=tol, max_pulses=budget)
    traj = np.asarray(NOISELESS.mean_trajectory())
    sets, resets, reads = (np.asarray(a) for a in (result.set_pulses, result.resets, result.reads))
    g = np.asarray(result.state.g_prog)
    for i, t in enumerate(np.asarray(target)):
        expected = rule_on_mean_trajectory(traj, float(t), tol, burst, budget, NOISELESS.reset_mean)
        assert (sets[i], resets[i], reads[i], bool(result.converged[i])) == expected, (t, expected)
    # a noiseless device sits exactly on the mean trajectory at its SET count since the last RESET
    n_since_reset = np.asarray(result.state.n_set)
    np.testing.assert_allclose(g, traj[n_since_reset], rtol=1e-5)
    ok = np.asarray(result.converged)
    assert ok.mean() > 0.3 and np.abs(g - np.asarray(target))[ok].max() <= tol + 1e-5


def test_a_briefly_trained_policy_reads_less_than_write_verify():
    settings = PolicyTraining(iterations=8, batch=256, population=8)
    policy, history = train_policy(jax.random.key(3), DEVICE, settings=settings)
    assert len(history) == 8 and np.all(np.isfinite(history))
    target = jax.random.uniform(jax.random.key(4), (4096,), minval=DEVICE.g_min, maxval=DEVICE.g_max)
    key = jax.random.key(5)
    wv = write_verify(key, DEVICE, target)
    start = learned_program(key, DEVICE, target, ProgrammingPolicy(jax.random.key(3)))
    trained = learned_program(key, DEVICE, target, policy)
    reads = lambda r: float(np.asarray(r.reads).mean())
    # the untrained policy is write-verify minus the read after each RESET; training must add bursts
    assert reads(start) < reads(wv)
    assert reads(trained) < 0.9 * reads(start), (reads(wv), reads(start), reads(trained))
    assert float(np.asarray(trained.set_pulses).max()) <= 100


def test_policy_file_round_trip_and_refusals(tmp_path):
    policy = train_policy(jax.random.key(0), DEVICE, settings=PolicyTraining(iterations=2, batch=64, population=4))[0]
    info = info_for(DEVICE)
    path = tmp_path / "p.policy"
    save_policy(path, policy, info)
    loaded, loaded_info = load_policy(path)
    assert loaded_info == info
    features = jax.random.uniform(jax.random.key(1), (50, 6))
    np.testing.assert_array_equal(np.asarray(policy.burst(features)), np.asarray(loaded.burst(features)))

    other = BUILTIN_DEVICES["nandakumar2018-simplified"]
    with pytest.raises(UserInputError, match="trained for device 'nandakumar2018'.*--force-policy"):
        obtain_policy(other, 0.5, 100, path=path)
    with pytest.raises(UserInputError, match="--tolerance 0.5 --max-pulses 100"):
        obtain_policy(DEVICE, 0.3, 100, path=path)
    forced = obtain_policy(other, 0.5, 100, path=path, force=True)[0]
    np.testing.assert_array_equal(np.asarray(forced.burst(features)), np.asarray(policy.burst(features)))

    damaged = tmp_path / "damaged.policy"
    damaged.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(UserInputError, match="damaged policy"):
        load_policy(damaged)
    (tmp_path / "text.policy").write_text("hello\n")
    with pytest.raises(UserInputError, match="not a programming-policy file"):
        load_policy(tmp_path / "text.policy")
    with pytest.raises(UserInputError, match="is a folder"):
        load_policy(tmp_path)


def test_policy_is_trained_once_then_read_from_the_cache(tmp_path):
    calls = []

    def train():
        calls.append(1)
        return fixed_burst(2.0), info_for(DEVICE, 0.4, 50)

    first = obtain_policy(DEVICE, 0.4, 50, cache_dir=tmp_path, train=train)
    second = obtain_policy(DEVICE, 0.4, 50, cache_dir=tmp_path, train=train)
    assert first[3] is True and second[3] is False and len(calls) == 1 and first[2] == second[2]
    assert first[2].parent.parent == tmp_path
    # another device's parameters are another cache entry, and without a trainer that is an error
    with pytest.raises(UserInputError, match="learn-programming"):
        obtain_policy(BUILTIN_DEVICES["nandakumar2018-simplified"], 0.4, 50, cache_dir=tmp_path)


def test_burst_is_clipped_to_max_burst():
    result = learned_program(jax.random.key(0), NOISELESS, jnp.full((10,), 11.9), fixed_burst(200.0), tolerance=0.01, max_pulses=100)
    # the first verify read after the initial RESET is followed by at most MAX_BURST pulses
    assert np.all(np.asarray(result.reads) >= 1)
    assert np.all(np.asarray(result.set_pulses) <= 100)
    assert MAX_BURST < 100
