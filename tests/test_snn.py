import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pcmmeta.core.snn import LIFConfig, readout_traces, readout_traces_autodiff, spike

BETA = 10.0


def test_spike_is_heaviside_forward():
    v = jnp.array([-1.0, -1e-6, 0.0, 1e-6, 2.0])
    np.testing.assert_array_equal(np.asarray(spike(v, BETA)), [0, 0, 0, 1, 1])


def test_first_derivative_is_the_closed_form():
    v = jnp.linspace(-2, 2, 41)
    grad = jax.vmap(jax.grad(lambda x: spike(x, BETA)))(v)
    np.testing.assert_allclose(np.asarray(grad), 1.0 / (BETA * np.abs(np.asarray(v)) + 1.0) ** 2, rtol=1e-6)


def test_second_derivative_matches_finite_differences_of_the_closed_form():
    v = jnp.array([-1.3, -0.4, -0.05, 0.07, 0.3, 1.1])
    second = jax.vmap(jax.grad(jax.grad(lambda x: spike(x, BETA))))(v)
    h = 1e-3
    v64 = np.asarray(v, np.float64)
    closed = lambda x: 1.0 / (BETA * np.abs(x) + 1.0) ** 2
    fd = (closed(v64 + h) - closed(v64 - h)) / (2 * h)
    np.testing.assert_allclose(np.asarray(second), fd, rtol=1e-3)
    assert np.all(np.asarray(second)[v64 < 0] > 0) and np.all(np.asarray(second)[v64 > 0] < 0)


def test_hand_written_bptt_equals_autodiff():
    cfg = LIFConfig(time_steps=40)
    w_in = jax.random.normal(jax.random.key(0), (2, 16)) * 3
    w_h = jax.random.normal(jax.random.key(1), (16, 12)) * 0.5
    x = jax.random.uniform(jax.random.key(2), (7, 2), minval=-1, maxval=1)
    target = jax.random.normal(jax.random.key(3), (40, 7, 12))

    def loss(fn, a, b):
        return jnp.sum(jnp.sin(fn(cfg, a, b, x)) * target)

    fast, ref = (jax.value_and_grad(lambda a, b: loss(f, a, b), argnums=(0, 1)) for f in (readout_traces, readout_traces_autodiff))
    (v_fast, g_fast), (v_ref, g_ref) = fast(w_in, w_h), ref(w_in, w_h)
    assert float(v_fast) == pytest.approx(float(v_ref), rel=1e-6)
    assert float(jnp.abs(g_ref[1]).sum()) > 1.0  # spikes happen and gradients are not trivial
    for a, b in zip(g_fast, g_ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_traces_are_rates():
    cfg = LIFConfig(time_steps=30)
    z = readout_traces(cfg, jnp.full((2, 4), 5.0), jnp.full((4, 3), 2.0), jnp.ones((5, 2)))
    assert z.shape == (30, 5, 3)
    assert float(z.min()) >= 0 and float(z.max()) <= 1
