"""Sinusoid regression (Finn et al. 2017): y = A sin(x + φ), A ~ U[amplitude], φ ~ U[phase]."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core import noise
from pcmmeta.core.fields import hyperparameter
from pcmmeta.core.tasks.base import AbstractTaskFamily, TaskBatch
from pcmmeta.core.tasks.figures import RegressionFigure
from pcmmeta.errors import UserInputError

#: Points of a user's support file: as many as `adapt --shots` allows.
MAX_SUPPORT_POINTS = 10_000
#: Largest |x| or |y| of a support CSV: squares of a few thousand such errors stay far below
#: float32's 3.4e38.
MAX_SUPPORT_VALUE = 1e15


class Sinusoid(AbstractTaskFamily):
    """K support and K query points per task, x ~ U[x_range].

    The loss is the MSE of the prediction against y, over every leading axis of the prediction
    (a time-resolved readout of shape (time, points) is scored at every time step); the metrics
    add the MSE at the last time step.
    """

    name = "sinusoid"
    inputs = "vector"
    metric = "mse"
    support_columns = (("x", "y"),)
    bias_channel = -1  # `encode`'s constant 1
    support_rows = "support points"
    higher_is_better = False

    shots: int = hyperparameter(20, "int", "K: support points and query points per task", low=1)
    amplitude: tuple[float, float] = hyperparameter([0.1, 5.0], "range", "amplitude range [low, high]")
    phase: tuple[float, float] = hyperparameter([0.0, math.pi], "range", "phase range [low, high], rad")
    x_range: tuple[float, float] = hyperparameter([-5.0, 5.0], "range", "input range [low, high]")

    def sample(self, key: PRNGKeyArray, n_tasks: int) -> TaskBatch:
        k_a, k_p, k_x = jax.random.split(key, 3)
        amp = noise.uniform(k_a, (n_tasks, 1), minval=self.amplitude[0], maxval=self.amplitude[1])
        phase = noise.uniform(k_p, (n_tasks, 1), minval=self.phase[0], maxval=self.phase[1])
        x = noise.uniform(k_x, (n_tasks, 2 * self.shots, 1), minval=self.x_range[0], maxval=self.x_range[1])
        y = amp * jnp.sin(x[..., 0] + phase)
        k = self.shots
        return TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:], jnp.concatenate([amp, phase], -1))

    def encode(self, x: Float[Array, "... 1"]) -> Float[Array, "... 2"]:
        """Two channels: x scaled to [−1, 1], and a constant 1 (a bias channel)."""
        half = (self.x_range[1] - self.x_range[0]) / 2
        centre = (self.x_range[1] + self.x_range[0]) / 2
        return jnp.concatenate([(x - centre) / half, jnp.ones_like(x)], -1)

    @property
    def n_outputs(self) -> int:
        return 1

    def target(self, params: Float[np.ndarray, "2"], x: Float[np.ndarray, "... 1"]) -> Float[np.ndarray, "..."]:
        """The task's function at x, in NumPy (for plots: JAX would compile a program per op)."""
        params, x = np.asarray(params), np.asarray(x)
        return params[0] * np.sin(x[..., 0] + params[1])

    def loss(self, prediction: Float[Array, "*time points"], y: Float[Array, " points"]) -> Float[Array, ""]:
        return jnp.mean((prediction - y) ** 2)

    def metrics(self, prediction, y):
        last = prediction[-1] if prediction.ndim > y.ndim else prediction
        return {"mse": self.loss(prediction, y), "mse_last": jnp.mean((last - y) ** 2)}

    def baselines(self, tasks: TaskBatch) -> dict[str, float]:
        return {"mse_zero": float(np.mean(np.asarray(tasks.y_query) ** 2))}

    def task_from_support(self, data: dict, where: str) -> TaskBatch:
        xs, ys = data["x"], data["y"]
        for column, values in (("x", xs), ("y", ys)):
            big = [i for i, v in enumerate(values) if abs(v) > MAX_SUPPORT_VALUE]
            if big:  # float32 would make the value, or the squared error of one, inf
                raise UserInputError(
                    f"{where}:{big[0] + 2}: column '{column}' holds {values[big[0]]:g}; support values must be "
                    f"within ±{MAX_SUPPORT_VALUE:g} (their squared errors are summed in float32)"
                )
        if len(xs) > MAX_SUPPORT_POINTS:
            raise UserInputError(f"{where}: {len(xs):,} support points; at most {MAX_SUPPORT_POINTS:,}")
        x = jnp.asarray(xs, jnp.float32)[None, :, None]
        y = jnp.asarray(ys, jnp.float32)[None]
        return TaskBatch(x, y, x, y, jnp.full((1, 2), jnp.nan))

    def with_shots(self, shots: int) -> "Sinusoid":
        import dataclasses

        return dataclasses.replace(self, shots=shots)

    def describe(self, tasks: TaskBatch, i: int) -> dict:
        amp, phase = (float(v) for v in np.asarray(tasks.params[i]))
        return {"amplitude": amp, "phase": phase} if math.isfinite(amp) else {}

    def plot_inputs(self, tasks: TaskBatch) -> np.ndarray:
        """100 evenly spaced x over the range, for every task (NumPy: no program to compile)."""
        grid = np.linspace(self.x_range[0], self.x_range[1], 100, dtype=np.float32)[:, None]
        return np.broadcast_to(grid, (tasks.n_tasks, *grid.shape))

    def figure(self, tasks: TaskBatch, outputs) -> RegressionFigure:
        outputs = np.asarray(outputs)  # (tasks, steps, *time, points)
        if outputs.ndim > 3:  # a time-resolved readout: show its time average
            outputs = outputs.mean(axis=tuple(range(2, outputs.ndim - 1)))
        grid = np.asarray(self.plot_inputs(tasks))
        rows = []
        for i in range(outputs.shape[0]):
            params = np.asarray(tasks.params[i])
            target = self.target(params, grid[i]) if np.all(np.isfinite(params)) else np.full(grid.shape[1], np.nan)
            rows.append(
                dict(
                    x=grid[i, :, 0],
                    target=target,
                    before=outputs[i, 0],
                    after=outputs[i, -1],
                    x_support=np.asarray(tasks.x_support[i, :, 0]),
                    y_support=np.asarray(tasks.y_support[i]),
                )
            )
        return RegressionFigure(rows)
