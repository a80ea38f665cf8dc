"""A meta-training run as `pcmmeta meta-train` runs it: the recipe or the run to resume checked
and the experiment built before anything is written, then the loop under the interrupt contract
(docs/runs.md): a signal before the first checkpoint removes the new run directory, a signal
during training stops at the end of the iteration with a checkpoint, a signal during the final
evaluation ends it at once and keeps the checkpoint."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

from pcmmeta.errors import UserInputError, safe_text
from pcmmeta.experiment.memory import check_dataset_memory
from pcmmeta.experiment.recipe import load_recipe, load_run_recipe
from pcmmeta.experiment.train import (
    Experiment,
    TrainOutcome,
    build_experiment,
    init_state,
    load_checkpoint,
    make_optimizer,
    metrics_iterations,
    start_run,
    train,
)
from pcmmeta.io.runs import check_run_format, resolve_run
from pcmmeta.io.writable import check_writable
from pcmmeta.runtime import interrupts
from pcmmeta.runtime.distributed import is_writer


@dataclasses.dataclass
class TrainingRun:
    """A run ready to train: its validated recipe and built experiment. `run_dir` is the run to
    resume, or the new run once `start` made it; `checkpoints` the iterations checkpointed."""

    recipe: dict
    experiment: Experiment
    resume: bool
    run_dir: Path | None = None
    checkpoints: list[int] = dataclasses.field(default_factory=list)
    finished: bool = False  # a resumed run that trained every iteration and wrote its evaluation

    def start(self, runs_dir: Path) -> Path:
        """Make the run directory (a new run) and install the interrupt policy of training."""
        if self.run_dir is None:
            self.run_dir = start_run(self.recipe, runs_dir)
        interrupts.on_interrupt(self._describe_interrupt)
        return self.run_dir

    def _describe_interrupt(self) -> str:
        if not self.checkpoints and not self.resume:
            if is_writer():  # only process 0 made it
                shutil.rmtree(self.run_dir, ignore_errors=True)  # nothing resumable in it
            return f"nothing written (removed {self.run_dir})"
        at = self.checkpoints[-1] if self.checkpoints else "the last checkpoint"
        return f"checkpoint at iteration {at} kept; resume with `pcmmeta meta-train --resume --run {self.run_dir}`"

    def run(self, on_iteration: Callable[[int, float, dict], None] | None = None) -> TrainOutcome:
        """Train to the end or to a signal; `on_iteration(it, loss, record)` reports progress.
        Raises `NaNLossError`, or `UserInputError` for a damaged checkpoint."""
        run_dir = self.run_dir
        assert run_dir is not None, "start() first"

        def each_iteration(it: int, loss: float, record: dict) -> None:
            interrupts.set_deferred(True)  # compiled: a signal now stops at the end of this iteration
            if on_iteration is not None:
                on_iteration(it, loss, record)

        def before_evaluation() -> None:
            interrupts.set_deferred(False)  # the evaluation can take minutes: a signal ends it at once
            interrupts.on_interrupt(
                lambda: (
                    f"training finished, checkpoint kept, evaluation not written; `pcmmeta meta-train --resume --run {run_dir}` evaluates it"
                )
            )

        outcome = train(
            self.recipe,
            run_dir,
            resume=self.resume,
            on_iteration=each_iteration,
            experiment=self.experiment,
            should_stop=lambda: interrupts.requested() is not None,
            on_checkpoint=self.checkpoints.append,
            before_evaluation=before_evaluation,
        )
        interrupts.set_deferred(False)
        interrupts.on_interrupt(lambda: f"training finished; checkpoint kept in {run_dir}")
        return outcome


def prepare_run(
    recipe: Path | None, resume: bool, run: Path | None, runs_dir: Path, overrides: dict | None = None
) -> TrainingRun:
    """Check the arguments, read the recipe (or the resumed run's) with the dotted `overrides`
    set, build the experiment and, on --resume, read the checkpoint: every error
    (`UserInputError`) before a file is written."""
    if resume and recipe is not None:
        raise UserInputError(
            "give a recipe (a new run) or --resume (continue a run), not both; --resume reads the run's own recipe.yaml"
        )
    if run is not None and not resume:
        raise UserInputError("--run names a run to continue: add --resume (a new run goes under --runs-dir)")
    run_dir = None
    if resume:
        run_dir = resolve_run(run, runs_dir)
        check_run_format(run_dir)
        recipe_dict = load_run_recipe(run_dir)
        origin = str(run_dir / "recipe.yaml")
    else:
        if recipe is None:
            raise UserInputError("give a recipe (e.g. recipes/sine-quick.yaml), or --resume")
        recipe_dict = load_recipe(recipe, overrides)
        origin = str(recipe) + "".join(f" --set {k}={safe_text(str(v), 40)}" for k, v in (overrides or {}).items())
    check_dataset_memory(recipe_dict, origin)  # the built-in glyphs are generated while the experiment is built
    experiment = build_experiment(recipe_dict, check_memory=origin)
    finished = False
    if run_dir is not None and not (run_dir / "checkpoint.eqx").exists():
        raise UserInputError(
            f"{run_dir}: no checkpoint.eqx (deleted?): nothing to resume; start a new run with `pcmmeta meta-train RECIPE`"
        )
    if run_dir is not None and (run_dir / "metrics.jsonl").exists():
        metrics_iterations(run_dir / "metrics.jsonl")  # a damaged metrics file: refused before training
    if run_dir is not None and (run_dir / "checkpoint.eqx").exists():  # a damaged checkpoint: refused now
        state = load_checkpoint(run_dir / "checkpoint.eqx", init_state(experiment, make_optimizer(experiment.train)))
        finished = int(state.iteration) >= experiment.train.iterations and (run_dir / "evaluation.json").is_file()
    if run_dir is not None and not finished:  # checkpoints go there: an unwritable run fails now, not at the first one
        check_writable(run_dir / "checkpoint.eqx")
    return TrainingRun(recipe_dict, experiment, resume, run_dir, finished=finished)
