"""`deploy` as a service: program a trained run's conductances with one method and record the
array in the run, or compare every method on the network's held-out metric.

- `deploy_run`: the method by name (network-aware planned for the run first), the array saved
  as `deployed.eqx`, the report as `deploy.json`; returns a `Deployment`.
- `compare_run`: every method, several programming seeds, the held-out metric at each time
  (`programming_comparison.compare_programming`); the result goes to
  `programming-comparison.json` for `pcmmeta report`, and is returned as a `ProgrammingComparison`.

A learned method needs its policy (`pcmmeta.io.policy_file.obtain_policy`): the caller obtains
it, so that training one on first use can show its own progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np

from pcmmeta.core.compatibility import check_programming
from pcmmeta.core.programming import (
    PROGRAMMING_METHODS,
    AbstractProgrammingMethod,
    ProgrammingCost,
    ProgrammingPolicy,
    make_method,
)
from pcmmeta.core.programming.network_aware import NetworkAwareProgramming
from pcmmeta.core.seeds import seed_key
from pcmmeta.errors import UserInputError
from pcmmeta.experiment.chip import DeployReport, deploy, save_array
from pcmmeta.experiment.programming_comparison import (
    NETWORK_AWARE,
    MethodComparison,
    NetworkAwarePlan,
    compare_programming,
    comparison_json,
    plan_network_aware_for,
)
from pcmmeta.experiment.run_access import TrainedRun
from pcmmeta.io.runs import write_json
from pcmmeta.io.writable import check_folder_writable
from pcmmeta.runtime import interrupts

#: Every name `deploy --method` takes, in the order `--compare` lists them.
METHOD_NAMES: tuple[str, ...] = (*PROGRAMMING_METHODS, NETWORK_AWARE)
#: `--budget` when none is given: a tenth of plain write-verify's expected device time.
DEFAULT_BUDGET = 0.1

#: Shows what a long stage is doing ("planning…", "programming…"): a context manager per stage.
Stage = Callable[[str], AbstractContextManager]


def _quiet(_: str) -> AbstractContextManager:
    return contextlib.nullcontext()


def _method_class(name: str) -> type[AbstractProgrammingMethod]:
    return NetworkAwareProgramming if name == NETWORK_AWARE else PROGRAMMING_METHODS[name]


def check_method_name(name: str) -> None:
    """A `UserInputError` naming `--method` unless `name` is a method `deploy` knows."""
    if name not in METHOD_NAMES:
        raise UserInputError(f"--method: must be {', '.join(METHOD_NAMES)}, got {name!r}")


def check_deployable(run: TrainedRun, method: str | None) -> None:
    """What `deploy_run` (`method`) or `compare_run` (`method` None: every method) would refuse,
    checked before any work, a learned policy's training included: a folder where
    `deployed.eqx` belongs, a run folder that cannot be written, a method the device family
    cannot run."""
    if method is not None:
        check_method_name(method)
        path = run.run_dir / "deployed.eqx"
        if path.is_dir():
            raise UserInputError(f"{path}: is a folder where the deployed array belongs (a damaged run?); remove it")
    check_folder_writable(run.run_dir)  # the array, deploy.json or programming-comparison.json go there
    for name in METHOD_NAMES if method is None else (method,):
        check_programming(_method_class(name), run.experiment.meta.device)


@dataclasses.dataclass
class Deployment:
    """What `deploy_run` programmed and wrote. `arrays`: per device, in the network's layer
    order, the `target` and `programmed` conductances (µS) and the `pulses` applied."""

    run_dir: Path
    method: str
    seed: int
    report: DeployReport
    plan: NetworkAwarePlan | None
    arrays: dict[str, np.ndarray]
    array_path: Path
    record_path: Path

    def to_json(self) -> dict:
        """The body of `deploy.json` (and of `deploy --json`)."""
        body = {"run_dir": str(self.run_dir), "seed": self.seed, **dataclasses.asdict(self.report)}
        if self.plan is not None:
            body["plan"] = dataclasses.asdict(self.plan)
        return body


def deploy_run(
    run: TrainedRun,
    method: str,
    *,
    tolerance: float = 0.5,
    max_pulses: int = 100,
    cost: ProgrammingCost = ProgrammingCost(),
    seed: int = 0,
    budget: float = DEFAULT_BUDGET,
    policy: ProgrammingPolicy | None = None,
    plot: Path | None = None,
    stage: Stage = _quiet,
) -> Deployment:
    """Program every device of the run with `method` (a name of `METHOD_NAMES`; `learned` needs
    `policy`, network-aware spends at most `budget` × write-verify's expected time), save the
    array as the run's `deployed.eqx` and the report as `deploy.json`, and draw `plot` if given.
    A damaged `deployed.eqx` (a folder where the file belongs) is refused before the work."""
    check_deployable(run, method)  # before planning or programming
    path = run.run_dir / "deployed.eqx"
    exp, network = run.experiment, run.network
    plan = None
    programming: AbstractProgrammingMethod
    if method == NETWORK_AWARE:
        with stage("planning network-aware programming (sensitivities on validation tasks)…"):
            programming, plan = plan_network_aware_for(exp, network, budget, tolerance, max_pulses, cost, seed)
    else:
        programming = make_method(method, tolerance, max_pulses, policy)
    with stage(f"programming {network.n_devices():,} devices ({method})…"):
        array, report, arrays = deploy(seed_key(seed), network, exp.meta.device, programming, tolerance, cost)
    save_array(path, array)
    interrupts.on_interrupt(lambda: f"{path} written, deploy.json not")
    deployment = Deployment(run.run_dir, method, seed, report, plan, arrays, path, run.run_dir / "deploy.json")
    write_json(deployment.record_path, deployment.to_json())
    if plot is not None:
        from pcmmeta.io.plots import plot_deployment  # matplotlib only when a figure is asked for

        plot_deployment(
            arrays["target"],
            arrays["programmed"],
            arrays["pulses"],
            tolerance,
            plot,
            f"{method}: {report.n_devices} devices",
        )
    return deployment


@dataclasses.dataclass
class ProgrammingComparison:
    """What `compare_run` measured; `methods` in `METHOD_NAMES` order (plain write-verify first)."""

    run_dir: Path
    seeds: list[int]
    tasks: int
    hours: list[float]
    metric: str
    cost: ProgrammingCost
    plan: NetworkAwarePlan
    methods: list[MethodComparison]
    device_name: str

    def to_json(self) -> dict:
        """The body of `programming-comparison.json` (and of `deploy --compare --json`)."""
        return {
            "run_dir": str(self.run_dir),
            "seeds": self.seeds,
            "tasks": self.tasks,
            "hours": self.hours,
            "metric": self.metric,
            "split": "test",
            "cost": self.cost.to_dict(),
            "plan": dataclasses.asdict(self.plan),
            "methods": comparison_json(self.methods),
        }


def compare_run(
    run: TrainedRun,
    policy: ProgrammingPolicy,
    *,
    tolerance: float = 0.5,
    max_pulses: int = 100,
    cost: ProgrammingCost = ProgrammingCost(),
    seeds: Sequence[int] = (0, 1, 2),
    hours: Sequence[float] = (1.0, 720.0),
    tasks: int = 100,
    budget: float = DEFAULT_BUDGET,
    plot: Path | None = None,
    stage: Stage = _quiet,
    progress: Callable[[], None] | None = None,
) -> ProgrammingComparison:
    """Deploy the run with every method once per programming seed and measure the held-out
    metric on `tasks` test tasks at each time, deployed and adapted (network-aware planned with
    the first seed). Writes `programming-comparison.json` into the run (no array), and `plot`
    (metric against both programming times) if given; `progress` is called after each
    deployment (methods × seeds)."""
    if not seeds or not hours or tasks < 2:
        raise UserInputError(
            f"compare_run: give at least one programming seed and one time, and 2 or more tasks; got seeds {list(seeds)}, hours {list(hours)}, tasks {tasks}"
        )
    check_deployable(run, None)
    exp, network = run.experiment, run.network
    with stage("planning network-aware programming (sensitivities on validation tasks)…"):
        network_aware, plan = plan_network_aware_for(exp, network, budget, tolerance, max_pulses, cost, seeds[0])
    methods = [make_method(name, tolerance, max_pulses, policy) for name in PROGRAMMING_METHODS] + [network_aware]
    comparisons = compare_programming(exp, network, methods, seeds, hours, tasks, tolerance, cost, progress=progress)
    result = ProgrammingComparison(
        run.run_dir,
        list(seeds),
        tasks,
        list(hours),
        exp.family.metric,
        cost,
        plan,
        comparisons,
        exp.meta.device.name,
    )
    body = result.to_json()
    write_json(run.run_dir / "programming-comparison.json", body)  # for `pcmmeta report`
    if plot is not None:
        from pcmmeta.io.plots import plot_network_programming  # matplotlib only when a figure is asked for

        plot_network_programming(
            body["methods"],
            plot,
            f"{run.run_dir.name}: held-out {result.metric}, {len(seeds)} programming seeds",
            result.metric,
        )
    return result
