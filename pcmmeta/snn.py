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

    time_steps: int = eqx.field(static=True, default=100)
    dt: float = eqx.field(static=True, default=1e-3)
    tau_mem: float = eqx.field(static=True, default=1e-2)
    tau_out: float = eqx.field(static=True, default=2e-2)
    threshold: float = eqx.field(static=True, default=1.0)
    surrogate_beta: float = eqx.field(static=True, default=10.0)

    @property
    def beta(self) -> float:
        return math.exp(-self.dt / self.tau_mem)

    @property
    def alpha(self) -> float:
        return math.exp(-self.dt / self.tau_out)


def readout_traces(
    config: LIFConfig,
    w_in: Float[Array, "in hidden1"],
    w_hidden: Float[Array, "hidden1 hidden2"],
    x: Float[Array, "samples in"],
) -> Float[Array, "time samples hidden2"]:
    """Filtered layer-2 spike traces z_t for inputs held constant over `time_steps` steps.

    The input current W¹x is constant, so it is computed once, not at every step.
    """
    current = x @ w_in
    beta, alpha, theta, sb = config.beta, config.alpha, config.threshold, config.surrogate_beta
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
