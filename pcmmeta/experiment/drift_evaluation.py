"""`drift-eval` as a service: a deployed run's held-out metric as its conductances drift, with and
without on-chip adaptation and global drift compensation (`chip.CONDITIONS`).

`evaluate_drift` refuses a task count whose evaluation would not fit in memory before anything
is computed, evaluates every condition at every time on the same tasks and reads
(`chip.drift_table`), records the table in the run (`drift.json`, which `pcmmeta report` reads),
and writes the CSV and the figure when asked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from pcmmeta.errors import UserInputError
from pcmmeta.experiment.chip import CONDITIONS, drift_table, drift_tasks
from pcmmeta.experiment.memory import estimate_evaluation_memory, refuse_if_too_large
from pcmmeta.experiment.run_access import DeployedRun
from pcmmeta.io.runs import write_json
from pcmmeta.io.table_file import write_rows_csv
from pcmmeta.io.writable import check_folder_writable


@dataclasses.dataclass
class DriftEvaluation:
    """One row per (time, condition) in `results` (`chip.drift_table`), and the task family's
    baselines (zero predictor, chance, …) on the same tasks."""

    run_dir: Path
    metric: str
    tasks: int
    inner_steps: int
    seed: int
    hours: list[float]
    conditions: list[str]
    results: list[dict]
    baselines: dict[str, float]

    def to_json(self) -> dict:
        """The body of `drift.json` (and of `drift-eval --json`)."""
        return {
            "run_dir": str(self.run_dir),
            "metric": self.metric,
            "tasks": self.tasks,
            "inner_steps": self.inner_steps,
            "seed": self.seed,
            "results": self.results,
            "baselines": self.baselines,
        }

    def cell(self, hours: float, condition: str) -> dict:
        """The row of one time and condition."""
        return next(r for r in self.results if r["hours"] == hours and r["condition"] == condition)


def evaluate_drift(
    run: DeployedRun,
    hours: Sequence[float],
    tasks: int = 300,
    steps: int | None = None,
    seed: int = 0,
    csv_path: Path | None = None,
    plot: Path | None = None,
    progress: Callable[[], None] | None = None,
) -> DriftEvaluation:
    """The held-out metric of `tasks` test tasks at each of `hours` (since deployment) for every
    condition, with `steps` inner steps in the adapted ones (default: the recipe's); writes
    `drift.json` into the run, and `csv_path` / `plot` if given. `progress` is called after
    each (time, condition)."""
    if not hours or tasks < 1:
        raise UserInputError(
            f"evaluate_drift: give at least one time and one task; got hours {list(hours)}, tasks {tasks}"
        )
    check_folder_writable(run.run_dir)  # drift.json goes there: an unwritable run fails now, not after the table
    exp, network = run.experiment, run.network
    estimate = estimate_evaluation_memory(exp, network, tasks)
    refuse_if_too_large(
        estimate.total,
        f"--tasks {tasks}",
        f"evaluating {tasks:,} tasks of {run.run_dir.name} at once",
        f"{estimate.dominant}; reduce --tasks",
    )
    n_steps = steps if steps is not None else exp.meta.rule.steps
    hours = sorted(float(h) for h in hours)  # as the command gives them: 720.0 in drift.json
    batch = drift_tasks(exp, tasks, seed)  # one draw for the table and the baselines
    rows = drift_table(exp, network, run.array, hours, tasks, n_steps, seed, CONDITIONS, progress, tasks=batch)
    evaluation = DriftEvaluation(
        run.run_dir,
        exp.family.metric,
        tasks,
        n_steps,
        seed,
        list(hours),
        [name for name, _, _ in CONDITIONS],
        rows,
        exp.eval_family.baselines(batch),
    )
    write_json(run.run_dir / "drift.json", evaluation.to_json())  # the run's latest drift table (`pcmmeta report`)
    if csv_path is not None:
        write_rows_csv(csv_path, rows)
    if plot is not None:
        from pcmmeta.io.plots import plot_drift  # matplotlib only when a figure is asked for

        plot_drift(
            rows,
            plot,
            f"{run.run_dir.name}: {tasks} held-out tasks per point (± s.e.)",
            evaluation.metric,
            evaluation.baselines,
        )
    return evaluation
