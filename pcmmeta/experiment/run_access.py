"""A run's trained network and deployed array, loaded with every damage named in one line.

Every command after training starts here: `load_trained_run` for those that need the trained
conductances (`deploy`, `export`, `import-chip`, `learn-programming --targets`),
`load_deployed_run` for those that need the chip as deployed (`adapt`, `drift-eval`, NIR export).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pcmmeta.core.networks import AbstractNetwork
from pcmmeta.errors import UserInputError
from pcmmeta.experiment.chip import DeployedArray, load_array
from pcmmeta.experiment.train import Experiment, load_run
from pcmmeta.io.runs import resolve_run


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A run directory, its experiment and its trained network."""

    run_dir: Path
    experiment: Experiment
    network: AbstractNetwork


@dataclasses.dataclass(frozen=True)
class DeployedRun(TrainedRun):
    """A trained run and the array `deploy` (or `import-chip`) left in it."""

    array: DeployedArray


def _damaged(path: Path) -> bool:
    """A folder or a broken link where a run's file belongs."""
    return path.is_dir() or path.is_symlink() and not path.exists()


def load_trained_run(run: Path | None, runs_dir: Path) -> TrainedRun:
    """The run `run` (default: the latest in `runs_dir`) with its trained network; a missing or
    damaged checkpoint is a `UserInputError` that says what to do."""
    run_dir = resolve_run(run, runs_dir)
    checkpoint = run_dir / "checkpoint.eqx"
    if _damaged(checkpoint):
        raise UserInputError(
            f"{checkpoint}: is a folder or a broken link where the checkpoint belongs (a damaged run?); restore it or train again"
        )
    if not checkpoint.is_file():
        raise UserInputError(f"{run_dir}: no checkpoint; run `pcmmeta meta-train --resume --run {run_dir}` first")
    exp, state = load_run(run_dir)
    return TrainedRun(run_dir, exp, state.network)


def load_deployed_run(run: Path | None, runs_dir: Path) -> DeployedRun:
    """`load_trained_run` and the run's deployed array; a run not deployed yet, or whose array
    is damaged, is a `UserInputError` that says what to do."""
    trained = load_trained_run(run, runs_dir)
    run_dir = trained.run_dir
    path = run_dir / "deployed.eqx"
    if _damaged(path):
        raise UserInputError(
            f"{path}: is a folder or a broken link where the deployed array belongs (a damaged run?); remove it and deploy again"
        )
    if not path.is_file():
        raise UserInputError(
            f"{run_dir}: not deployed yet; run `pcmmeta deploy --run {run_dir}` first (or, with a chip of your own, `pcmmeta import-chip MEASURED.csv --run {run_dir}`)"
        )
    return DeployedRun(run_dir, trained.experiment, trained.network, load_array(path, trained.network))


def load_adapted_array(run: DeployedRun, adapted: Path) -> tuple[Path, DeployedArray]:
    """An adapted array of the run (`adapted-*.eqx`): `adapted` as given if it exists or is
    absolute, else in the run directory; a missing one is a `UserInputError` naming `--adapted`
    and the run's adapted arrays."""
    path = adapted if adapted.is_absolute() or adapted.exists() else run.run_dir / adapted
    if not path.is_file():
        names = sorted(p.name for p in run.run_dir.glob("adapted-*.eqx"))
        raise UserInputError(
            f"--adapted: {path}: no such file; the run's adapted arrays are {', '.join(names) or 'none yet'}"
        )
    return path, load_array(path, run.network)
