"""The modes as fair baselines: software modes see no device noise and `ideal` is never frozen
at a range bound; straight-through gradients pass whole at the bounds; b bits are 2^b levels
spanning the range; the arm's update leaves the masked recurrent diagonal alone."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_arm import arm_recipe
from tiny import tiny_recipe

from pcmmeta.core.devices import BUILTIN_DEVICES
from pcmmeta.core.maml import adapt_chips, program_and_read, program_chips
from pcmmeta.core.modes import MODES, Ideal, Quantized
from pcmmeta.experiment.train import build_experiment


def head_with(net, values):
    """The tiny network with the head's G⁺ devices set to `values` (µS), cycling."""
    head = net.layers["out"]
    g_plus = jnp.resize(jnp.asarray(values, jnp.float32), head[0].shape)
    return _replace_head(net, head.at[0].set(g_plus))


def _replace_head(net, head):
    return eqx.tree_at(lambda n: n.layers["out"], net, head)


def programmed_head(net, meta, key=0):
    return program_and_read(net, jax.random.key(key), meta).head["out"].g_prog


@pytest.mark.parametrize("device", ["nandakumar2018", "joshi2020"])
def test_ideal_conductances_are_not_frozen_beyond_the_range(device):
    exp = build_experiment(tiny_recipe(mode="ideal", device=device))
    dev = exp.meta.device
    values = [0.5 * dev.g_max, dev.g_max + 0.5, dev.g_max + 1.0, dev.g_min - 0.5]
    net = head_with(exp.network, values)
    g = np.asarray(programmed_head(net, exp.meta))
    np.testing.assert_array_equal(g[0].ravel()[:4], np.asarray(values, np.float32))  # unclipped, exact
    grad = jax.grad(lambda layers: programmed_head(_replace_head(net, layers), exp.meta).sum())(net.layers["out"])
    np.testing.assert_array_equal(np.asarray(grad), 1.0)  # every conductance keeps its gradient
    assert not exp.meta.mode.clips  # and the training loop does not clip it back


@pytest.mark.parametrize("mode", ["ideal", "quantized"])
def test_software_modes_see_no_programming_noise_on_joshi2020(mode):
    exp = build_experiment(tiny_recipe(mode=mode, device="joshi2020", maml__programming_noise=0.0))
    dev = exp.meta.device
    net = head_with(exp.network, [5.0, 12.5, 20.0])
    first, second = (np.asarray(programmed_head(net, exp.meta, key)) for key in (0, 1))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, np.asarray(exp.meta.mode.program_offline(jax.random.key(0), net.layers["out"], dev, 0.0)))
    # the chip mode keeps aihwkit's programming error
    pcm = build_experiment(tiny_recipe(mode="pcm", device="joshi2020", maml__programming_noise=0.0))
    noisy = np.asarray(programmed_head(net, pcm.meta))
    assert np.abs(noisy - first).mean() > 0.2  # σ_p is 0.26–1.09 µS


@pytest.mark.parametrize(
    "mode, device", [("pcm", "nandakumar2018"), ("no-adapt", "nandakumar2018"), ("quantized", "nandakumar2018"), ("quantized", "joshi2020")]
)
def test_straight_through_gradient_is_whole_at_the_range_bounds(mode, device):
    # (joshi2020 on the chip is left out: its programmed state is aihwkit's reparameterised
    # max(g_min, G_T + σ_p(G_T)·ξ), whose gradient is 1 + σ_p'·ξ, and 0 where a draw clamps)
    exp = build_experiment(tiny_recipe(mode=mode, device=device, maml__programming_noise=0.0))
    dev = exp.meta.device
    net = head_with(exp.network, [dev.g_min, dev.g_max, 0.5 * (dev.g_min + dev.g_max)])
    grad = jax.grad(lambda layers: programmed_head(_replace_head(net, layers), exp.meta).sum())(net.layers["out"])
    np.testing.assert_array_equal(np.asarray(grad)[0].ravel()[:3], 1.0)


def test_device_clip_passes_the_gradient_at_its_bounds_only_inside():
    dev = BUILTIN_DEVICES["nandakumar2018"]
    g = jnp.asarray([dev.g_min - 1.0, dev.g_min, 5.0, dev.g_max, dev.g_max + 1.0])
    np.testing.assert_array_equal(np.asarray(dev.clip(g)), np.clip(np.asarray(g), dev.g_min, dev.g_max))
    np.testing.assert_array_equal(np.asarray(jax.grad(lambda x: dev.clip(x).sum())(g)), [0, 1, 1, 1, 0])


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("device", ["nandakumar2018", "joshi2020"])
def test_quantized_bits_are_levels_spanning_the_range(bits, device):
    dev = BUILTIN_DEVICES[device]
    mode = Quantized(bits=bits, quantize_weights=True)
    g = jnp.linspace(dev.g_min - 1.0, dev.g_max + 1.0, 10_001)
    levels = np.unique(np.asarray(mode.program_offline(jax.random.key(0), g, dev, 0.0)))
    assert len(levels) == 2**bits
    np.testing.assert_allclose(levels, np.linspace(dev.g_min, dev.g_max, 2**bits), rtol=1e-6, atol=1e-5)
    # one SET pulse in this mode is one level step
    assert mode.step_uS(dev) == pytest.approx((dev.g_max - dev.g_min) / (2**bits - 1))


def test_every_mode_says_whether_it_is_on_the_chip():
    assert {name for name, m in MODES.items() if m.on_chip} == {"pcm", "no-adapt"}
    assert not Ideal.on_chip


def test_arm_update_pulses_no_device_on_the_masked_recurrent_diagonal():
    # an untrained generator's signals are small: a large η so that the update pulses at all
    exp = build_experiment(arm_recipe(inner={"rule": "eprop-lsg", "learning_rate": 50.0}))
    net, family, meta = exp.network, exp.family, exp.meta
    tasks = family.sample(jax.random.key(1), 4)
    chips = program_chips(net, jax.random.key(2), tasks.n_tasks, meta)
    _, out = eqx.filter_jit(adapt_chips)(net, chips, tasks, family, meta)
    before, after = np.asarray(chips.head["rec"].n_set), np.asarray(out.state["rec"].n_set)
    pulses = after - before  # (tasks, 2, n, n)
    n = pulses.shape[-1]
    assert pulses.sum() > 0  # the update pulses the recurrent layer …
    assert pulses[..., np.arange(n), np.arange(n)].sum() == 0  # … but never a self-connection
    counted = sum((np.asarray(out.state[name].n_set) - np.asarray(chips.head[name].n_set)).sum(axis=(1, 2, 3)) for name in net.head)
    np.testing.assert_array_equal(np.asarray(out.pulses), counted)
