"""Programming methods judged by the network they deploy: `deploy --compare` and
`deploy --method network-aware` (docs/programming.md, "Programming that knows the network").

- `plan_network_aware_for`: the network-aware method for a trained run. Sensitivities come from
  the validation split's tasks (the test split is never used to choose), the budget is a
  fraction of plain write-verify's expected total device time on the run's trained
  conductances (simulated on the device model).
- `compare_programming`: every method deploys the run with several programming seeds; each
  deployment reports the device-level figures, the total device time (every device in turn)
  and the chip time (row-parallel), and the held-out metric on the test split at each time,
  deployed and after the inner adaptation (the same tasks and reads for every method and seed:
  `chip.drift_results`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import numpy as np

from pcmmeta.core.networks import AbstractNetwork
from pcmmeta.core.programming import AbstractProgrammingMethod, ProgrammingCost, WriteVerify
from pcmmeta.core.programming.compare import MethodFigures
from pcmmeta.core.programming.cost import counts_time
from pcmmeta.core.programming.network_aware import NetworkAwareProgramming, lowered_pair, plan_network_aware
from pcmmeta.core.programming.sensitivity import conductance_sensitivity
from pcmmeta.core.programming.single_shot import single_shot
from pcmmeta.core.seeds import seed_key
from pcmmeta.errors import UserInputError
from pcmmeta.experiment.chip import deploy, drift_results, drift_tasks
from pcmmeta.experiment.train import held_out_tasks

#: The name `deploy --method` gives the network-aware method.
NETWORK_AWARE = NetworkAwareProgramming.name
#: Conditions of the comparison: (name, adapt on chip, drift compensation).
METRIC_CONDITIONS = (("deployed", False, False), ("adapted", True, False))
#: Validation tasks the sensitivities are averaged over.
SENSITIVITY_TASKS = 32
#: Simulations per device behind the plan's expectations.
PLAN_DRAWS = 4
#: Simulations of plain write-verify behind the budget's reference time (a sum over every
#: device: two draws agree to a fraction of a per cent).
REFERENCE_DRAWS = 2


@dataclasses.dataclass
class NetworkAwarePlan:
    """What the plan was made from, for the report."""

    budget_fraction: float  # of plain write-verify's expected total device time
    budget_s: float
    write_verify_expected_s: float  # plain write-verify (the same tolerance, 100 pulses) on the trained targets
    blind_s: float  # every device blind: what the budget must cover first
    sensitivity_per_layer: dict[str, float]  # mean s_i per layer
    lowered: list[str]
    tolerance_uS: float  # of the tightly verified devices
    loose_tolerance_uS: float  # of the loosely verified ones
    queued_tight: int  # devices in the verification order, to each tolerance (verified while the budget allows)
    queued_loose: int


def plan_network_aware_for(
    exp,
    network: AbstractNetwork,
    budget_fraction: float,
    tolerance: float = 0.5,
    max_pulses: int = 100,
    cost: ProgrammingCost = ProgrammingCost(),
    seed: int = 0,
    lower_body: bool = True,
    loose_tolerance: float | None = None,
) -> tuple[NetworkAwareProgramming, NetworkAwarePlan]:
    """The network-aware method for this trained network (module docstring; `lower_body`: the
    body's pairs lowered to the same weights; `loose_tolerance`: its second tier, µS, default
    `network_aware.LOOSE_FACTOR` × `tolerance`); a budget that does not cover blind programming
    is a `UserInputError` naming `--budget`."""
    key = seed_key(seed)
    names = network.layer_names
    device = exp.meta.device
    # the validation split's own tasks and chip noise (`eval.validation_seed`): never the test
    # split's, which the comparison scores on (for families whose splits share one
    # distribution, the same seed would draw the very same tasks)
    tasks, chip_key = held_out_tasks(exp, SENSITIVITY_TASKS, split="validation")
    sensitivity = jax.jit(lambda n, k, t: conductance_sensitivity(n, k, t, exp.validation_family, exp.meta))(
        network, chip_key, tasks
    )
    lowered = tuple(n for n in names if n not in network.head) if lower_body else ()
    layers = {n: lowered_pair(network.layers[n], device.g_min) if n in lowered else network.layers[n] for n in names}
    flat = np.concatenate([np.asarray(layers[n]).ravel() for n in names])
    trained = np.concatenate([np.asarray(network.layers[n]).ravel() for n in names])
    flat_s = np.concatenate([np.asarray(sensitivity[n]).ravel() for n in names])
    reference = WriteVerify(tolerance, 100)
    reference_s = float(
        np.mean(
            [
                np.sum(np.asarray(counts_time(cost, reference.program(k, device, trained)), np.float64))
                for k in jax.random.split(jax.random.fold_in(key, 2), REFERENCE_DRAWS)
            ]
        )
    )
    budget_s = budget_fraction * reference_s
    try:
        method = plan_network_aware(
            jax.random.fold_in(key, 3),
            device,
            flat,
            flat_s,
            budget_s,
            tolerance,
            max_pulses,
            cost,
            lowered,
            PLAN_DRAWS,
            loose_tolerance,
        )
    except ValueError as err:
        raise UserInputError(
            f"--budget {budget_fraction:g} (× write-verify's {reference_s * 1e6:.4g} µs): {err}; raise --budget"
        ) from None
    blind = float(np.sum(np.asarray(counts_time(cost, single_shot(key, device, flat)), np.float64)))
    plan = NetworkAwarePlan(
        budget_fraction,
        budget_s,
        reference_s,
        blind,
        {n: float(np.mean(np.asarray(sensitivity[n]))) for n in names},
        list(lowered),
        tolerance,
        method.loose_uS,
        int(np.sum(~np.asarray(method.loose))),
        int(np.sum(np.asarray(method.loose))),
    )
    return method, plan


@dataclasses.dataclass
class MethodComparison:
    """One method over the programming seeds. Times in s (sums over the network's devices),
    `metric[condition][hours]` = {"mean", "sem"} of the held-out metric."""

    method: str
    programming_time_s: float  # total device time, mean over seeds
    chip_time_s: float  # row-parallel, mean over seeds
    metric: dict[str, dict[str, dict[str, float]]]
    seeds: list[int]
    figures: MethodFigures  # device level, the first seed's deployment
    programming_time_s_per_seed: list[float]
    chip_time_s_per_seed: list[float]


def hours_key(h: float) -> str:
    """ "1", "720", "0.5": the JSON key of a time in hours."""
    return f"{h:g}"


def compare_programming(
    exp,
    network: AbstractNetwork,
    methods: Sequence[AbstractProgrammingMethod],
    seeds: Sequence[int] = (0, 1, 2),
    hours: Sequence[float] = (1.0, 720.0),
    n_tasks: int = 100,
    tolerance: float = 0.5,
    cost: ProgrammingCost = ProgrammingCost(),
    eval_seed: int = 0,
    progress: Callable[[], None] | None = None,
) -> list[MethodComparison]:
    """Every method deploys the network once per programming seed; the metric on the test
    split's tasks at each time, deployed and adapted. For each method and condition, the
    per-task metric is averaged over the seeds and reported as mean ± s.e. over the tasks."""
    tasks = drift_tasks(exp, n_tasks, eval_seed)
    metric = exp.family.metric
    out = []
    for method in methods:
        per_seed: dict[tuple[str, float], list[np.ndarray]] = {}
        times, chip_times, first = [], [], None
        for seed in seeds:
            array, report, _ = deploy(seed_key(seed), network, exp.meta.device, method, tolerance, cost)
            if first is None:  # the device-level figures of the first seed's deployment
                first = MethodFigures(**{f.name: getattr(report, f.name) for f in dataclasses.fields(MethodFigures)})
            times.append(report.programming_time_s)
            chip_times.append(report.chip_time_s)
            results = drift_results(
                exp, network, array, tasks, hours, exp.meta.rule.steps, eval_seed, METRIC_CONDITIONS
            )
            for h, name, res in results:
                per_seed.setdefault((name, h), []).append(res.metrics[metric][:, -1])
            if progress:
                progress()
        table: dict[str, dict[str, dict[str, float]]] = {}
        for (name, h), values in per_seed.items():
            per_task = np.mean(np.stack(values), axis=0)
            sem = float(np.std(per_task, ddof=1) / np.sqrt(per_task.size)) if per_task.size > 1 else 0.0
            table.setdefault(name, {})[hours_key(h)] = {"mean": float(per_task.mean()), "sem": sem}
        out.append(
            MethodComparison(
                method.name,
                float(np.mean(times)),
                float(np.mean(chip_times)),
                table,
                list(seeds),
                first,
                times,
                chip_times,
            )
        )
    return out


def comparison_json(comparisons: Sequence[MethodComparison]) -> list[dict]:
    """The `methods` list of `deploy --compare --json`: per method `method`,
    `programming_time_s`, `chip_time_s`, `metric` and the device-level figures."""
    return [
        {
            "method": c.method,
            "programming_time_s": c.programming_time_s,
            "chip_time_s": c.chip_time_s,
            "metric": c.metric,
            "seeds": c.seeds,
            "programming_time_s_per_seed": c.programming_time_s_per_seed,
            "chip_time_s_per_seed": c.chip_time_s_per_seed,
            **{k: v for k, v in dataclasses.asdict(c.figures).items() if k != "method"},
        }
        for c in comparisons
    ]
