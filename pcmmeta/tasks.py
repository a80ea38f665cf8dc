"""Task families: sample a batch of tasks (support and query sets), encode inputs, score.

A family is an `AbstractTaskFamily`: `sample` draws `TaskBatch`es from a key; `encode` maps
raw inputs to the constant input currents the network sees; targets are held over time and the
loss is the MSE of the readout against them.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


class TaskBatch(eqx.Module):
    x_support: Float[Array, "tasks shots in"]
    y_support: Float[Array, "tasks shots"]
    x_query: Float[Array, "tasks shots in"]
    y_query: Float[Array, "tasks shots"]
    params: Float[Array, "tasks n_params"]  # the family's task parameters, for plots


class AbstractTaskFamily(eqx.Module):
    shots: eqx.AbstractVar[int]

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, n_tasks: int) -> TaskBatch:
        """`n_tasks` tasks, each with `shots` support and `shots` query points."""

    @abc.abstractmethod
    def encode(self, x: Float[Array, "... in"]) -> Float[Array, "... channels"]:
        """Input currents (constant over time) for raw inputs."""

    @abc.abstractmethod
    def target(self, params: Float[Array, "n_params"], x: Float[Array, "... in"]) -> Float[Array, "..."]:
        """The task's function at x (for plots over a grid)."""


class Sinusoid(AbstractTaskFamily):
    """y = A sin(x + φ), A ~ U[amplitude], φ ~ U[phase], x ~ U[x_range] (Finn et al. 2017)."""

    shots: int = eqx.field(static=True, default=20)
    amplitude: tuple[float, float] = eqx.field(static=True, default=(0.1, 5.0))
    phase: tuple[float, float] = eqx.field(static=True, default=(0.0, math.pi))
    x_range: tuple[float, float] = eqx.field(static=True, default=(-5.0, 5.0))

    def sample(self, key: PRNGKeyArray, n_tasks: int) -> TaskBatch:
        k_a, k_p, k_x = jax.random.split(key, 3)
        amp = jax.random.uniform(k_a, (n_tasks, 1), minval=self.amplitude[0], maxval=self.amplitude[1])
        phase = jax.random.uniform(k_p, (n_tasks, 1), minval=self.phase[0], maxval=self.phase[1])
        x = jax.random.uniform(k_x, (n_tasks, 2 * self.shots, 1), minval=self.x_range[0], maxval=self.x_range[1])
        y = amp * jnp.sin(x[..., 0] + phase)
        k = self.shots
        return TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:], jnp.concatenate([amp, phase], -1))

    def encode(self, x: Float[Array, "... 1"]) -> Float[Array, "... 2"]:
        """Two channels: x scaled to [−1, 1], and a constant 1 (a bias channel)."""
        half = (self.x_range[1] - self.x_range[0]) / 2
        centre = (self.x_range[1] + self.x_range[0]) / 2
        return jnp.concatenate([(x - centre) / half, jnp.ones_like(x)], -1)

    def target(self, params, x):
        return params[0] * jnp.sin(x[..., 0] + params[1])


TASK_FAMILIES = {"sinusoid": Sinusoid}
