"""The task-family interface: sample support/query sets; own the loss and the metrics.

A family is an `AbstractTaskFamily`. `sample` draws a `TaskBatch` from a key (inside `jit`);
`encode` maps raw inputs to what the network reads; `loss` is what MAML minimises (MSE for
regression, cross-entropy for classification) and `metrics` what a user reads (MSE, accuracy).
Every family has three splits (`SPLITS`): `train` (meta-training), `validation` (what recipe keys
and other hyperparameters are chosen on) and `test` (the figures reported, never used to choose
anything). A family with separate classes (images) returns each split's classes from
`split(name)`: test classes never seen in training, validation classes carved out of the
training classes. One whose tasks are all drawn from the same distribution (sinusoids, arm
trajectories) returns itself: its splits are separate task streams, drawn from different seeds
(`eval.validation_seed`, `eval.seed`; training draws from the recipe's `seed`).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.fields import Field, from_section, schema_of
from pcmmeta.core.tasks.figures import TaskFigure

#: The splits of every task family: meta-training, choosing hyperparameters, reporting.
SPLITS = ("train", "validation", "test")


class TaskBatch(eqx.Module):
    """Support and query sets of a batch of tasks; axis 0 is the task."""

    x_support: Array  # (tasks, n_support, *input)
    y_support: Array  # (tasks, n_support, *target)
    x_query: Array  # (tasks, n_query, *input)
    y_query: Array  # (tasks, n_query, *target)
    params: Array  # (tasks, n_params): the family's task parameters (for plots and reports)

    @property
    def n_tasks(self) -> int:
        return self.y_query.shape[0]


class AbstractTaskFamily(eqx.Module):
    """A family's hyperparameters are its fields, each declared once with
    `pcmmeta.core.fields.hyperparameter`."""

    #: Recipe keys of the `task:` section that are not fields of the family (where its data
    #: come from: read by `pcmmeta.io.task_data`).
    SCHEMA: ClassVar[dict[str, Field]] = {}
    #: Keys that lead the section's schema, in this order (docs/recipes.md lists them so); the
    #: rest follow in declaration order, `SCHEMA`'s last.
    KEY_ORDER: ClassVar[tuple[str, ...]] = ()
    name: ClassVar[str]  # the recipe's `task.family`
    #: What its tasks give a network (`pcmmeta.core.compatibility.INPUTS`): the networks that
    #: read it are the ones a recipe may pair with the family.
    inputs: ClassVar[str]
    #: The primary metric's name ("mse", "accuracy") and its direction.
    metric: ClassVar[str]
    higher_is_better: ClassVar[bool]
    #: A user's support file (`adapt --support`): a CSV holding one of these column sets (the
    #: first that the header holds), one row per `support_rows`; None: a folder of class folders.
    support_columns: ClassVar[tuple[tuple[str, ...], ...] | None] = None
    support_rows: ClassVar[str] = "rows"
    #: The encoded input channel that is a constant 1, if any (exports make it a bias).
    bias_channel: ClassVar[int | None] = None

    @classmethod
    def schema(cls) -> dict[str, Field]:
        """The recipe keys of the `task:` section besides `family` (docs/recipes.md)."""
        return schema_of(cls, cls.SCHEMA, cls.KEY_ORDER)

    @classmethod
    def from_recipe(cls, section: dict, data: Any = None) -> "AbstractTaskFamily":
        """The family described by a validated `task:` section: every hyperparameter by keyword.
        `data` is what `pcmmeta.io.task_data.load_task_data` read for it (None for a procedural
        family; a family built from data overrides this)."""
        return from_section(cls, section)

    @classmethod
    def check_section(cls, section: dict, origin: str) -> None:
        """Rules between keys of a validated `task:` section (each key alone is already checked);
        raise `UserInputError` naming `origin` (the recipe file) and the keys."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, n_tasks: int) -> TaskBatch:
        """`n_tasks` tasks with their support and query sets."""

    @abc.abstractmethod
    def encode(self, x: Array) -> Array:
        """Network inputs for raw inputs (any leading axes)."""

    @property
    @abc.abstractmethod
    def n_outputs(self) -> int:
        """Output units the network's head needs (1 for scalar regression, N for N-way)."""

    @abc.abstractmethod
    def loss(self, prediction: Array, y: Array) -> Float[Array, ""]:
        """The inner and outer objective for one task's set: head output vs targets."""

    @abc.abstractmethod
    def metrics(self, prediction: Array, y: Array) -> dict[str, Float[Array, ""]]:
        """What a user reads for one task's set; the first entry is `metric`."""

    @abc.abstractmethod
    def baselines(self, tasks: TaskBatch) -> dict[str, float]:
        """Reference values for the metric on these tasks (zero predictor, chance level), keyed
        as in `pcmmeta.io.baseline_names.BASELINE_NAMES`."""

    def split(self, name: str) -> "AbstractTaskFamily":
        """The family of the `name` split's tasks (one of `SPLITS`); the same family where every
        split draws from one distribution (the splits are then separate task streams)."""
        if name not in SPLITS:
            raise ValueError(f"split {name!r}: expected one of {', '.join(SPLITS)}")
        return self

    def held_out(self) -> "AbstractTaskFamily":
        """The test split's family (classes never seen in training, where that applies)."""
        return self.split("test")

    @abc.abstractmethod
    def task_from_support(self, data: Any, where: str) -> TaskBatch:
        """One task whose support set is a user's (`adapt --support`); the query set is the
        support set. `data` is the file's columns (name → values) when `support_columns` is set,
        else a folder's images (classes, drawings, H, W) in [0, 1]; `pcmmeta.io.support_file`
        reads it. Raises `UserInputError` naming `where`."""

    @abc.abstractmethod
    def with_shots(self, shots: int) -> "AbstractTaskFamily":
        """The same family with K support examples (per class, for classification)."""

    def data_description(self) -> str:
        """Where the tasks come from, for reports ("" when the family is analytic)."""
        return ""

    def shots_of(self, tasks: TaskBatch) -> int:
        """K of these tasks: support examples per task (per class for classification)."""
        return int(tasks.y_support.shape[1])

    def breakdown(self, prediction: Array, y: Array) -> dict[str, Any]:
        """Family-specific detail of one task's result (e.g. per-class accuracy); JSON-friendly."""
        return {}

    def describe(self, tasks: TaskBatch, i: int) -> dict[str, Any]:
        """JSON-friendly description of task i (for reports)."""
        return {}

    @abc.abstractmethod
    def plot_inputs(self, tasks: TaskBatch) -> Array | np.ndarray:
        """(tasks, points, *input): raw inputs at which `figure` shows the network's predictions."""

    @abc.abstractmethod
    def figure(self, tasks: TaskBatch, outputs: Any) -> TaskFigure:
        """What a figure of a few tasks shows. `outputs[i, s]` is the head's output for task i
        at `plot_inputs` after s inner steps (s = 0: before adaptation)."""


def sample_compiled(family: AbstractTaskFamily, key: PRNGKeyArray, n_tasks: int) -> TaskBatch:
    """`family.sample(key, n_tasks)` compiled as one program, as NumPy arrays: what the commands
    evaluate and report on outside `jit` (slicing and reading NumPy compiles nothing). The same
    tasks; float rounding may differ from op-by-op evaluation in the last bit."""
    return jax.tree.map(np.asarray, _sample(family, key, n_tasks))


# One program: a family's `sample` op by op compiles a dozen tiny programs on every command's
# start, each too quick for the compilation cache to keep (~0.4 s; docs/speed.md).
@eqx.filter_jit
def _sample(family: AbstractTaskFamily, key: PRNGKeyArray, n_tasks: int) -> TaskBatch:
    return family.sample(key, n_tasks)
