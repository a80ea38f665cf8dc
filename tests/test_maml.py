import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import tiny_recipe

from pcmmeta.device import DeviceState
from pcmmeta.maml import ReadoutLoss, batch_chips, batch_results, inner_update
from pcmmeta.train import build_experiment, init_state, make_optimizer


def setup(mode="pcm", **kw):
    exp = build_experiment(tiny_recipe(mode=mode, **kw))
    params = init_state(exp, make_optimizer(exp.recipe)).params
    tasks = exp.family.sample(jax.random.key(1), 6)
    return exp, params, tasks


def test_inner_update_pulses_exactly_the_selected_devices():
    exp, params, tasks = setup(maml__programming_noise=0.0)
    cfg = exp.config
    chips, z, out = batch_chips(params, jax.random.key(2), tasks, exp.family, cfg)
    for i in range(6):
        chip = jax.tree.map(lambda a: a[i], chips)
        support = ReadoutLoss(z[:, i, 0], tasks.y_support[i])
        k_before, k_inner, _ = jax.random.split(chip.key, 3)
        # the rule, by hand: read at t_read with the inner step's key, gradient, threshold
        k_read, _, _ = jax.random.split(k_inner, 3)
        g = np.asarray(cfg.device.read(k_read, chip.out, cfg.t_read))
        w = cfg.scale_out * (g[0] - g[1]) / (cfg.device.g_max - cfg.device.g_min)
        zz, y = np.asarray(support.z, np.float64), np.asarray(support.y, np.float64)
        grad = 2 * np.einsum("ts,tsh->h", zz @ w - y, zz) / (zz.shape[0] * zz.shape[1])
        expect = np.stack([grad < -cfg.pulse_threshold, grad > cfg.pulse_threshold])
        new, pulses = inner_update(k_inner, chip.out, support, cfg)
        changed = np.asarray(new.n_set) != np.asarray(chip.out.n_set)
        np.testing.assert_array_equal(changed, expect)
        np.testing.assert_array_equal(np.asarray(pulses), expect.astype(float))
        assert np.all(np.asarray(new.n_set)[changed] == np.asarray(chip.out.n_set)[changed] + 1)
        for field in ("g_prog", "t_prog", "nu"):
            np.testing.assert_array_equal(np.asarray(getattr(new, field))[~changed], np.asarray(getattr(chip.out, field))[~changed])
        assert np.all(np.asarray(new.t_prog)[changed] == cfg.t_prog)
        assert float(out.pulses[i]) == expect.sum()


def test_inner_update_touches_only_the_output_layer():
    exp, params, tasks = setup()
    adapt = batch_chips(params, jax.random.key(3), tasks, exp.family, exp.config)
    frozen = batch_chips(params, jax.random.key(3), tasks, exp.family, build_experiment(tiny_recipe(mode="no-adapt")).config)
    np.testing.assert_array_equal(np.asarray(adapt[0].w_in), np.asarray(frozen[0].w_in))
    np.testing.assert_array_equal(np.asarray(adapt[0].w_hidden), np.asarray(frozen[0].w_hidden))
    assert float(adapt[2].pulses.sum()) > 0 and float(frozen[2].pulses.sum()) == 0


def test_ideal_inner_step_is_one_sgd_step():
    exp, params, tasks = setup(mode="ideal")
    chips, z, out = batch_chips(params, jax.random.key(4), tasks, exp.family, exp.config)
    lr = exp.config.ideal_lr
    for i in range(6):
        zz, y = np.asarray(z[:, i, 0], np.float64), np.asarray(tasks.y_support[i], np.float64)
        w = np.asarray(out.before[i], np.float64)
        grad = 2 * np.mean((zz @ w - y)[..., None] * zz, axis=(0, 1))
        np.testing.assert_allclose(np.asarray(out.after[i]), w - lr * grad, rtol=1e-5, atol=1e-6)
    # ideal mode has no device noise: the same weights whatever the key
    again = batch_chips(params, jax.random.key(99), tasks, exp.family, exp.config)
    np.testing.assert_array_equal(np.asarray(again[2].before), np.asarray(out.before))


def test_quantized_pulse_is_a_fixed_step():
    exp, params, tasks = setup(mode="quantized")
    chips, z, out = batch_chips(params, jax.random.key(5), tasks, exp.family, exp.config)
    step_w = exp.config.scale_out * (exp.config.device.g_max / 4) / (exp.config.device.g_max - exp.config.device.g_min)
    dw = np.abs(np.asarray(out.after - out.before))
    moved = dw > 1e-6
    assert moved.any()
    # unclipped moves are exactly one step (a pulse on G⁺ or G⁻ of one pair)
    assert np.mean(np.isclose(dw[moved], step_w, rtol=1e-4)) > 0.5
    assert np.all(dw <= step_w * (1 + 1e-4))


def test_results_have_per_task_noise():
    exp, params, tasks = setup()
    same = jax.tree.map(lambda a: jnp.broadcast_to(a[:1], a.shape), tasks)
    r = batch_results(params, jax.random.key(6), same, exp.family, exp.config)
    assert len(set(np.round(np.asarray(r.loss_before), 6))) > 1  # identical tasks, different chips
