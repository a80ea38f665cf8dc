"""Programming that knows the network (`core/programming/sensitivity.py`, `network_aware.py`):
sensitivities with a known answer, an allocation that follows them, a budget never exceeded,
the same seed giving the same result, and the row-parallel chip time."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import tiny_recipe

from pcmmeta import build_experiment
from pcmmeta.core.devices import Nandakumar2018
from pcmmeta.core.programming import ProgrammingCost, counts_time, single_shot
from pcmmeta.core.programming.cost import row_parallel_time
from pcmmeta.core.programming.network_aware import (
    NetworkAwareProgramming,
    ProgrammingExpectation,
    admitted,
    lowered_pair,
    plan_network_aware,
    tiers,
    worst_case_s,
)
from pcmmeta.core.programming.sensitivity import conductance_sensitivity
from pcmmeta.core.tasks import sample_compiled

DEAD = 3  # the hidden unit whose output the head ignores


@pytest.fixture(scope="module")
def blind_unit():
    """A tiny sinusoid network without adaptation (`no-adapt`, so the head stays as programmed)
    whose head gives the second hidden layer's unit `DEAD` zero weight (G⁺ = G⁻): that unit's
    incoming conductances cannot change the output (but through the programming noise on that
    pair), every other one can."""
    exp = build_experiment(tiny_recipe(mode="no-adapt"))
    network = exp.network
    out = network.layers["out"].at[:, DEAD].set(4.0)
    network = eqx.tree_at(lambda m: m.layers, network, {**network.layers, "out": out})
    tasks = sample_compiled(exp.validation_family, jax.random.key(1), 6)
    s = jax.jit(lambda n, k, t: conductance_sensitivity(n, k, t, exp.validation_family, exp.meta))(
        network, jax.random.key(2), tasks
    )
    return exp, network, {n: np.asarray(v) for n, v in s.items()}


def test_a_unit_the_head_ignores_has_zero_sensitivity_and_the_others_do_not(blind_unit):
    _, network, s = blind_unit
    assert s["hidden"].shape == network.layers["hidden"].shape
    dead = s["hidden"][:, :, DEAD]
    alive = np.delete(s["hidden"], DEAD, axis=2)
    # zero but for the device noise (programming, drift), which leaves G⁺ − G⁻ of the ignored
    # pair a little off 0 on the chip: three orders of magnitude below the others
    assert float(dead.mean()) < 1e-3 * float(alive.mean())
    assert np.mean(alive > 0) > 0.75 and float(alive.mean()) > 1e-9  # (silent units pass no gradient)
    # the first layer feeds every unit: never zero; the head's own devices matter
    assert np.all(s["out"][:, np.arange(s["out"].shape[1]) != DEAD] > 0)


def test_the_allocation_spends_on_sensitive_devices_and_none_on_the_ignored_unit(blind_unit):
    exp, network, s = blind_unit
    device = exp.meta.device
    names = network.layer_names
    flat = jnp.concatenate([network.layers[n].ravel() for n in names])
    flat_s = jnp.concatenate([jnp.asarray(s[n]).ravel() for n in names])
    cost = ProgrammingCost()
    blind_total = 0.0
    for seed in range(2):  # the blind cost is exact: the same for every key
        total = float(jnp.sum(counts_time(cost, single_shot(jax.random.key(seed), device, flat))))
        assert blind_total in (0.0, pytest.approx(total))
        blind_total = total
    budget = blind_total + 3 * worst_case_s(cost, 100)  # room for a few dozen verifications (~1 µs each)
    method = plan_network_aware(jax.random.key(3), device, flat, flat_s, budget, cost=cost)
    result = method.program(jax.random.key(4), device, flat)
    checked = np.asarray(result.reads) > 0
    time = np.asarray(counts_time(cost, result), np.float64)
    start = {n: 0 for n in names}
    offset = 0
    for n in names:
        start[n] = offset
        offset += network.layers[n].size
    hidden = np.zeros(network.layers["hidden"].shape, bool)
    hidden.ravel()[:] = checked[start["hidden"] : start["hidden"] + hidden.size]
    assert 10 <= checked.sum() < flat.size / 2
    assert not hidden[:, :, DEAD].any()  # nothing spent where the network does not look
    # verified devices are the sensitive ones: their sensitivity is far above the unverified ones'
    assert np.median(np.asarray(flat_s)[checked]) > 10 * np.median(np.asarray(flat_s)[~checked])
    assert time.sum() <= budget


@pytest.mark.parametrize("budget_factor", [1.0, 1.02, 1.3, 3.0])
def test_the_budget_is_never_exceeded_for_any_noise_draw(budget_factor):
    device = Nandakumar2018()
    target = jax.random.uniform(jax.random.key(0), (400,), minval=device.g_min, maxval=9.0)
    sensitivity = jax.random.uniform(jax.random.key(1), (400,))
    cost = ProgrammingCost()
    blind = float(np.sum(np.asarray(counts_time(cost, single_shot(jax.random.key(0), device, target)), np.float64)))
    budget = budget_factor * blind
    method = plan_network_aware(jax.random.key(2), device, target, sensitivity, budget, cost=cost)
    program = jax.jit(lambda k: method.program(k, device, target))
    spent = [float(np.sum(np.asarray(counts_time(cost, program(jax.random.key(k))), np.float64))) for k in range(8)]
    assert max(spent) <= budget
    if budget_factor >= 1.3:
        assert min(spent) > blind  # the budget is used: some devices are verified
    with pytest.raises(ValueError, match="does not cover programming every device blind"):
        plan_network_aware(jax.random.key(2), device, target, sensitivity, 0.9 * blind, cost=cost)


def test_admission_takes_devices_in_order_while_their_worst_case_fits():
    order = jnp.array([2, 0, 1, 3])
    blind = jnp.array([1.0, 1.0, 1.0, 1.0])
    verified = jnp.array([3.0, 2.0, 4.0, 2.0])  # extra 2, 1, 3, 1
    # budget 4 (blind) + 6: device 2 (worst 5 − 1 = 4 ≤ 6, spends 3: left 3), device 0 (4 > 3: no),
    # device 1 (4 > 3: no), device 3 (no): only device 2
    chosen = admitted(order, blind, verified, 10.0, 5.0)
    assert chosen.tolist() == [False, False, True, False]
    assert admitted(order, blind, verified, 20.0, 5.0).tolist() == [True, True, True, True]
    assert not admitted(order, blind, verified, 4.0, 5.0).any()


def test_same_seed_same_result_and_another_seed_another_draw(blind_unit):
    exp, network, s = blind_unit
    device = exp.meta.device
    flat = jnp.concatenate([network.layers[n].ravel() for n in network.layer_names])
    flat_s = jnp.concatenate([jnp.asarray(s[n]).ravel() for n in network.layer_names])
    blind = 1e-3  # generous: half the devices verified or more
    plans = [plan_network_aware(jax.random.key(7), device, flat, flat_s, blind) for _ in range(2)]
    assert np.array_equal(np.asarray(plans[0].order), np.asarray(plans[1].order))
    a, b, c = (plans[0].program(jax.random.key(k), device, flat) for k in (1, 1, 2))
    assert np.array_equal(np.asarray(a.state.g_prog), np.asarray(b.state.g_prog))
    assert not np.array_equal(np.asarray(a.state.g_prog), np.asarray(c.state.g_prog))


def test_lowered_pairs_keep_every_weight_and_put_one_device_at_g_min():
    g = jnp.array([[5.0, 0.1, 3.0, 7.5], [3.0, 2.0, 3.0, 0.4]])
    low = lowered_pair(g, 0.1)
    np.testing.assert_allclose(low[0] - low[1], g[0] - g[1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.minimum(low[0], low[1]), 0.1, atol=1e-6)
    method = NetworkAwareProgramming(jnp.arange(8), jnp.zeros(8, bool), 1.0, lowered=("body",))
    chosen = method.conductances({"body": g, "head": g}, Nandakumar2018())
    np.testing.assert_array_equal(np.asarray(chosen["head"]), np.asarray(g))  # the head keeps its operating point
    np.testing.assert_allclose(np.asarray(chosen["body"]), np.asarray(low))


def test_row_parallel_time_is_the_sum_over_rows_of_the_slowest_device():
    # one layer (2, 2 rows, 3 cols) and one (2, 1 row): 2 + 1 rows
    a = np.arange(12, dtype=float).reshape(2, 2, 3)  # row 0 holds 0-2 (G+) and 6-8 (G-): max 8; row 1: max 11
    b = np.array([[20.0], [1.0]])  # one row: max 20
    flat = np.concatenate([a.ravel(), b.ravel()])
    assert row_parallel_time(flat, [a.shape, b.shape]) == 8 + 11 + 20
    assert row_parallel_time(flat, [a.shape, b.shape]) < flat.sum()
    with pytest.raises(ValueError):
        row_parallel_time(flat[:-1], [a.shape, b.shape])


def test_a_million_devices_at_their_worst_case_never_take_the_total_over_the_budget():
    """float32 sums of a million devices' times drift by many ulps; the admission keeps the
    exact (float64) total within the budget anyway."""
    n = 1_000_000
    for draw in range(3):
        blind = jax.random.uniform(jax.random.key(draw), (n,), minval=1e-7, maxval=3e-7)
        worst = 25e-6
        verified_s = jnp.full((n,), worst)  # every verification as expensive as it can be
        budget = float(np.sum(np.asarray(blind, np.float64))) + 0.37 * n * 1e-6
        order = jax.random.permutation(jax.random.key(10 + draw), n).astype(jnp.int32)
        chosen = np.asarray(admitted(order, blind, verified_s, budget, worst))
        blind64 = np.asarray(blind, np.float64)
        total = blind64.sum() + (np.asarray(verified_s, np.float64) - blind64)[chosen].sum()
        assert total <= budget
        assert chosen.sum() > 0.99 * 0.37 * n * 1e-6 / worst  # and the budget is used, not hoarded


def test_devices_whose_precision_saves_nothing_are_never_verified():
    device = Nandakumar2018()
    target = jnp.full((50,), 5.0)
    sensitivity = jnp.zeros((50,)).at[:10].set(1.0)  # 40 devices the network ignores
    method = plan_network_aware(jax.random.key(0), device, target, sensitivity, 1.0)  # a budget for all
    assert sorted(np.asarray(method.order).tolist()) == list(range(10))
    result = method.program(jax.random.key(1), device, target)
    assert np.all(np.asarray(result.reads)[10:] == 0) and np.all(np.asarray(result.reads)[:10] > 0)


def test_sensitivity_takes_one_task_per_chip_even_where_training_shared_chips():
    exp = build_experiment(tiny_recipe(maml__tasks_per_chip=2))
    tasks = sample_compiled(exp.validation_family, jax.random.key(1), 3)
    s = conductance_sensitivity(exp.network, jax.random.key(2), tasks, exp.validation_family, exp.meta)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in s.values())
    assert float(np.asarray(s["out"]).mean()) > 0


def test_the_plan_chooses_on_validation_tasks_never_on_the_test_tasks_it_is_scored_on(monkeypatch):
    """For the sinusoid every split draws from one distribution: with the same seed the
    validation stream would be the test tasks themselves."""
    from pcmmeta.experiment import programming_comparison as service
    from pcmmeta.experiment.chip import drift_tasks

    exp = build_experiment(tiny_recipe())
    drawn = []
    real = service.held_out_tasks

    def spy(exp, n, seed=None, split="test"):
        tasks, key = real(exp, n, seed, split)
        drawn.append((split, tasks))
        return tasks, key

    monkeypatch.setattr(service, "held_out_tasks", spy)
    service.plan_network_aware_for(exp, exp.network, 1.0)
    ((split, tasks),) = drawn
    assert split == "validation"
    test = drift_tasks(exp, len(tasks.params), 0)  # what `deploy --compare` and drift-eval score on
    assert not np.allclose(np.asarray(tasks.params), np.asarray(test.params))


def test_tiers_spend_the_budget_on_the_best_upgrades_and_go_straight_to_tight_where_loose_pays_little():
    """Worked by hand (times in µs): blind → loose saves ½·s·(9 − 1) for 2 µs, loose → tight
    ½·s·(1 − 0.25) for 3 µs. Device 1 (s = 10) ranks before device 0 (s = 1); device 2 (s = 0)
    is never verified; device 3's loose verification saves almost nothing (8.9 of 9 left), so it
    goes straight to tight: ½·4·(9 − 0.25)/5 = 3.5 per µs, between devices 1 and 0."""
    us = 1e-6
    cost = ProgrammingCost()
    e = lambda *v: jnp.asarray(v, jnp.float32)  # noqa: E731
    expected = ProgrammingExpectation(
        blind_error2=e(9, 9, 9, 9),
        verified_error2=e(0.25, 0.25, 0.25, 0.25),
        blind_s=e(1, 1, 1, 1) * us,
        verified_s=e(6, 6, 6, 6) * us,
        loose_error2=e(1, 1, 1, 8.9),
        loose_s=e(3, 3, 3, 3) * us,
    )
    s = np.array([1.0, 10.0, 0.0, 4.0])
    # rates: device 1 loose 20, device 3 tight 3.5, device 0 loose 2, device 1 tight 1.25, device 0 tight 0.125
    for budget, loose in [
        (2.5, [True, False, True]),  # only device 1's loose upgrade fits; the rest follow as first ranked
        (7.5, [True, False, True]),  # + device 3 straight to tight (5 µs)
        (9.5, [True, False, True]),  # + device 0 loose (2 µs)
        (12.5, [False, False, True]),  # + device 1 tight (3 µs)
        (100.0, [False, False, False]),  # everything tight
    ]:
        order, is_loose = tiers(s, expected, budget * us, cost)
        assert order.tolist() == [1, 3, 0], budget
        assert is_loose.tolist() == loose, budget
    # one tolerance (loose = tight): the old single tier, every planned device tight or loose alike
    same = ProgrammingExpectation(
        *(expected.blind_error2, expected.verified_error2, expected.blind_s, expected.verified_s),
        loose_error2=expected.verified_error2,
        loose_s=expected.verified_s,
    )
    order, _ = tiers(s, same, 1.0, cost)
    assert order.tolist() == [1, 3, 0]


def test_program_verifies_each_device_to_its_tier():
    """With a budget that admits every device, the loosely verified devices take less time and
    land farther from their targets than the tightly verified ones, most within their own
    tolerance (a `program` that ignored or swapped the tiers would fail this)."""
    device = Nandakumar2018()
    n = 600
    target = jnp.linspace(2.0, 8.0, n)
    loose = jnp.arange(n) % 2 == 0
    method = NetworkAwareProgramming(jnp.arange(n), loose, 1.0, tolerance=0.4, loose_tolerance=1.2)
    result = jax.jit(lambda k: method.program(k, device, target))(jax.random.key(4))
    time_s = np.asarray(counts_time(ProgrammingCost(), result))
    error = np.abs(np.asarray(result.state.g_prog - target))
    converged = np.asarray(result.converged)
    is_loose = np.asarray(loose)
    assert np.asarray(result.reads).min() > 0  # every device verified
    assert time_s[is_loose].mean() < 0.8 * time_s[~is_loose].mean()
    assert error[is_loose].mean() > 1.5 * error[~is_loose].mean()
    # a verify read is noisy: most, not all, land within their tier's tolerance
    assert np.mean(error[is_loose & converged] <= 1.2) > 0.8 and np.mean(error[~is_loose & converged] <= 0.4) > 0.6
