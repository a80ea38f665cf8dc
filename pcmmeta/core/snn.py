"""LIF spiking layers with a surrogate-gradient spike, and the readout's filtered spike traces.

Network: constant input current → LIF layer → LIF layer → leaky-integrator readout (linear,
non-spiking). With membrane decay β = exp(−dt/τ_mem) and readout decay α = exp(−dt/τ_out):

    v¹_t = β v¹_{t−1} + W¹ x            s¹_t = H(v¹_t − θ),  v¹_t ← v¹_t − θ s¹_t   (soft reset)
    v²_t = β v²_{t−1} + W² s¹_t         s²_t = H(v²_t − θ),  v²_t ← v²_t − θ s²_t
    z_t  = α z_{t−1} + (1 − α) s²_t     y_t  = W_out z_t      (z is a rate in [0, 1])

The readout is linear in W_out, so everything the output layer needs from an input is its trace
z (time × hidden); the MAML code works on its second moments.
"""

from __future__ import annotations

import math
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from pcmmeta.core.fields import hyperparameter


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def spike(v: Float[Array, "..."], beta: float) -> Float[Array, "..."]:
    """Heaviside H(v) forward; derivative 1/(β|v| + 1)² (fast sigmoid) for gradients.

    The derivative is itself written in jnp, so second derivatives exist (MAML's outer loop
    differentiates through inner gradients). β is not differentiated (`nondiff_argnums`).
    """
    return (v > 0).astype(v.dtype)


@spike.defjvp
def _spike_jvp(beta, primals, tangents):
    (v,), (v_dot,) = primals, tangents
    return spike(v, beta), surrogate_derivative(v, beta) * v_dot


def surrogate_derivative(v: Float[Array, "..."], beta: float) -> Float[Array, "..."]:
    """1/(β|v| + 1)²."""
    return 1.0 / (beta * jnp.abs(v) + 1.0) ** 2


class LIFConfig(eqx.Module):
    """Time constants in seconds; threshold in units of the membrane variable."""

    time_steps: int = hyperparameter(100, "int", "simulation steps per input", low=1)
    dt: float = hyperparameter(1e-3, "float", "time step, s", positive=True)
    tau_mem: float = hyperparameter(1e-2, "float", "membrane time constant, s", positive=True)
    tau_out: float = hyperparameter(2e-2, "float", "readout time constant, s", positive=True)
    threshold: float = hyperparameter(1.0, "float", "spike threshold", positive=True)
    surrogate_beta: float = hyperparameter(10.0, "float", "β of the spike surrogate 1/(β|v−θ|+1)²", positive=True)

    @property
    def membrane_decay(self) -> float:
        """Per step: exp(−dt/τ_mem)."""
        return math.exp(-self.dt / self.tau_mem)

    @property
    def readout_decay(self) -> float:
        """Per step: exp(−dt/τ_out), the readout trace's decay."""
        return math.exp(-self.dt / self.tau_out)


#: Time steps per scan iteration: fewer loop iterations and fusion across steps (a meta-iteration
#: of recipes/sine.yaml on the 2-core CPU: 0.51 s unrolled by 4, 0.64 s not unrolled; the
#: compile time is the same).
_UNROLL = 4


def _forward_scan(config: LIFConfig, current, w_hidden, keep_membranes: bool):
    beta, alpha, theta = config.membrane_decay, config.readout_decay, config.threshold
    n = current.shape[0]
    init = (
        jnp.zeros((n, current.shape[1]), current.dtype),
        jnp.zeros((n, w_hidden.shape[1]), current.dtype),
        jnp.zeros((n, w_hidden.shape[1]), current.dtype),
    )

    def step(carry, _):
        v1, v2, z = carry
        m1 = beta * v1 + current
        s1 = (m1 > theta).astype(m1.dtype)
        m2 = beta * v2 + s1 @ w_hidden
        s2 = (m2 > theta).astype(m2.dtype)
        z = alpha * z + (1.0 - alpha) * s2
        out = (z, m1, m2) if keep_membranes else (z,)
        return (m1 - theta * s1, m2 - theta * s2, z), out

    _, outs = jax.lax.scan(step, init, None, length=config.time_steps, unroll=_UNROLL)
    return outs


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _traces_from_current(config: LIFConfig, current, w_hidden):
    return _forward_scan(config, current, w_hidden, keep_membranes=False)[0]


def _traces_fwd(config, current, w_hidden):
    z, m1, m2 = _forward_scan(config, current, w_hidden, keep_membranes=True)
    # Only the pre-reset membranes are kept: spikes are recomputed from them (m > θ).
    return z, (m1, m2, w_hidden)


def _traces_bwd(config, residuals, g_z):
    """Backpropagation through time by hand, with the same surrogate as `spike`."""
    m1, m2, w_hidden = residuals
    beta, alpha, theta, sb = config.membrane_decay, config.readout_decay, config.threshold, config.surrogate_beta
    n, h1, h2 = m1.shape[1], m1.shape[2], m2.shape[2]
    init = (
        jnp.zeros((n, h2), g_z.dtype),  # ∂L/∂z_t arriving from step t + 1 (already × α)
        jnp.zeros((n, h1), g_z.dtype),  # ∂L/∂v¹_t from step t + 1
        jnp.zeros((n, h2), g_z.dtype),  # ∂L/∂v²_t from step t + 1
        jnp.zeros((n, h1), g_z.dtype),  # ∂L/∂(W¹x), summed over time
        jnp.zeros((h1, h2), g_z.dtype),  # ∂L/∂W², summed over time
    )

    def step(carry, inputs):
        g_z_next, g_v1, g_v2, g_current, g_w = carry
        g_z_t, m1_t, m2_t = inputs
        g_z_total = g_z_t + g_z_next
        s1 = (m1_t > theta).astype(m1_t.dtype)
        g_s2 = (1.0 - alpha) * g_z_total - theta * g_v2
        g_m2 = g_v2 + surrogate_derivative(m2_t - theta, sb) * g_s2
        g_w = g_w + s1.T @ g_m2
        g_s1 = g_m2 @ w_hidden.T - theta * g_v1
        g_m1 = g_v1 + surrogate_derivative(m1_t - theta, sb) * g_s1
        return (alpha * g_z_total, beta * g_m1, beta * g_m2, g_current + g_m1, g_w), None

    (_, _, _, g_current, g_w), _ = jax.lax.scan(step, init, (g_z, m1, m2), reverse=True, unroll=_UNROLL)
    return g_current, g_w


_traces_from_current.defvjp(_traces_fwd, _traces_bwd)


def readout_traces(
    config: LIFConfig,
    w_in: Float[Array, "in hidden1"],
    w_hidden: Float[Array, "hidden1 hidden2"],
    x: Float[Array, "samples in"],
) -> Float[Array, "time samples hidden2"]:
    """Filtered layer-2 spike traces z_t for inputs held constant over `time_steps` steps.

    The input current W¹x is constant, so it is computed once, not at every step. Gradients
    (first order, which is all MAML needs here: the inner step's gradient is closed-form in z)
    come from a hand-written backward pass through time that keeps only the membranes, not
    autodiff's per-step residuals; `readout_traces_autodiff` is the reference it is tested
    against.
    """
    return _traces_from_current(config, x @ w_in, w_hidden)


def readout_traces_autodiff(config: LIFConfig, w_in, w_hidden, x):
    """The same traces written with `spike` and differentiated by JAX (slower; for tests)."""
    current = x @ w_in
    beta, alpha, theta, sb = config.membrane_decay, config.readout_decay, config.threshold, config.surrogate_beta
    n = x.shape[0]
    init = (
        jnp.zeros((n, w_in.shape[1]), x.dtype),
        jnp.zeros((n, w_hidden.shape[1]), x.dtype),
        jnp.zeros((n, w_hidden.shape[1]), x.dtype),
    )

    def step(carry, _):
        v1, v2, z = carry
        v1 = beta * v1 + current
        s1 = spike(v1 - theta, sb)
        v1 = v1 - theta * s1
        v2 = beta * v2 + s1 @ w_hidden
        s2 = spike(v2 - theta, sb)
        v2 = v2 - theta * s2
        z = alpha * z + (1.0 - alpha) * s2
        return (v1, v2, z), z

    _, traces = jax.lax.scan(step, init, None, length=config.time_steps)
    return traces
