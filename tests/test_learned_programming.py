import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pcmmeta.core.devices import BUILTIN_DEVICES
from pcmmeta.core.programming import (
    MAX_BURST,
    POLICY_FORMAT,
    PolicyInfo,
    PolicyTraining,
    ProgrammingCost,
    ProgrammingPolicy,
    counts_time,
    device_fingerprint,
    learned_program,
    make_grid,
    plan_policy,
    rule_policy,
    sample_targets,
    train_policy,
    transition_kernels,
    write_verify,
)
from pcmmeta.core.programming.learned import DONE, RESET
from pcmmeta.errors import UserInputError
from pcmmeta.io.policy_file import cached_policy_path, load_policy, obtain_policy, save_policy

DEVICE = BUILTIN_DEVICES["nandakumar2018"]
NOISELESS = dataclasses.replace(
    DEVICE, reset_std=0.0, set_std_slope=0.0, set_std_intercept=0.0, set_std_history=0.0,
    drift_nu_mean=0.0, drift_nu_std=0.0, read_std_slope=0.0, read_std_intercept=0.0,
)
#: A coarse grid (0.2 µS) and small batches: seconds instead of minutes.
QUICK = PolicyTraining(iterations=3, batch=3000, cells=60, margin=0.0)


@pytest.fixture(scope="module")
def planned():
    """The default device's policy planned on the coarse grid at a fixed price (µs)."""
    grid = make_grid(DEVICE, QUICK.cells)
    return plan_policy(DEVICE, grid, transition_kernels(DEVICE, grid), 0.5, ProgrammingCost(), 3.0).policy


@pytest.fixture(scope="module")
def trained():
    return train_policy(jax.random.key(3), DEVICE, settings=QUICK)


def info_for(device, policy, tolerance=0.5, max_pulses=100) -> PolicyInfo:
    return PolicyInfo(device.name, device_fingerprint(device), tolerance, max_pulses, {}, policy.grid())


@pytest.mark.parametrize("budget", [3, 10, 40])
def test_learned_programming_never_exceeds_the_budget(budget, planned):
    target = jax.random.uniform(jax.random.key(1), (4000,), minval=0.1, maxval=12.0)
    for policy in (rule_policy(DEVICE, 0.1, 7), planned):
        result = learned_program(jax.random.key(2), DEVICE, target, policy, max_pulses=budget)
        pulses, reads = np.asarray(result.pulses), np.asarray(result.reads)
        assert pulses.max() <= budget and (pulses == budget).any()
        # a device that pulsed was read after its last burst: at least one read, at most one per pulse + 1
        assert np.all(reads[pulses > 0] >= 1) and np.all(reads <= pulses + 1)
        # the policy's "done" or the budget ends every device
        assert np.all(np.asarray(result.converged) | (pulses == budget))


def reference(policy: ProgrammingPolicy, traj: np.ndarray, target: float, budget: int):
    """The learned method's rule, step by step, on a noiseless device (reads = the mean trajectory)."""

    def ask(fn, *args):
        return int(fn(*(jnp.asarray([a]) for a in args))[0])

    n, sets, resets, reads, fresh = 0, 0, 0, 0, True
    while True:
        if fresh:
            choice = ask(policy.first, target)
        else:
            reads += 1
            choice = ask(policy.choose, target, traj[n], n)
        if choice == DONE:
            return sets, resets, reads, True
        if sets + resets >= budget:
            if fresh:  # RESET at the budget: read once more, then stop
                fresh = False
                continue
            return sets, resets, reads, False
        if choice == RESET:
            resets, n, fresh = resets + 1, 0, True
            continue
        burst = min(choice, budget - sets - resets)
        sets, n, fresh = sets + burst, n + burst, False


@pytest.mark.parametrize("which", ["rule", "planned"])
def test_noiseless_learned_programming_follows_the_mean_trajectory(which, planned):
    policy = rule_policy(NOISELESS, 0.3, 3) if which == "rule" else planned
    target = jnp.linspace(0.5, 10.0, 60)
    budget = 60
    result = learned_program(jax.random.key(0), NOISELESS, target, policy, max_pulses=budget)
    traj = np.asarray(NOISELESS.mean_trajectory())
    sets, resets, reads = (np.asarray(a) for a in (result.set_pulses, result.resets, result.reads))
    for i, t in enumerate(np.asarray(target)):
        expected = reference(policy, traj, float(t), budget)
        assert (sets[i], resets[i], reads[i], bool(result.converged[i])) == expected, (t, expected)
    # a noiseless device sits exactly on the mean trajectory at its SET count since the last RESET
    np.testing.assert_allclose(np.asarray(result.state.g_prog), traj[np.asarray(result.state.n_set)], rtol=1e-5)
    if which == "rule":
        ok = np.asarray(result.converged)
        assert ok.mean() > 0.3 and np.abs(np.asarray(result.state.g_prog) - np.asarray(target))[ok].max() <= 0.3 + NOISELESS.g_max / 60


def test_kernels_are_the_device_model(planned):
    """Each kernel row is a probability distribution, and the read after k blind pulses from a
    RESET has the mean and spread of the device simulated pulse by pulse."""
    grid = make_grid(DEVICE, 120)
    kernels = transition_kernels(DEVICE, grid, 8)
    np.testing.assert_allclose(np.asarray(kernels.burst[0, :, grid.g_lo : grid.g_hi + 1].sum(-1)), 1.0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(kernels.from_reset.sum(-1)), 1.0, atol=1e-4)
    state = DEVICE.initial_state(jax.random.key(0), (200_000,))
    for k in range(1, 9):
        state = DEVICE.set_pulse(jax.random.key(k), state, jnp.ones((200_000,), bool), 0.0)
        reads = np.asarray(DEVICE.read(jax.random.key(100 + k), state, 0.0))
        p = np.asarray(kernels.from_reset[k - 1], np.float64)
        mean = (p * grid.x).sum()
        std = np.sqrt((p * (grid.x - mean) ** 2).sum())
        assert mean == pytest.approx(reads.mean(), abs=0.03) and std == pytest.approx(reads.std(), rel=0.03), k


def test_planned_decisions_follow_the_device_physics(planned):
    """A read just below a target means a SET burst; a read far above a low target means RESET (SET
    only raises G there); a read above a high target means SET (increments there are mostly
    spread: a pulse lowers G about as often as it raises it); at the RESET level done at once."""

    def choose(target, read, n=12):
        return int(planned.choose(jnp.asarray([target]), jnp.asarray([read]), jnp.asarray([n]))[0])

    assert choose(6.0, 4.0) > 0 and choose(6.0, 2.0) >= choose(6.0, 5.0) >= 1
    assert choose(2.0, 3.5) == RESET
    assert choose(10.0, 10.8) > 0
    assert choose(6.0, 6.0) == DONE
    assert int(planned.first(jnp.asarray([DEVICE.reset_mean + 0.05]))[0]) == DONE
    assert int(planned.first(jnp.asarray([11.0]))[0]) > 3  # far from the RESET level: a long blind burst
    assert int(jnp.max(planned.decision)) <= MAX_BURST and int(jnp.max(planned.after_reset)) <= MAX_BURST


def test_a_briefly_trained_policy_beats_write_verify(trained):
    """Trained on 3,000 targets with 3 calibration steps: on held-out targets, at least as precise as
    write-verify (within one paired s.e.) in well under half its verify reads and time."""
    policy, history, price = trained
    assert len(history) == QUICK.iterations and np.all(np.isfinite(history)) and price > 0
    target = jax.random.uniform(jax.random.key(4), (20_000,), minval=DEVICE.g_min, maxval=DEVICE.g_max)
    key = jax.random.key(5)
    wv = write_verify(key, DEVICE, target)
    learned = learned_program(key, DEVICE, target, policy)
    mean = lambda a: float(np.mean(np.asarray(a)))  # noqa: E731
    assert mean(learned.reads) < 0.45 * mean(wv.reads), (mean(learned.reads), mean(wv.reads))
    cost = ProgrammingCost()
    assert mean(counts_time(cost, learned)) < 0.6 * mean(counts_time(cost, wv))
    err, err_wv = np.asarray(learned.state.g_prog - target), np.asarray(wv.state.g_prog - target)
    within = (np.abs(err) <= 0.5).astype(float) - (np.abs(err_wv) <= 0.5)
    assert within.mean() > -within.std() / np.sqrt(within.size)
    assert np.sqrt(np.mean(err**2)) <= np.sqrt(np.mean(err_wv**2)) * 1.02
    assert np.asarray(learned.pulses).max() <= 100


def test_policy_file_round_trip_and_refusals(tmp_path, planned):
    info = info_for(DEVICE, planned)
    path = tmp_path / "p.policy"
    save_policy(path, planned, info)
    loaded, loaded_info = load_policy(path)
    assert loaded_info == info
    target = jax.random.uniform(jax.random.key(1), (500,), minval=0.1, maxval=12.0)
    read = target + jax.random.normal(jax.random.key(2), (500,))
    n = jax.random.randint(jax.random.key(3), (500,), 0, 30)
    np.testing.assert_array_equal(np.asarray(planned.choose(target, read, n)), np.asarray(loaded.choose(target, read, n)))
    np.testing.assert_array_equal(np.asarray(planned.first(target)), np.asarray(loaded.first(target)))

    other = BUILTIN_DEVICES["nandakumar2018-simplified"]
    with pytest.raises(UserInputError, match="trained for device 'nandakumar2018'.*--force-policy"):
        obtain_policy(other, 0.5, 100, path=path)
    with pytest.raises(UserInputError, match="--tolerance 0.5 --max-pulses 100"):
        obtain_policy(DEVICE, 0.3, 100, path=path)
    forced = obtain_policy(other, 0.5, 100, path=path, force=True)[0]
    np.testing.assert_array_equal(np.asarray(forced.decision), np.asarray(planned.decision))

    damaged = tmp_path / "damaged.policy"
    damaged.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(UserInputError, match="damaged policy"):
        load_policy(damaged)
    (tmp_path / "text.policy").write_text("hello\n")
    with pytest.raises(UserInputError, match="not a programming-policy file"):
        load_policy(tmp_path / "text.policy")
    with pytest.raises(UserInputError, match="is a folder"):
        load_policy(tmp_path)


def test_an_older_policy_file_is_refused_in_one_line(tmp_path):
    """A format-1 file (the MLP policy of an earlier pcmmeta): refused, not a crash."""
    header = {"device_name": "nandakumar2018", "device_fingerprint": device_fingerprint(DEVICE), "tolerance_uS": 0.5,
              "max_pulses": 100, "cost": {}, "width": 16, "depth": 2, "targets": "uniform", "iterations": 300, "seed": 0, "format": 1}
    path = tmp_path / "old.policy"
    path.write_bytes(b"PCMMETA-PROGRAMMING-POLICY\n" + json.dumps(header).encode() + b"\n" + b"\x93NUMPY leaves")
    with pytest.raises(UserInputError, match=f"format 1 .*reads format {POLICY_FORMAT}.*learn-programming") as err:
        obtain_policy(DEVICE, 0.5, 100, path=path)
    assert "\n" not in str(err.value)
    # an older pcmmeta's cache entry is another file: not picked up, a new policy is trained
    assert f"-f{POLICY_FORMAT}.policy" in cached_policy_path(DEVICE, 0.5, 100, ProgrammingCost(), tmp_path).name


def test_policy_is_trained_once_then_read_from_the_cache(tmp_path):
    calls = []
    policy = rule_policy(DEVICE, 0.4, 2, cells=60)

    def train():
        calls.append(1)
        return policy, info_for(DEVICE, policy, 0.4, 50)

    first = obtain_policy(DEVICE, 0.4, 50, cache_dir=tmp_path, train=train)
    second = obtain_policy(DEVICE, 0.4, 50, cache_dir=tmp_path, train=train)
    assert first[3] is True and second[3] is False and len(calls) == 1 and first[2] == second[2]
    assert first[2].parent.parent == tmp_path
    # another device's parameters are another cache entry, and without a trainer that is an error
    with pytest.raises(UserInputError, match="learn-programming"):
        obtain_policy(BUILTIN_DEVICES["nandakumar2018-simplified"], 0.4, 50, cache_dir=tmp_path)


def test_bursts_are_clipped_to_the_budget_left():
    """A rule asking for MAX_BURST pulses spends them all, then the budget's rest, never more."""
    policy = rule_policy(NOISELESS, 0.01, MAX_BURST, cells=60)
    result = learned_program(jax.random.key(0), NOISELESS, jnp.full((10,), 11.9), policy, max_pulses=30)
    assert np.all(np.asarray(result.pulses) == 30) and np.all(np.asarray(result.reads) >= 1)


@pytest.mark.parametrize("name", ["joshi2020", "nandakumar2018-simplified"])
def test_every_family_plans_with_its_own_laws_and_keeps_write_verify_precision(name):
    """The planner reads the family's own read noise one tick after programming and its RESET
    distribution (joshi2020's 1/f read noise needs the time since programming), and the policy it
    plans is as precise as write-verify on held-out targets, in fewer verify reads."""
    device = BUILTIN_DEVICES[name]
    grid = make_grid(device, QUICK.cells)
    kernels = transition_kernels(device, grid, 4)
    x = grid.x[grid.g_lo + 5 : grid.g_hi : 7]
    read_std = np.asarray(device.read_std(jnp.asarray(x, jnp.float32), 1.0))
    # the read kernel's spread is the family's read noise at one tick (cells of width grid.step)
    rows = np.asarray(kernels.belief).T[grid.g_lo + 5 : grid.g_hi : 7]
    mean = rows @ grid.x / rows.sum(1)
    spread = np.sqrt(rows @ grid.x**2 / rows.sum(1) - mean**2)
    interior = (x - 3 * read_std > grid.g_lo * grid.step) & (x + 3 * read_std < grid.g_hi * grid.step)
    np.testing.assert_allclose(spread[interior], np.sqrt(read_std[interior] ** 2 + grid.step**2 / 12), rtol=0.1)
    tolerance = 1.0 if name == "joshi2020" else 0.5  # joshi2020's read noise is 0.3–0.8 µS
    policy, _, _ = train_policy(jax.random.key(3), device, tolerance, settings=QUICK)
    target = sample_targets(jax.random.key(4), device, 6000)
    key = jax.random.key(5)
    wv = write_verify(key, device, target, tolerance)
    learned = learned_program(key, device, target, policy)
    within = (np.abs(np.asarray(learned.state.g_prog - target)) <= tolerance).astype(float) - (np.abs(np.asarray(wv.state.g_prog - target)) <= tolerance)
    assert within.mean() > -2 * within.std() / np.sqrt(within.size), within.mean()
    assert np.mean(np.asarray(learned.reads)) < 0.7 * np.mean(np.asarray(wv.reads))
