"""`planned-pulse`: the greedy plan, and the rule on the LIF/sinusoid pipeline."""

import itertools
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import tiny_recipe

from pcmmeta.core.inner.planned_pulse import plan_pulses
from pcmmeta.core.maml import adapt_chips, outer_loss, program_chips
from pcmmeta.experiment.train import build_experiment


def objective(choice, g, h, up, down, var_up, var_down):
    d = np.where(choice > 0, up, np.where(choice < 0, -down, 0.0))
    var = np.where(choice > 0, var_up, np.where(choice < 0, var_down, 0.0))
    return g @ d + 0.5 * d @ h @ d + 0.5 * np.sum(np.diagonal(h) * var)


def problem(seed, n=6, spread=0.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3 * n, n))
    h = a.T @ a / (3 * n)  # positive definite, with off-diagonal coupling
    g = rng.normal(size=n)
    up, down = rng.uniform(0.2, 1.0, n), rng.uniform(0.2, 1.0, n)
    var_up, var_down = spread * up**2, spread * down**2
    return g, h, up, down, var_up, var_down


def plan(g, h, up, down, var_up, var_down, moves=100):
    f = lambda *a: np.asarray(plan_pulses(*(jnp.asarray(x, jnp.float32) for x in a), moves), np.float64)
    return f(g, h, up, down, var_up, var_down)


@pytest.mark.parametrize("seed", range(5))
def test_plan_is_a_local_minimum_and_never_worse_than_no_pulse(seed):
    args = problem(seed, spread=0.3 * (seed % 2))
    choice = plan(*args)
    best = objective(choice, *args)
    assert best <= 0.0
    for i, c in itertools.product(range(len(choice)), (-1.0, 0.0, 1.0)):
        other = choice.copy()
        other[i] = c
        assert objective(other, *args) >= best - 1e-5


@pytest.mark.parametrize("seed", range(3))
def test_plan_is_the_exact_optimum_when_weights_do_not_interact(seed):
    g, h, up, down, var_up, var_down = problem(seed, n=5, spread=0.2)
    h = np.diag(np.diagonal(h))
    choice = plan(g, h, up, down, var_up, var_down)
    brute = min(objective(np.array(c, float), g, h, up, down, var_up, var_down) for c in itertools.product((-1, 0, 1), repeat=5))
    np.testing.assert_allclose(objective(choice, g, h, up, down, var_up, var_down), brute, rtol=1e-5, atol=1e-6)


def test_plan_beats_pulsing_every_gradient_sign_when_weights_interact():
    wins = 0
    for seed in range(10):
        args = problem(seed, n=8)
        g = args[0]
        every = -np.sign(g)  # blind-pulse with threshold 0: every weight against its gradient
        wins += objective(plan(*args), *args) < objective(every, *args) - 1e-6
    assert wins >= 8


def test_no_pulse_when_the_pulses_are_too_noisy_to_help():
    g, h, up, down, _, _ = problem(0)
    choice = plan(g, h, up, down, 1e6 * np.ones_like(up), 1e6 * np.ones_like(down))
    assert np.all(choice == 0.0)


def test_a_move_budget_limits_the_pulses():
    args = problem(1, n=8)
    assert np.count_nonzero(plan(*args, moves=2)) <= 2


def planned(mode):
    """A tiny planned-pulse experiment adapted on 6 tasks: (experiment, tasks, support features
    (tasks, time, samples, hidden), the head's adaptation)."""
    exp = build_experiment(tiny_recipe(mode=mode, inner={"rule": "planned-pulse"}, maml__programming_noise=0.0))
    tasks = exp.family.sample(jax.random.key(1), 6)
    net, meta = exp.network, exp.meta
    chips = program_chips(net, jax.random.key(2), tasks.n_tasks, meta)
    x = exp.family.encode(tasks.x_support)
    z = jax.vmap(lambda b, xs: net.features({n: w[0] for n, w in b.items()}, xs))(chips.body, x)
    _, adapted = adapt_chips(net, chips, tasks, exp.family, meta)
    return exp, tasks, z, adapted


def test_quantized_mode_pulses_are_whole_steps_and_no_single_change_would_help():
    """Deterministic pulses (quantized mode, no noise, no drift; the LIF readout's support loss is
    exactly quadratic): every weight moved by 0 or one whole step ((g_max − g_min)/3 µS: 2 bits, 4 levels; capped at g_max),
    and the plan is a local minimum of the true support loss — no weight's other choice lowers it
    (a per-weight threshold rule would not pass this)."""
    exp, tasks, z, adapted = planned("quantized")
    dev, scale = exp.meta.device, exp.network.scales["out"]
    g0 = np.asarray(adapted.weights[0]["out"])  # only for the shape
    assert float(adapted.pulses.sum()) > 0
    programmed = np.asarray(exp.network.layers["out"], np.float64)  # no noise: what the chip holds
    to_weight = float(scale) / (dev.g_max - dev.g_min)
    step = np.minimum((dev.g_max - dev.g_min) / 3, dev.g_max - programmed) * to_weight  # [G⁺, G⁻]
    for i in range(tasks.n_tasks):
        w0, w1 = (np.asarray(w["out"][i], np.float64) for w in adapted.weights)
        d = w1 - w0
        for k in range(g0.shape[-1]):
            assert min(abs(d[k]), abs(d[k] - step[0, k]), abs(d[k] + step[1, k])) < 1e-5, (i, k, d[k])
        zz = np.asarray(z[i], np.float64).reshape(-1, w0.size)
        y = np.repeat(np.asarray(tasks.y_support[i], np.float64)[None], z.shape[1], 0).reshape(-1)
        loss = lambda w: np.mean((zz @ w - y) ** 2)
        assert loss(w1) < loss(w0)
        for k in range(w0.size):
            for option in (0.0, step[0, k], -step[1, k]):
                other = w1.copy()
                other[k] = w0[k] + option
                assert loss(other) >= loss(w1) * (1 - 1e-5), (i, k, option)


def pulse_setup(shape, seed=0):
    """A PlannedPulse, a pcm HeadChip and a layer state of `shape` (pairs on axis 0)."""
    from pcmmeta.core.clock import ChipClock
    from pcmmeta.core.inner import HeadChip
    from pcmmeta.core.inner.planned_pulse import Curvature, PlannedPulse
    from pcmmeta.core.modes import PCM
    from pcmmeta.io.device_file import load_device

    dev = load_device("nandakumar2018")
    chip = HeadChip(dev, PCM(), ChipClock(100.0, 101.0, 50.0), {"out": jnp.ones(())})
    g = jax.random.uniform(jax.random.key(seed), (2, *shape), minval=0.5, maxval=6.0)
    state = dev.programmed_state(jax.random.key(seed + 1), g)
    n = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3 * n, n))
    curvature = Curvature(jnp.asarray(rng.normal(size=shape), jnp.float32), jnp.asarray(a.T @ a / (3 * n), jnp.float32))
    return PlannedPulse(), chip, state, curvature


@pytest.mark.parametrize("shape", [(6,), (3, 2)])
def test_pulse_follows_the_plan_on_flat_and_matrix_heads(shape):
    """`pulse` pulses exactly the devices `plan_pulses` chooses on the flattened layer, for a
    vector head (LIF readout) and a matrix head (CNN, features × classes)."""
    rule, chip, state, curv = pulse_setup(shape)
    dev = chip.device
    g = state.g_prog  # read without noise: what the plan sees
    to_weight = 1.0 / (dev.g_max - dev.g_min)
    step = jnp.minimum(dev.set_increment_mean(g, state.n_set + 1), dev.g_max - g) * to_weight
    std = dev.set_increment_std(g, state.n_set + 1) * to_weight
    flat = lambda a: a.reshape(-1)
    expect = plan_pulses(flat(curv.grad), curv.hessian, flat(step[0]), flat(step[1]), flat(std[0] ** 2), flat(std[1] ** 2), 3 * flat(g[0]).size)
    new, mask = rule.pulse(jax.random.key(5), state, g, curv, jnp.ones(()), jnp.asarray(101.0), chip)
    np.testing.assert_array_equal(np.asarray(mask[0]).reshape(-1), np.asarray(expect > 0))
    np.testing.assert_array_equal(np.asarray(mask[1]).reshape(-1), np.asarray(expect < 0))
    assert np.asarray(mask).sum() > 0
    np.testing.assert_array_equal(np.asarray(new.n_set - state.n_set), np.asarray(mask, np.int32))


def test_the_pulse_outcome_carries_the_gradient_of_the_devices_increment():
    """d(new G)/d(old G) is 1 where no pulse was given and 1 + ∂(increment)/∂G where one was
    (the SET increment's mean falls with G): the outer loop sees what the chosen pulses do."""
    rule, chip, state, curv = pulse_setup((8,), seed=3)
    _, mask = rule.pulse(jax.random.key(5), state, state.g_prog, curv, jnp.ones(()), jnp.asarray(101.0), chip)

    def new_g(g_prog):
        s = type(state)(g_prog, state.t_prog, state.nu, state.n_set)
        return rule.pulse(jax.random.key(5), s, state.g_prog, curv, jnp.ones(()), jnp.asarray(101.0), chip)[0].g_prog.sum()

    slope = np.asarray(jax.grad(new_g)(state.g_prog))
    pulsed = np.asarray(mask) > 0.5
    assert pulsed.any() and (~pulsed).any()
    np.testing.assert_allclose(slope[~pulsed], 1.0, rtol=1e-6)
    assert np.all(np.abs(slope[pulsed] - 1.0) > 1e-3)


def test_a_head_too_large_to_plan_is_refused_in_one_line():
    from pcmmeta.core.inner.planned_pulse import MAX_PLANNED_WEIGHTS, PlannedPulse
    from pcmmeta.errors import UserInputError

    PlannedPulse().check_head({"rec": (MAX_PLANNED_WEIGHTS,)})  # the largest that fits
    with pytest.raises(UserInputError, match="head layer 'rec' has 4,097 weights"):
        PlannedPulse().check_head({"rec": (MAX_PLANNED_WEIGHTS + 1,)})


def test_outer_gradient_reaches_every_layer_through_the_planned_pulses():
    exp = build_experiment(tiny_recipe(inner={"rule": "planned-pulse"}))
    tasks = exp.family.sample(jax.random.key(1), 6)
    net = exp.network
    grads = eqx.filter_grad(lambda n: outer_loss(n, jax.random.key(3), tasks, exp.family, exp.meta)[0])(net)
    for name in net.layer_names:
        g = np.asarray(grads.layers[name])
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 0, name


def test_the_chain_runs_with_planned_pulses(tmp_path):
    """meta-train → deploy → adapt → drift-eval with `inner.rule: planned-pulse`: the rule's
    pulses reach the deployed array's head only, one per device at most per round."""
    import yaml
    from typer.testing import CliRunner

    from pcmmeta.cli.app import app
    from pcmmeta.experiment.chip import load_array
    from pcmmeta.experiment.train import load_run

    invoke = lambda *a: CliRunner().invoke(app, [str(x) for x in a])
    recipe = tiny_recipe(inner={"rule": "planned-pulse"}, train__iterations=3, eval__tasks=5, eval__plot_tasks=0)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    runs = tmp_path / "runs"
    assert invoke("meta-train", tmp_path / "tiny.yaml", "--runs-dir", runs).exit_code == 0
    assert invoke("deploy", "--runs-dir", runs).exit_code == 0
    result = invoke("adapt", "--runs-dir", runs, "--steps", 2, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    run_dir = runs / (runs / "LATEST").read_text().strip()
    _, state = load_run(run_dir)
    before = load_array(run_dir / "deployed.eqx", state.network)
    after = load_array(run_dir / report["adapted_array"].split("/")[-1], state.network)
    dn = np.asarray(after.layers["out"].n_set) - np.asarray(before.layers["out"].n_set)
    assert dn.min() >= 0 and dn.max() <= 2 and int(dn.sum()) == report["total_pulses"] > 0
    for layer in ("in", "hidden"):
        np.testing.assert_array_equal(np.asarray(after.layers[layer].g_prog), np.asarray(before.layers[layer].g_prog))
    drift = invoke("drift-eval", "--runs-dir", runs, "--hours", "1,24", "--tasks", 5, "--json")
    assert drift.exit_code == 0, drift.output
    rows = json.loads(drift.stdout)["results"]
    assert {r["condition"] for r in rows} >= {"deployed", "adapted"} and all(np.isfinite(r["mse"]) for r in rows)


def test_ideal_mode_is_plain_sgd_with_the_rules_step():
    exp, tasks, z, adapted = planned("ideal")
    w0, w1 = (np.asarray(w["out"], np.float64) for w in adapted.weights)
    zz, y = np.asarray(z, np.float64), np.asarray(tasks.y_support, np.float64)
    err = np.einsum("itsh,ih->its", zz, w0) - y[:, None, :]
    grad = 2 * np.einsum("its,itsh->ih", err, zz) / (zz.shape[1] * zz.shape[2])
    np.testing.assert_allclose(w1, w0 - exp.meta.rule.ideal_lr * grad, rtol=1e-4, atol=1e-6)
