"""What a task family's figure shows, as data: the family computes it (targets, kinematics),
`pcmmeta.io.plots.plot_tasks` draws it. One dataclass per kind of figure."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class RegressionFigure:
    """Per task: x, target, the prediction before and after adaptation, the support points
    (each row a dict of 1-D arrays: x, target, before, after, x_support, y_support)."""

    rows: list[dict]


@dataclasses.dataclass(frozen=True)
class ArmFigure:
    """Per task: joint angles and end-effector paths (target, before, after); `arm` (3, 2): the
    shoulder, elbow and hand at the start pose."""

    rows: list[dict]
    arm: np.ndarray


@dataclasses.dataclass(frozen=True)
class FewShotFigure:
    """One task: its support and query images, labels and the head's outputs per inner step."""

    x_support: np.ndarray
    y_support: np.ndarray
    x_query: np.ndarray
    y_query: np.ndarray
    outputs: np.ndarray  # (steps + 1, queries, ways)
    source: str


TaskFigure = RegressionFigure | ArmFigure | FewShotFigure
