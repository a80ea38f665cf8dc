"""`arm`: a planar two-link arm follows a target trajectory learnt from one demonstration
(Ortner et al., Nat. Commun. 16, 2025, second system).

A task is one smooth random trajectory of the two joint angles. Its angular velocities ω(t) are
Brownian motion (increments N(0, brownian_std²) per step) smoothed by a normalised Hann window of
`window` steps and clipped to ±π; the angles integrate them, θ_t = θ_0 + step_size·Σ_{s≤t} ω_s,
from the arm's start pose; the end effector is at the forward kinematics of θ. The network
outputs ω̂(t); the loss is ½ MSE(ω̂, ω) + ½ MSE(p̂, p) with p̂ the end-effector path that ω̂ drives.

Sets: the support set is the demonstration (one trajectory), the query set is the same
trajectory — the task is to reproduce what was shown. Inputs are the step indices 0 … T−1 (the
same for every task); `encode` turns them into the clock the trainee reads, and
`encode_target` turns a demonstration into the spikes the learning-signal generator reads.
Held-out trajectories come from the evaluation seed, a stream separate from training's.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.fields import hyperparameter
from pcmmeta.core.tasks.base import AbstractTaskFamily, TaskBatch
from pcmmeta.core.tasks.figures import ArmFigure
from pcmmeta.errors import UserInputError

#: Steps of a user's demonstration file: the recipe's `time_steps` must match it, and a longer
#: trajectory than this is not a demonstration but a data set.
MAX_TIME_STEPS = 20_000


def array_namespace(*arrays):
    """NumPy for NumPy inputs (reports and figures: JAX outside `jit` would compile a program per
    operation), jax.numpy otherwise (inside `jit`, for JAX arrays)."""
    return np if all(isinstance(a, (np.ndarray, np.generic)) for a in arrays) else jnp


def forward_kinematics(theta: Float[Array, "... 2"], links: tuple[float, float]) -> Float[Array, "... 2"]:
    """End-effector (x, y) of joint angles (θ₁ at the shoulder, θ₂ relative to link 1), in the
    links' length unit; NumPy in, NumPy out."""
    xp = array_namespace(theta)
    l1, l2 = links
    t1, t12 = theta[..., 0], theta[..., 0] + theta[..., 1]
    return xp.stack([l1 * xp.cos(t1) + l2 * xp.cos(t12), l1 * xp.sin(t1) + l2 * xp.sin(t12)], -1)


def inverse_kinematics(xy: np.ndarray, links: tuple[float, float], elbow_sign: float) -> np.ndarray:
    """Joint angles (rad) reaching points (…, 2), on the elbow branch of `elbow_sign` (the sign
    of θ₂); NaN where a point is out of reach."""
    l1, l2 = links
    r2 = np.sum(xy**2, -1)
    cos2 = (r2 - l1**2 - l2**2) / (2 * l1 * l2)
    with np.errstate(invalid="ignore"):
        t2 = np.where(np.abs(cos2) <= 1 + 1e-9, elbow_sign * np.arccos(np.clip(cos2, -1, 1)), np.nan)
    t1 = np.arctan2(xy[..., 1], xy[..., 0]) - np.arctan2(l2 * np.sin(t2), l1 + l2 * np.cos(t2))
    return np.stack([t1, t2], -1)


class ArmTrajectories(AbstractTaskFamily):
    name = "arm"
    metric = "loss"
    support_columns = (("t", "theta1", "theta2"), ("t", "x", "y"))
    support_rows = "trajectory steps"
    higher_is_better = False
    inputs: ClassVar[str] = "clock"

    time_steps: int = hyperparameter(
        249, "int", "steps of a trajectory (Ortner: 249 of 1 ms)", low=2, high=MAX_TIME_STEPS
    )
    window: int = hyperparameter(
        120,
        "int",
        "Hann window smoothing the Brownian angular velocities, steps (Ortner: 120)",
        low=1,
        high=MAX_TIME_STEPS,
    )
    step_size: float = hyperparameter(
        0.01,
        "float",
        "angle change per step per unit of angular velocity: θ_t = θ_0 + step_size·Σω (Ortner: 0.01)",
        positive=True,
    )
    brownian_std: float = hyperparameter(
        0.1, "float", "std of the Brownian increments of ω per step (Ortner: 1.0·√0.01)", positive=True
    )
    link_lengths: tuple[float, float] = hyperparameter(
        [0.5, 0.5], "floats", "lengths of the two links; errors are reported in units of their mean", positive=True
    )
    start_pose: tuple[float, float] = hyperparameter(
        [0.0, 1.5707963267948966], "floats", "joint angles θ₁, θ₂ at the start, rad", low=-10.0, high=10.0
    )
    clock_neurons: int = hyperparameter(
        5,
        "int",
        "clock input neurons: neuron k spikes at every step of the k-th of as many equal windows",
        low=1,
        high=1000,
    )
    coordinate_neurons: int = hyperparameter(
        16,
        "int",
        "spiking neurons per target coordinate (x, y) for the learning-signal generator (place code)",
        low=2,
        high=256,
    )

    @classmethod
    def check_section(cls, section, origin):
        for key in ("window", "clock_neurons"):
            if section[key] > section["time_steps"]:
                raise UserInputError(
                    f"{origin}: 'task.{key}' ({section[key]}) must be at most 'task.time_steps' ({section['time_steps']})"
                )

    # ------------------------------------------------------------------ trajectories
    def velocities(self, key: PRNGKeyArray) -> Float[Array, "time 2"]:
        """One target: smoothed Brownian angular velocities, clipped to ±π."""
        w = self.window
        increments = self.brownian_std * jax.random.normal(key, (self.time_steps + w - 1, 2))
        walk = jnp.cumsum(increments, axis=0)
        hann = jnp.hanning(w + 2)[1:-1]  # without the zero end points: every sample counts
        hann = hann / hann.sum()
        smooth = jax.vmap(lambda c: jnp.convolve(c, hann, mode="valid"), in_axes=1, out_axes=1)(walk)
        return jnp.clip(smooth, -jnp.pi, jnp.pi)

    def angles(self, omega: Float[Array, "... time 2"]) -> Float[Array, "... time 2"]:
        """Joint angles (rad) that angular velocities ω drive from the start pose (NumPy in,
        NumPy out)."""
        xp = array_namespace(omega)
        return xp.asarray(self.start_pose, omega.dtype) + self.step_size * xp.cumsum(omega, axis=-2)

    def positions(self, omega: Float[Array, "... time 2"]) -> Float[Array, "... time 2"]:
        """End-effector path that angular velocities ω drive."""
        return forward_kinematics(self.angles(omega), self.link_lengths)

    @property
    def reach(self) -> float:
        return float(sum(self.link_lengths))

    def sample(self, key: PRNGKeyArray, n_tasks: int) -> TaskBatch:
        omega = jax.vmap(self.velocities)(jax.random.split(key, n_tasks))[:, None]  # (tasks, 1, T, 2)
        steps = jnp.broadcast_to(jnp.arange(self.time_steps, dtype=jnp.float32), (n_tasks, 1, self.time_steps))
        params = jnp.broadcast_to(jnp.asarray(self.start_pose, jnp.float32), (n_tasks, 2))
        return TaskBatch(steps, omega, steps, omega, params)

    # ------------------------------------------------------------------ what networks read
    def encode(self, x: Float[Array, "... time"]) -> Float[Array, "... time clock"]:
        """The clock: neuron k spikes (1) at every step of the k-th of `clock_neurons` windows."""
        window = jnp.floor(x * self.clock_neurons / self.time_steps)
        return (window[..., None] == jnp.arange(self.clock_neurons)).astype(jnp.float32)

    def encode_target(self, y: Float[Array, "... time 2"]) -> Float[Array, "... time coded"]:
        """The demonstration as spikes: the end effector's x and y, each in a place code of
        `coordinate_neurons` neurons over [−reach, reach] (the one or two nearest neurons spike)."""
        n = self.coordinate_neurons
        u = (self.positions(y) / self.reach + 1.0) / 2.0 * (n - 1)  # (…, time, 2) in neuron units
        spikes = (jnp.abs(u[..., None] - jnp.arange(n)) < 1.0).astype(jnp.float32)  # (…, time, 2, n)
        return spikes.reshape(*spikes.shape[:-2], 2 * n)

    @property
    def target_channels(self) -> int:
        return 2 * self.coordinate_neurons

    @property
    def n_outputs(self) -> int:
        return 2

    # ------------------------------------------------------------------ scoring
    def _errors(self, prediction, y):
        velocity = jnp.mean((prediction - y) ** 2)
        squared = jnp.sum((self.positions(prediction) - self.positions(y)) ** 2, -1)  # (…, time)
        return velocity, jnp.mean(squared) / 2.0, squared  # per-coordinate MSE, as the velocity's

    def loss(self, prediction: Float[Array, "samples time 2"], y: Float[Array, "samples time 2"]) -> Float[Array, ""]:
        velocity, position, _ = self._errors(prediction, y)
        return 0.5 * velocity + 0.5 * position

    def metrics(self, prediction, y):
        velocity, position, squared = self._errors(prediction, y)
        link = sum(self.link_lengths) / 2.0
        return {
            "loss": 0.5 * velocity + 0.5 * position,
            "mse_velocity": velocity,
            "mse_position": position,
            "rms_position_links": jnp.sqrt(jnp.mean(squared)) / link,  # Cartesian RMS error, link lengths
        }

    def baselines(self, tasks: TaskBatch) -> dict[str, float]:
        """The loss of an arm that stays at its start pose (ω̂ = 0)."""
        # one program (op by op under vmap, a few dozen tiny ones)
        zero = jax.jit(jax.vmap(lambda y: self.loss(jnp.zeros_like(y), y)))(tasks.y_query)
        return {"loss_zero": float(np.mean(np.asarray(zero)))}

    # ------------------------------------------------------------------ a user's demonstration
    def task_from_support(self, data: dict, where: str) -> TaskBatch:
        """A demonstration CSV: columns t,theta1,theta2 (rad) or t,x,y (end effector), one row per
        step, `time_steps` rows, t strictly increasing. The arm starts at `start_pose`, so the
        first row is where it is after one step."""
        cols = data
        t = np.asarray(cols["t"], np.float64)
        if len(t) != self.time_steps:
            raise UserInputError(
                f"{where}: {len(t):,} trajectory steps; the run's recipe has task.time_steps {self.time_steps} (one row per step)"
            )
        back = np.nonzero(np.diff(t) <= 0)[0]
        if back.size:
            raise UserInputError(f"{where}:{int(back[0]) + 3}: column 't' must increase strictly from row to row")
        if "theta1" in cols:
            theta = np.stack([cols["theta1"], cols["theta2"]], -1)
        else:
            xy = np.stack([cols["x"], cols["y"]], -1)
            theta = inverse_kinematics(xy, self.link_lengths, 1.0 if self.start_pose[1] >= 0 else -1.0)
            bad = np.nonzero(~np.isfinite(theta[:, 0]))[0]
            if bad.size:
                i = int(bad[0])
                raise UserInputError(
                    f"{where}:{i + 2}: point ({xy[i, 0]:.4g}, {xy[i, 1]:.4g}) is out of the arm's reach (links {self.link_lengths[0]:g} + {self.link_lengths[1]:g})"
                )
            theta = np.unwrap(np.concatenate([np.asarray(self.start_pose)[None], theta]), axis=0)[1:]
        previous = np.concatenate([np.asarray(self.start_pose)[None], theta[:-1]])
        omega = (theta - previous) / self.step_size
        fast = np.nonzero(np.abs(omega).max(-1) > math.pi + 1e-6)[0]
        if fast.size:
            i = int(fast[0])
            raise UserInputError(
                f"{where}:{i + 2}: a joint moves {np.abs(theta[i] - previous[i]).max():.4g} rad in one step; the arm moves at most "
                f"π·step_size = {math.pi * self.step_size:.4g} rad per step (its first row is one step from the start pose {list(self.start_pose)})"
            )
        y = jnp.asarray(omega, jnp.float32)[None, None]
        x = jnp.arange(self.time_steps, dtype=jnp.float32)[None, None]
        return TaskBatch(x, y, x, y, jnp.asarray(self.start_pose, jnp.float32)[None])

    def with_shots(self, shots: int) -> "ArmTrajectories":
        if shots != 1:
            raise UserInputError(f"--shots {shots}: an arm task has one demonstration (--shots 1)")
        return self

    def shots_of(self, tasks: TaskBatch) -> int:
        return 1

    def describe(self, tasks: TaskBatch, i: int) -> dict:
        omega = np.asarray(tasks.y_query[i, 0])
        path = self.positions(omega)
        return {
            "time_steps": int(omega.shape[0]),
            "path_length_links": float(np.sum(np.linalg.norm(np.diff(path, axis=0), axis=-1)) / (self.reach / 2)),
        }

    # ------------------------------------------------------------------ figures
    def plot_inputs(self, tasks: TaskBatch) -> Array:
        return tasks.x_query

    def figure(self, tasks: TaskBatch, outputs) -> ArmFigure:
        outputs = np.asarray(outputs)[:, :, 0]  # (tasks, steps, time, 2): the one trajectory
        rows = []
        for i in range(outputs.shape[0]):
            target = np.asarray(tasks.y_query[i, 0])
            rows.append(
                {
                    "angles": {
                        k: self.angles(w)
                        for k, w in (("target", target), ("before", outputs[i, 0]), ("after", outputs[i, -1]))
                    },
                    "path": {
                        k: self.positions(w)
                        for k, w in (("target", target), ("before", outputs[i, 0]), ("after", outputs[i, -1]))
                    },
                }
            )
        start = forward_kinematics(np.asarray(self.start_pose, np.float32), self.link_lengths)
        elbow = self.link_lengths[0] * np.array([math.cos(self.start_pose[0]), math.sin(self.start_pose[0])])
        return ArmFigure(rows, np.stack([np.zeros(2), elbow, start]))
