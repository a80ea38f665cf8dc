"""Ortner et al.'s on-chip update: stochastically rounded Δw, verified re-programming of the
changed pairs only (`inner.reprogram`, `reprogram-sgd`, `eprop-lsg` with `update: reprogram`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_arm import arm_recipe

from pcmmeta.core.clock import ChipClock
from pcmmeta.core.crossbar import conductances_from_weights, pair_weights
from pcmmeta.core.devices import BUILTIN_DEVICES
from pcmmeta.core.inner import HeadChip
from pcmmeta.core.inner.reprogram import reprogram, stochastic_round
from pcmmeta.core.maml import adapt_chips, program_chips
from pcmmeta.core.modes import PCM, Ideal, Quantized
from pcmmeta.experiment.recipe import validate
from pcmmeta.experiment.train import build_experiment, evaluate, init_state, make_optimizer, make_train_step

JOSHI = BUILTIN_DEVICES["joshi2020"]


def chip(mode, device=JOSHI):
    return HeadChip(device, mode, ChipClock(32.0, 32.0, 32.0, 1), {"w": jnp.asarray(1.0)})


def head(device, w, key=0):
    g = jnp.stack(conductances_from_weights(w, device, 1.0))
    return Quantized().programmed_state(jax.random.key(key), g, device)


def test_stochastic_rounding_is_unbiased_and_on_the_steps():
    dw = jnp.asarray([0.01, -0.03, 0.0625, 0.1, -0.2])
    draws = jax.vmap(lambda k: stochastic_round(k, dw, 1 / 16))(jax.random.split(jax.random.key(0), 40_000))
    steps = np.asarray(draws) * 16
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-5)
    np.testing.assert_allclose(np.asarray(draws).mean(0), np.asarray(dw), atol=3e-3)
    assert set(np.unique(np.round(steps[:, 0]))) == {0.0, 1.0}  # 0.01 rounds to 0 or 1/16, never further


def test_only_changed_pairs_are_reprogrammed_to_the_rounded_weights_in_software():
    w = jnp.linspace(-0.8, 0.8, 64)
    state = head(JOSHI, w)
    g_read = state.g_prog
    dw = jnp.where(jnp.arange(64) % 2 == 0, 0.2, 1e-4)  # even: a certain change; odd: almost surely none
    new, events = reprogram(jax.random.key(1), state, g_read, dw, jnp.asarray(1.0), jnp.asarray(40.0), chip(Quantized(bits=4)), 1 / 16)
    w_new = np.asarray(pair_weights(new.g_prog, JOSHI, 1.0))
    changed = np.asarray(events).astype(bool)
    assert changed[:, ::2].all() and changed[:, 1::2].sum() <= 2
    step = np.asarray(w_new - np.asarray(w))[::2] * 16
    np.testing.assert_allclose(step, np.round(step), atol=1e-4)  # whole 1/16 steps …
    assert set(np.round(step)) <= {3.0, 4.0}  # … of 0.2 · 16 = 3.2
    untouched = ~changed
    for field in ("g_prog", "t_prog", "nu", "n_set"):
        np.testing.assert_array_equal(np.asarray(getattr(new, field))[untouched], np.asarray(getattr(state, field))[untouched])
    assert np.all(np.asarray(new.t_prog)[changed] == 40.0)


def test_on_the_chip_a_reprogrammed_pair_carries_the_family_programming_error():
    w = jnp.full((20_000,), 0.3)
    state = head(JOSHI, w)
    new, _ = reprogram(jax.random.key(2), state, state.g_prog, jnp.full(w.shape, 0.25), jnp.asarray(1.0), jnp.asarray(40.0), chip(PCM()), 1 / 16)
    target = np.asarray(conductances_from_weights(jnp.asarray(0.3 + 0.25), JOSHI, 1.0)[0])  # 4 steps of 1/16 = 0.25: no rounding
    g = np.asarray(new.g_prog[0])
    expected = float(JOSHI.programming_std(jnp.asarray(target)))
    assert abs(g.mean() - target) < 0.03 and g.std() == pytest.approx(expected, rel=0.05)


def test_gradient_is_the_intended_update_straight_through():
    w = jnp.asarray([0.2, -0.3])
    state = head(JOSHI, w)

    def loss(dw):
        new, _ = reprogram(jax.random.key(3), state, state.g_prog, dw, jnp.asarray(1.0), jnp.asarray(40.0), chip(PCM()), 1 / 16)
        return pair_weights(new.g_prog, JOSHI, 1.0).sum()

    # the weight the gradient sees moves with the unrounded Δw, one for one
    np.testing.assert_allclose(np.asarray(jax.grad(loss)(jnp.asarray([0.1, -0.1]))), 1.0, rtol=1e-5)


def tiny_ortner_images(mode="pcm"):
    return validate({
        "name": "tiny-ortner", "seed": 0, "mode": mode, "device": "joshi2020",
        "task": {"family": "images", "ways": 3, "shots": 2, "queries": 3, "glyph_classes": 30, "glyph_drawings": 6},
        "network": {"kind": "cnn", "channels": 4, "blocks": 2},
        "inner": {"rule": "reprogram-sgd", "steps": 2, "lr": 0.5},
        "maml": {"quantized_bits": 4, "quantize_weights": True, "programming_noise": 0.0, "t_read": 32.0, "t_prog": 32.0, "t_wait": 32.0},
        "train": {"iterations": 2, "meta_batch": 4, "chunk_tasks": 2, "warmup": 0, "checkpoint_every": 2, "log_every": 1, "learning_rate": 0.05},
        "eval": {"tasks": 6, "plot_tasks": 1},
    })


@pytest.mark.parametrize("mode", ["pcm", "quantized", "ideal"])
def test_reprogram_sgd_meta_trains_in_every_condition(mode):
    exp = build_experiment(tiny_ortner_images(mode))
    opt = make_optimizer(exp.train)
    state = init_state(exp, opt)
    step = make_train_step(exp, opt, exp.train.meta_batch)
    state, loss, means = step(state, exp.family)
    assert np.isfinite(float(loss))
    changed = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), exp.network.layers, state.network.layers)
    assert max(changed.values()) > 0  # the outer gradient reaches the conductances
    ev = evaluate(exp, state.network, n_tasks=6)
    if mode != "ideal":
        assert ev.pulses_per_task > 0  # devices were re-programmed (counted in pulses)


def test_eprop_update_by_reprogramming_changes_only_rounded_pairs():
    exp = build_experiment(arm_recipe(inner={"rule": "eprop-lsg", "learning_rate": 50.0, "update": "reprogram"}, device="joshi2020"))
    net, family, meta = exp.network, exp.family, exp.meta
    tasks = family.sample(jax.random.key(1), 3)
    chips = program_chips(net, jax.random.key(2), tasks.n_tasks, meta)
    _, out = adapt_chips(net, chips, tasks, family, meta)
    moved = np.asarray(out.state["rec"].t_prog) != np.asarray(chips.head["rec"].t_prog)
    assert moved.any() and not moved.all()
    np.testing.assert_array_equal(moved[:, 0], moved[:, 1])  # both devices of a pair, or neither
    n = moved.shape[-1]
    assert not moved[..., np.arange(n), np.arange(n)].any()  # never a self-connection (Δw is 0 there)
    assert float(out.pulses.sum()) == moved.sum() + (np.asarray(out.state["in"].t_prog) != np.asarray(chips.head["in"].t_prog)).sum()
    assert not isinstance(meta.mode, Ideal)


def test_results_table_conditions_change_one_thing_each():
    import importlib.util
    from pathlib import Path

    from pcmmeta.errors import UserInputError
    from pcmmeta.experiment.recipe import load_recipe

    spec = importlib.util.spec_from_file_location("results_table", Path(__file__).parent.parent / "benchmarks" / "results_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    for name in ("ortner-glyphs-quick", "ortner-arm-quick"):
        base = load_recipe(Path(__file__).parent.parent / "recipes" / f"{name}.yaml")
        assert base["device"] == "joshi2020" and base["mode"] == "pcm" and base["maml"]["quantize_weights"]
        got = {c: table.condition_recipe(base, c) for c in table.CONDITIONS}
        assert [got[c]["mode"] for c in table.CONDITIONS] == ["ideal", "quantized", "pcm", "pcm", "no-adapt"]
        for c, recipe in got.items():
            differs = {k for k in base if k not in ("name", "inner", "mode") and recipe[k] != base[k]}
            assert not differs, (c, differs)
            assert (recipe["inner"] == base["inner"]) == (c != "blind-pulse"), c
        blind = got["blind-pulse"]["inner"]
        assert blind["rule"] == "quantized-sgd" or blind["update"] == "pulses"
    sine = load_recipe(Path(__file__).parent.parent / "recipes" / "sine-quick.yaml")
    got = {c: table.condition_recipe(sine, c) for c in table.CONDITIONS}
    assert [got[c]["mode"] for c in table.CONDITIONS] == ["ideal", "quantized", "pcm", "pcm", "no-adapt"]
    assert got["blind-pulse"]["inner"] == sine["inner"]  # the recipe's own blind pulses
    chip = got["chip"]["inner"]
    assert chip["rule"] == "reprogram-sgd" and (chip["steps"], chip["lr"]) == (sine["inner"]["steps"], sine["inner"]["ideal_lr"])
    ortner = load_recipe(Path(__file__).parent.parent / "recipes" / "ortner-glyphs-quick.yaml")
    tuned = table.condition_recipe(ortner, "blind-pulse", {"inner.lr": 0.7})  # a key of one condition
    assert tuned["inner"]["rule"] == "quantized-sgd" and tuned["inner"]["lr"] == 0.7 != ortner["inner"]["lr"]
    assert table.parse_condition_sets(["blind-pulse:inner.lr=0.3", "chip:inner.steps=2"]) == {"blind-pulse": {"inner.lr": 0.3}, "chip": {"inner.steps": 2}}
    for bad in ("inner.lr=0.3", "blind:inner.lr=0.3", "blind-pulse:inner.lr"):
        with pytest.raises(UserInputError, match="--set"):
            table.parse_condition_sets([bad])
