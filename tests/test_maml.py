"""The generic bi-level pipeline on the LIF/sinusoid plug-ins: what each inner rule and mode does."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import tiny_recipe

from pcmmeta.core.devices import DeviceState
from pcmmeta.core.inner import HeadChip, QuantizedSGD
from pcmmeta.core.maml import adapt_chips, adapt_shared_chips, batch_results, program_chips
from pcmmeta.core.modes import PCM, Quantized
from pcmmeta.experiment.train import build_experiment


def setup(mode="pcm", **kw):
    exp = build_experiment(tiny_recipe(mode=mode, **kw))
    tasks = exp.family.sample(jax.random.key(1), 6)
    return exp, exp.network, tasks


def run(exp, net, tasks, key=2, meta=None):
    meta = meta or exp.meta
    chips = program_chips(net, jax.random.key(key), tasks.n_tasks, meta)
    features, adaptations = adapt_chips(net, chips, tasks, exp.family, meta)
    return chips, features, adaptations


def support_features(exp, net, chips, tasks):
    x = exp.family.encode(tasks.x_support)
    return jax.vmap(lambda b, xs: net.features({n: w[0] for n, w in b.items()}, xs))(chips.body, x)


def test_blind_pulse_pulses_exactly_the_selected_devices():
    exp, net, tasks = setup(maml__programming_noise=0.0)
    meta = exp.meta
    chips, _, out = run(exp, net, tasks)
    z = support_features(exp, net, chips, tasks)
    dev, thr = meta.device, meta.rule.pulse_threshold
    for i in range(tasks.n_tasks):
        head = chips.head["out"]
        state = jax.tree.map(lambda a: a[i], head)
        # the rule, by hand: the inner step's read (keys as documented), closed-form MSE gradient
        _, k_inner, _ = jax.random.split(chips.key[i], 3)
        k_read, _, _ = jax.random.split(k_inner, 3)
        g = np.asarray(dev.read(k_read, state, meta.clock.t_read))
        w = net.scales["out"] * (g[0] - g[1]) / (dev.g_max - dev.g_min)
        zz, y = np.asarray(z[i], np.float64), np.asarray(tasks.y_support[i], np.float64)
        grad = 2 * np.einsum("ts,tsh->h", zz @ w - y, zz) / (zz.shape[0] * zz.shape[1])
        expect = np.stack([grad < -thr, grad > thr])
        new = jax.tree.map(lambda a: a[i], out.state["out"])
        changed = np.asarray(new.n_set) != np.asarray(state.n_set)
        np.testing.assert_array_equal(changed, expect)
        assert np.all(np.asarray(new.n_set)[changed] == np.asarray(state.n_set)[changed] + 1)
        for field in ("g_prog", "t_prog", "nu"):
            np.testing.assert_array_equal(np.asarray(getattr(new, field))[~changed], np.asarray(getattr(state, field))[~changed])
        assert np.all(np.asarray(new.t_prog)[changed] == float(meta.clock.t_prog))
        assert float(out.pulses[i]) == expect.sum()


def test_inner_update_touches_only_the_head():
    exp, net, tasks = setup()
    chips, _, out = run(exp, net, tasks, key=3)
    frozen_exp = build_experiment(tiny_recipe(mode="no-adapt"))
    chips_f, _, out_f = run(frozen_exp, net, tasks, key=3)
    for name in net.body:
        np.testing.assert_array_equal(np.asarray(chips.body[name]), np.asarray(chips_f.body[name]))
    assert float(out.pulses.sum()) > 0 and float(out_f.pulses.sum()) == 0
    np.testing.assert_array_equal(np.asarray(out_f.state["out"].g_prog), np.asarray(chips_f.head["out"].g_prog))


@pytest.mark.parametrize("steps", [1, 3])
def test_ideal_inner_steps_are_sgd_steps(steps):
    exp, net, tasks = setup(mode="ideal", inner__steps=steps)
    chips, _, out = run(exp, net, tasks, key=4)
    z = support_features(exp, net, chips, tasks)
    lr = exp.meta.rule.ideal_lr
    assert len(out.weights) == steps + 1
    for i in range(tasks.n_tasks):
        zz, y = np.asarray(z[i], np.float64), np.asarray(tasks.y_support[i], np.float64)
        w = np.asarray(out.weights[0]["out"][i], np.float64)
        for s in range(steps):
            w = w - lr * 2 * np.mean((zz @ w - y)[..., None] * zz, axis=(0, 1))
            np.testing.assert_allclose(np.asarray(out.weights[s + 1]["out"][i]), w, rtol=1e-4, atol=1e-5)
    # ideal mode has no device noise: the same weights whatever the key
    _, _, again = run(exp, net, tasks, key=99)
    np.testing.assert_array_equal(np.asarray(again.weights[0]["out"]), np.asarray(out.weights[0]["out"]))


def test_quantized_pulse_is_a_fixed_step():
    exp, net, tasks = setup(mode="quantized")
    _, _, out = run(exp, net, tasks, key=5)
    step_w = net.scales["out"] / 3  # 2 bits: 4 levels spanning the range, 3 steps
    dw = np.abs(np.asarray(out.weights[-1]["out"] - out.weights[0]["out"]))
    moved = dw > 1e-6
    assert moved.any()
    assert np.mean(np.isclose(dw[moved], step_w, rtol=1e-4)) > 0.5  # unclipped moves are one step
    assert np.all(dw <= step_w * (1 + 1e-4))


def test_quantized_weights_sit_on_the_grid():
    exp, net, tasks = setup(mode="quantized", maml__quantized_bits=4, maml__quantize_weights=True)
    dev = exp.meta.device
    g = exp.meta.mode.program_offline(jax.random.key(0), net.layers["hidden"], dev, 0.0)
    levels = (np.asarray(g) - dev.g_min) / ((dev.g_max - dev.g_min) / 15)  # 16 levels, g_min … g_max
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)


def test_results_have_per_task_noise():
    exp, net, tasks = setup()
    same = jax.tree.map(lambda a: jnp.broadcast_to(a[:1], a.shape), tasks)
    r = batch_results(net, jax.random.key(6), same, exp.family, exp.meta)
    assert len(set(np.round(np.asarray(r.loss_before), 6))) > 1  # identical tasks, different chips


def _head_chip(mode, device, steps=1):
    from pcmmeta.core.clock import ChipClock

    return HeadChip(device, mode, ChipClock(100.0, 101.0, 50.0, steps), {"w": jnp.asarray(1.0)})


def test_quantized_sgd_rounds_each_step_to_whole_pulses():
    """Quantized mode: a wanted Δg becomes round(|Δg|/step) pulses of exactly `step` on G⁺ or G⁻."""
    exp, _, _ = setup()
    dev = exp.meta.device
    mode = Quantized(bits=4)
    step = mode.step_uS(dev)  # µS per pulse
    span = dev.g_max - dev.g_min
    rule = QuantizedSGD(steps=1, lr=1.0, max_pulses=15)
    g0 = jnp.full((2, 6), 3.0)
    state = DeviceState(g0, jnp.zeros((2, 6)), jnp.zeros((2, 6)), jnp.zeros((2, 6), jnp.int32))
    # wanted weight changes, in pulses: +2.4 → 2 on G⁺, −1.6 → 2 on G⁻, +0.4 → 0, −3.5 → 4 on G⁻, 20 → 15 (cap)
    want_pulses = jnp.array([2.4, -1.6, 0.4, -3.5, 20.0, 0.0])
    grad = -want_pulses * step / span  # lr 1, scale 1: Δw = −grad, Δg = Δw·span
    new, counts = rule.pulse(jax.random.key(0), state, g0, grad, jnp.asarray(1.0), jnp.asarray(101.0), _head_chip(mode, dev))
    np.testing.assert_array_equal(np.asarray(counts), [[2, 0, 0, 0, 15, 0], [0, 2, 0, 4, 0, 0]])
    expect = np.minimum(3.0 + np.asarray(counts) * step, dev.g_max)  # a device saturates at g_max
    np.testing.assert_allclose(np.asarray(new.g_prog), expect, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(new.n_set), np.asarray(counts))


def test_quantized_sgd_on_pcm_applies_stochastic_pulses_and_passes_gradient_straight_through():
    exp, _, _ = setup()
    dev = exp.meta.device
    rule = QuantizedSGD(steps=1, lr=1.0, max_pulses=15)
    chip = _head_chip(PCM(), dev)
    g0 = jnp.full((2, 500), 2.0)
    state = DeviceState(g0, jnp.zeros((2, 500)), jnp.full((2, 500), 0.04), jnp.full((2, 500), 3, jnp.int32))
    step = float(dev.set_increment_mean(jnp.asarray(2.0), 4))
    grad = jnp.full((500,), -3.0 * step / (dev.g_max - dev.g_min))  # 3 pulses on G⁺ each
    new, counts = rule.pulse(jax.random.key(1), state, g0, grad, jnp.asarray(1.0), jnp.asarray(101.0), chip)
    assert np.all(np.asarray(counts[0]) == 3) and np.all(np.asarray(counts[1]) == 0)
    moved = np.asarray(new.g_prog[0] - g0[0])
    assert moved.std() > 0.1  # stochastic increments
    assert np.all(np.asarray(new.g_prog[1]) == 2.0)  # G⁻ untouched

    def total(gr):
        s, _ = rule.pulse(jax.random.key(1), state, g0, gr, jnp.asarray(1.0), jnp.asarray(101.0), chip)
        return s.g_prog.sum()

    d = jax.grad(total)(grad)
    # straight-through: d(Σ g)/d(grad) = −lr·span/scale on G⁺ where Δg > 0
    np.testing.assert_allclose(np.asarray(d), -(dev.g_max - dev.g_min), rtol=1e-5)


def test_tasks_sharing_a_chip_share_its_programming_and_body_reads():
    """maml.tasks_per_chip = 3: six identical tasks on two chips. Tasks on one chip see the same
    programmed chip and the same read of the body (equal query features), each with its own head
    reads and pulses; tasks on different chips differ."""
    exp, net, tasks = setup(maml__programming_noise=0.5)
    same = jax.tree.map(lambda a: jnp.broadcast_to(a[:1], a.shape), tasks)
    chips = program_chips(net, jax.random.key(6), 2, exp.meta)
    f_q, adapt = adapt_shared_chips(net, chips, same, exp.family, exp.meta, 3)
    f_q = np.asarray(f_q)
    assert f_q.shape[0] == 6
    np.testing.assert_array_equal(f_q[0], f_q[1])
    np.testing.assert_array_equal(f_q[3], f_q[5])
    assert not np.array_equal(f_q[0], f_q[3])
    # each task's head read before adaptation is its own (per-task keys), of the chip's head
    before = np.asarray(adapt.weights[0]["out"])
    assert not np.array_equal(before[0], before[1])
    # … of chip 0's programmed head: each read is the drifted conductances plus read noise only
    dev, span, scale = exp.meta.device, exp.meta.device.g_max - exp.meta.device.g_min, net.scales["out"]
    g = np.asarray(dev.drifted(jax.tree.map(lambda a: a[0], chips.head["out"]), exp.meta.clock.t_read))
    w_drifted = scale * (g[0] - g[1]) / span
    sigma_w = scale * np.hypot(np.asarray(dev.read_std(g[0])), np.asarray(dev.read_std(g[1]))) / span
    assert np.all(np.abs(before[:3] - w_drifted) < 5 * sigma_w)
    assert np.abs(before[3:] - w_drifted).max() > 5 * sigma_w.max()  # chip 1 is another chip
    r1 = batch_results(net, jax.random.key(6), same, exp.family, exp.meta, tasks_per_chip=1)
    assert len(set(np.round(np.asarray(r1.loss_before), 6))) == 6  # a chip per task: all differ


def test_grouped_tasks_keep_their_order_and_their_own_data():
    """Without any noise (ideal mode: exact programming and reads) every chip is the same, so
    grouping tasks on chips must not change any task's result: six different tasks give the
    same per-task losses and metrics with 1, 2, 3 or 6 tasks per chip."""
    exp, net, tasks = setup(mode="ideal", maml__programming_noise=0.0)
    assert len(set(np.round(np.asarray(tasks.y_query[:, 0]), 5))) == 6  # the tasks differ
    ref = batch_results(net, jax.random.key(6), tasks, exp.family, exp.meta, tasks_per_chip=1)
    for per_chip in (2, 3, 6):
        r = batch_results(net, jax.random.key(6), tasks, exp.family, exp.meta, tasks_per_chip=per_chip)
        np.testing.assert_allclose(np.asarray(r.loss_before), np.asarray(ref.loss_before), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(r.loss_after), np.asarray(ref.loss_after), rtol=1e-5, atol=1e-6)
        for name in ref.metrics:
            np.testing.assert_allclose(np.asarray(r.metrics[name]), np.asarray(ref.metrics[name]), rtol=1e-5, atol=1e-6)

