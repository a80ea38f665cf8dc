"""The chip after training: deploy a run's conductances, adapt on chip, evaluate under drift.

Works for every network: the deployed array holds every device of every named layer (pairs on
axis 0). Times on the deployed chip are seconds since the end of deployment (t = 0). A reference
read at t = 0 serves global drift compensation, one scalar per layer: α_l(t) = mean|W_ref p| /
mean|W_t p| for a fixed probe input p, as analog-AI toolkits do (IBM aihwkit's global drift
compensation).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.clock import ChipClock
from pcmmeta.core.crossbar import layer_keys, pair_weights
from pcmmeta.core.devices import AbstractPCMDevice, DeviceState
from pcmmeta.core.maml import ChipState, MetaConfig, TaskResult, adapt_chips, head_outputs, results_of
from pcmmeta.core.modes import PCM, NoAdapt
from pcmmeta.core.networks import AbstractNetwork
from pcmmeta.core.programming import AbstractProgrammingMethod, ProgrammingCost, ProgramResult
from pcmmeta.core.programming.compare import MethodFigures, devices_of, figures_of
from pcmmeta.core.programming.cost import counts_time, row_parallel_time
from pcmmeta.core.seeds import seed_key
from pcmmeta.core.tasks import AbstractTaskFamily, TaskBatch, sample_compiled
from pcmmeta.experiment.train import mean_sem
from pcmmeta.io.runs import atomic_write_unique, write_json
from pcmmeta.io.serial import eqx_bytes, load_eqx, save_eqx
from pcmmeta.io.support_file import read_support
from pcmmeta.io.writable import check_folder_writable
from pcmmeta.runtime.compile_options import device_array_options

#: Fixed ±1 probe vectors per layer whose responses measure a layer's weight scale.
PROBES = 32


class DeployedArray(eqx.Module):
    """Every device of a deployed network; t = 0 is the end of deployment."""

    layers: dict[str, DeviceState]  # per layer, pairs on axis 0
    reference: dict[str, Float[Array, " probes"]]  # `probe_response` per layer at the reference read (t = 0)


def probe_bank(layer_index: int, n_inputs: int) -> Float[Array, "probes inputs"]:
    """The `PROBES` fixed ±1 probe vectors of the layer at `layer_index` (the same on every call)."""
    return jnp.where(jax.random.bernoulli(jax.random.key(1000 + layer_index), 0.5, (PROBES, n_inputs)), 1.0, -1.0)


def probe_response(weights: dict[str, Array], names: tuple[str, ...]) -> dict[str, Float[Array, " probes"]]:
    """Per layer, mean over its outputs of |p_k·W| for `PROBES` fixed ±1 probes p_k over the
    layer's inputs (axis 0).

    Many probes, not one: for a layer with a single output (the sinusoid's readout), one probe's
    response is a single sum of ± weights, which can cancel to almost nothing, and the ratio of
    two such reads — the drift compensation — then has no precision (a 50 % error was seen).
    """
    out = {}
    for i, name in enumerate(names):
        w = weights[name]
        w2 = w.reshape(w.shape[0], -1) if w.ndim > 1 else w[:, None]
        out[name] = jnp.mean(jnp.abs(probe_bank(i, w2.shape[0]) @ w2), axis=1)
    return out


def response_ratio(now: dict[str, Array], reference: dict[str, Array]) -> dict[str, Float[Array, ""]]:
    """Per layer, how much larger the weights' scale is in `now` than in `reference` (both
    `probe_response`s): the ratio of the probes' total responses."""
    return {n: jnp.sum(now[n]) / jnp.sum(reference[n]) for n in now}


def read_weights(
    key: PRNGKeyArray, array: DeployedArray, t: float | Array, network: AbstractNetwork, device: AbstractPCMDevice
) -> dict[str, Array]:
    """Weights of all layers from one read of the chip at time t (s since deployment)."""
    keys = layer_keys(key, network.layer_names)
    scales = network.scales
    return {n: pair_weights(device.read(keys[n], array.layers[n], t), device, scales[n]) for n in network.layer_names}


@dataclasses.dataclass
class DeployReport(MethodFigures):
    """`programming.compare.figures_of` on every device of the network, plus what deploy adds."""

    max_pulses: int | None
    pulses_max: int
    rms_weight_error: float  # per layer scale, pooled: error/(g_max − g_min)·scale
    max_weight_error: float
    cost: dict  # the cost model: durations (s) and energies (pJ) per SET, RESET, read
    deploy_time_s: float
    layers: dict  # per layer: devices and RMS error, µS
    programming_time_s: float  # total device time, every device in turn (the cost model)
    chip_time_s: float  # row-parallel: each crossbar row at once, costing its slowest device


def deploy(
    key: PRNGKeyArray,
    network: AbstractNetwork,
    device: AbstractPCMDevice,
    method: AbstractProgrammingMethod,
    tolerance: float = 0.5,
    cost: ProgrammingCost = ProgrammingCost(),
) -> tuple[DeployedArray, DeployReport, dict]:
    """Program every device of every layer to the trained conductances (or others with the same
    weights that the method chooses, `method.conductances`), all layers at once. `tolerance`
    (µS) is what the report counts as "within" for any method."""
    names = network.layer_names
    chosen = method.conductances({n: network.layers[n] for n in names}, device)
    targets = [np.asarray(chosen[n]) for n in names]
    flat = np.concatenate([t.ravel() for t in targets])
    k_prog, k_ref = jax.random.split(key)
    program = jax.jit(lambda k, g: method.program(k, device, g), compiler_options=device_array_options())
    compiled = program.lower(k_prog, flat).compile()  # timed without compilation
    flat_on_device = jax.block_until_ready(jax.device_put(flat))  # nor the copy to the device
    t0 = time.perf_counter()
    result: ProgramResult = compiled(k_prog, flat_on_device)
    jax.block_until_ready(result.state.g_prog)
    elapsed = time.perf_counter() - t0
    array = _deployed_array(k_ref, result.state, result.t_end, network, device)
    result = jax.tree.map(np.asarray, result)  # the figures below in NumPy: no program per op
    target = flat
    budget = method.budget
    figures = figures_of(method.name, result, target, tolerance, cost, elapsed, budget)
    error = result.state.g_prog - target
    scales = np.concatenate([np.full(t.size, network.scales[n]) for n, t in zip(names, targets)])
    w_err = error / (device.g_max - device.g_min) * scales
    pulses = result.pulses
    per_layer, start = {}, 0
    for n, t in zip(names, targets):
        layer = figures_of(
            method.name,
            devices_of(result, start, start + t.size),
            target[start : start + t.size],
            tolerance,
            cost,
            elapsed,
            budget,
        )
        per_layer[n] = {"devices": layer.n_devices, "rms_error_uS": layer.rms_error_uS}
        start += t.size
    report = DeployReport(
        **dataclasses.asdict(figures),
        max_pulses=budget,
        pulses_max=int(pulses.max()),
        rms_weight_error=float(np.sqrt(np.mean(w_err**2))),
        max_weight_error=float(np.abs(w_err).max()),
        cost=cost.to_dict(),
        deploy_time_s=elapsed,
        layers=per_layer,
        programming_time_s=float(np.sum(np.asarray(counts_time(cost, result), np.float64))),
        chip_time_s=row_parallel_time(np.asarray(counts_time(cost, result)), [t.shape for t in targets]),
    )
    arrays = {"target": flat, "programmed": result.state.g_prog, "pulses": pulses}
    return array, report, arrays


# One program: op by op, splitting the layers and the reference read compiled about a hundred
# tiny programs on every deploy (~2 s; docs/speed.md).
@eqx.filter_jit
def _deployed_array(
    key: PRNGKeyArray, state: DeviceState, t_end: Float[Array, ""], network: AbstractNetwork, device: AbstractPCMDevice
) -> DeployedArray:
    """The programmed devices per layer, with every clock shifted so that deployment ends at
    t = 0, and the reference read that drift compensation compares later reads with."""
    shifted = DeviceState(state.g_prog, state.t_prog - t_end, state.nu, state.n_set)
    states, start = {}, 0
    for n in network.layer_names:
        shape = network.layers[n].shape
        size = int(np.prod(shape))
        states[n] = jax.tree.map(lambda a, lo=start, hi=start + size, shape=shape: a[lo:hi].reshape(shape), shifted)
        start += size
    return referenced(key, states, network, device)


def referenced(
    key: PRNGKeyArray, states: dict[str, DeviceState], network: AbstractNetwork, device: AbstractPCMDevice
) -> DeployedArray:
    """The deployed array of these device states, with the reference read (t = 0) that drift
    compensation compares later reads with."""
    unreferenced = DeployedArray(states, {n: jnp.ones((PROBES,)) for n in network.layer_names})
    return DeployedArray(
        states, probe_response(read_weights(key, unreferenced, 0.0, network, device), network.layer_names)
    )


def array_like(network: AbstractNetwork) -> DeployedArray:
    def state(g):
        return DeviceState(jnp.zeros(g.shape), jnp.zeros(g.shape), jnp.zeros(g.shape), jnp.zeros(g.shape, jnp.int32))

    return DeployedArray(
        {n: state(g) for n, g in network.layers.items()}, {n: jnp.zeros((PROBES,)) for n in network.layers}
    )


def save_array(path: Path, array: DeployedArray) -> None:
    save_eqx(path, array)


def load_array(path: Path, network: AbstractNetwork) -> DeployedArray:
    like = eqx.filter_eval_shape(array_like, network)  # shapes only: no zeros computed (nor compiled)
    return load_eqx(path, like, "deployed array", f"deploy again with `pcmmeta deploy --run {Path(path).parent}`")


# ------------------------------------------------------------------------ on the chip
def _on_chip(
    key,
    array: DeployedArray,
    tasks: TaskBatch,
    family,
    network: AbstractNetwork,
    meta: MetaConfig,
    t,
    adapt: bool,
    steps: int,
    compensate: bool,
):
    """Every task on the same deployed chip at time t: body reads, head adaptation."""
    clock = ChipClock.on_deployed_chip(t, meta.clock.t_wait, max(steps, 1))
    cfg = meta.with_clock(clock, PCM() if adapt else NoAdapt())
    names, body = network.layer_names, network.body

    def one_chip(k):
        k_s, k_q, k_c, k_out = jax.random.split(k, 4)
        w_s = read_weights(k_s, array, clock.t_read, network, meta.device)
        w_q = read_weights(k_q, array, clock.t_query, network, meta.device)
        if compensate:
            now = probe_response(read_weights(k_c, array, clock.t_read, network, meta.device), names)
            alpha = {n: 1.0 / r for n, r in response_ratio(now, array.reference).items()}
        else:
            alpha = {n: jnp.ones(()) for n in names}
        weights = {n: jnp.stack([w_s[n], w_q[n]]) * alpha[n] for n in body}
        return ChipState(
            weights, {n: array.layers[n] for n in network.head}, k_out, {n: alpha[n] for n in network.head}
        )

    chips = jax.vmap(one_chip)(jax.random.split(key, tasks.n_tasks))
    features, adaptations = adapt_chips(network, chips, tasks, family, cfg)
    return chips, features, adaptations


@eqx.filter_jit
def run_on_chip(
    key: PRNGKeyArray,
    array: DeployedArray,
    tasks: TaskBatch,
    family: AbstractTaskFamily,
    network: AbstractNetwork,
    meta: MetaConfig,
    t: float | Array,
    adapt: bool = True,
    steps: int = 1,
    compensate: bool = False,
) -> tuple[TaskResult, dict[str, DeviceState]]:
    """Every task on the same deployed chip at time t (s since deployment; each task its own
    read noise): the family's metrics before and after `steps` inner steps of the recipe's
    rule on the head (if `adapt`; otherwise "after" is the network as read at t), with or
    without global drift compensation. Also the head's devices afterwards, per task."""
    _, features, adaptations = _on_chip(
        key, array, tasks, family, network, meta, t, adapt and steps > 0, steps, compensate
    )
    r = results_of(network, features, tasks, adaptations, family)
    if not (adapt and steps > 0):
        r = TaskResult(
            r.loss_before, r.loss_before, {k: v[:, :1] for k, v in r.metrics.items()}, r.pulses, r.devices_pulsed
        )
    return r, adaptations.state


@eqx.filter_jit
def adapt_on_chip(key, array, tasks, family, network, meta, t, steps: int, x_plot):
    """`run_on_chip` with adaptation, in one pass that also returns the head's outputs on the
    query set and at raw inputs `x_plot` (tasks, points, …) after 0 … steps inner steps."""
    chips, features, adaptations = _on_chip(key, array, tasks, family, network, meta, t, True, steps, False)
    results = results_of(network, features, tasks, adaptations, family)
    query = jnp.stack([jax.vmap(network.head_output)(w, features) for w in adaptations.weights], axis=1)
    return results, adaptations.state, query, head_outputs(network, chips, adaptations, family, x_plot)


#: drift-eval's conditions: (name, adapt, compensate).
CONDITIONS = (
    ("deployed", False, False),
    ("adapted", True, False),
    ("drift compensation", False, True),
    ("compensation + adapted", True, True),
)


def drift_tasks(exp, n_tasks: int, seed: int) -> TaskBatch:
    """The held-out tasks `drift_table` evaluates for this seed (each time, each condition)."""
    return sample_compiled(exp.eval_family, jax.random.fold_in(seed_key(seed), 0), n_tasks)


def drift_results(
    exp,
    network: AbstractNetwork,
    array: DeployedArray,
    tasks: TaskBatch,
    hours: Sequence[float],
    steps: int,
    seed: int,
    conditions=CONDITIONS,
) -> Iterator[tuple[float, str, TaskResult]]:
    """(hours, condition, per-task results in NumPy) at each time (ascending) for each (name,
    adapt, compensate) condition, every one with the same read-noise key: differences come
    from drift, adaptation and compensation, not from sampling."""
    read_key = jax.random.fold_in(seed_key(seed), 1)
    for h in sorted(hours):
        for name, adapt, compensate in conditions:
            res, _ = run_on_chip(
                read_key,
                array,
                tasks,
                exp.eval_family,
                network,
                exp.meta,
                jnp.asarray(h * 3600.0),
                adapt,
                steps,
                compensate,
            )
            yield h, name, jax.tree.map(np.asarray, res)


def drift_table(
    exp,
    network: AbstractNetwork,
    array: DeployedArray,
    hours: list[float],
    n_tasks: int,
    steps: int,
    seed: int,
    conditions=CONDITIONS,
    progress=None,
    tasks: TaskBatch | None = None,
) -> list[dict]:
    """Held-out metrics at each time for each (name, adapt, compensate) condition, on
    `drift_tasks` (or `tasks`, drawn by it already) with `drift_results`' pairing (the same
    tasks and reads everywhere)."""
    metric = exp.eval_family.metric
    if tasks is None:
        tasks = drift_tasks(exp, n_tasks, seed)
    rows = []
    for h, name, res in drift_results(exp, network, array, tasks, hours, steps, seed, conditions):
        row = {"hours": h, "condition": name}
        for key, per_step in res.metrics.items():
            row[key] = float(per_step[:, -1].mean())
        row["sem"] = mean_sem(res.metrics[metric][:, -1])[1]
        row["pulses_per_task"] = float(res.pulses.mean())
        rows.append(row)
        if progress:
            progress()
    return rows


# ---------------------------------------------------------------------------- adapt
def spike_raster(
    network: AbstractNetwork, array: DeployedArray, device: AbstractPCMDevice, family, task: TaskBatch, t: float
) -> Array:
    """The network's spikes (time × neurons) on the task's first query input, with every layer
    at its drifted conductance at t (no read noise: what the array holds)."""
    scales = network.scales
    w = {n: pair_weights(device.drifted(array.layers[n], t), device, scales[n]) for n in network.layer_names}
    features = network.features({n: w[n] for n in network.body}, family.encode(task.x_query[0]))
    return network.spike_raster({n: w[n] for n in network.head}, features)


def adaptation_task(
    exp, task_seed: int, shots: int | None, support: Path | None
) -> tuple[AbstractTaskFamily, TaskBatch]:
    """The held-out family (with `shots` if given) and the one task to adapt to: a user's
    `support` file or folder, or sampled with `task_seed`."""
    family = exp.eval_family
    if shots is not None:
        family = family.with_shots(shots)
    # tasks and chip noise from separate streams (equal seeds must not give equal draws)
    if support is not None:
        return family, jax.tree.map(np.asarray, read_support(family, support))  # in NumPy: no program per op
    return family, sample_compiled(family, jax.random.fold_in(seed_key(task_seed), 0), 1)


@dataclasses.dataclass
class AdaptReport:
    adapted_array: Path
    at_hours: float
    steps: int
    task: dict  # seed and family parameters, or the support file
    shots: int  # K: support examples per class for classification
    support_examples: int  # in all (N·K for N-way classification)
    metric: str
    set_name: str  # "query" (a sampled task) or "support" (a user's file: the query is the support)
    before: dict[str, float]  # the family's metrics before adaptation
    after: dict[str, float]
    per_step: list[float]  # the primary metric after 0 … steps inner steps
    breakdown: dict  # family-specific detail (per-class accuracy)
    devices_pulsed: int
    total_pulses: int
    energy_pJ: float
    energy_per_pulse_pJ: float
    seed: int

    def to_json(self) -> dict:
        body = dataclasses.asdict(self)
        body["adapted_array"] = str(self.adapted_array)
        return body


def adapt(
    run_dir: Path,
    exp,
    network: AbstractNetwork,
    array: DeployedArray,
    *,
    steps: int | None = None,
    at_hours: float = 1.0,
    task_seed: int = 0,
    shots: int | None = None,
    support: Path | None = None,
    energy_pj: float = ProgrammingCost().set_pj,
    seed: int = 0,
    plot: Path | None = None,
) -> AdaptReport:
    """Adapt the deployed array to one new task — sampled from the held-out family with
    `task_seed`, or read from a user's `support` file or folder — at `at_hours` after deployment,
    with the recipe's inner rule (`steps` overrides its step count). Saves the adapted array
    beside `deployed.eqx` under a new name (never overwriting), the report beside it (.json),
    and returns the report."""
    check_folder_writable(run_dir)  # the adapted array goes there: fail before the work
    family, task = adaptation_task(exp, task_seed, shots, support)
    steps = exp.meta.rule.steps if steps is None else steps
    t = at_hours * 3600.0
    key = jax.random.fold_in(seed_key(seed), 1)
    result, head_state, outputs, plot_out = adapt_on_chip(
        key, array, task, family, network, exp.meta, t, steps, family.plot_inputs(task)
    )
    result, outputs = jax.tree.map(np.asarray, (result, outputs))
    new_layers = dict(array.layers)
    new_layers.update({n: jax.tree.map(lambda a: a[0], s) for n, s in head_state.items()})
    stem = (
        f"adapted-task{task_seed}-{at_hours:g}h" if support is None else f"adapted-{Path(support).stem}-{at_hours:g}h"
    )
    out_path = atomic_write_unique(run_dir, stem, ".eqx", eqx_bytes(DeployedArray(new_layers, array.reference)))
    if plot is not None:
        extra = {}
        if network.shows_spikes:  # the figure shows the head's spikes after the update
            extra["raster"] = np.asarray(
                spike_raster(network, DeployedArray(new_layers, array.reference), exp.meta.device, family, task, t)
            )
        from pcmmeta.io.plots import plot_tasks  # matplotlib: only when a figure is drawn

        plot_tasks(
            family.figure(task, np.asarray(plot_out)),
            plot,
            f"on-chip adaptation at {at_hours:g} h ({exp.meta.rule.name}, {steps} step{'' if steps == 1 else 's'})",
            [
                {"step": i, "mean": float(v), "sem": float("nan")}
                for i, v in enumerate(result.metrics[family.metric][0])
            ],
            **extra,
        )
    n_pulses = float(result.pulses[0])
    report = AdaptReport(
        adapted_array=out_path,
        at_hours=at_hours,
        steps=steps,
        task={"support": str(support)} if support is not None else {"seed": task_seed, **family.describe(task, 0)},
        shots=family.shots_of(task),
        support_examples=int(task.x_support.shape[1]),
        metric=family.metric,
        set_name="support" if support is not None else "query",
        before={k: float(v[0, 0]) for k, v in result.metrics.items()},
        after={k: float(v[0, -1]) for k, v in result.metrics.items()},
        per_step=[float(v) for v in result.metrics[family.metric][0]],
        breakdown=family.breakdown(outputs[0, -1], task.y_query[0]),
        devices_pulsed=int(result.devices_pulsed[0]),
        total_pulses=int(n_pulses),
        energy_pJ=n_pulses * energy_pj,
        energy_per_pulse_pJ=energy_pj,
        seed=seed,
    )
    write_json(out_path.with_suffix(".json"), {"run_dir": str(run_dir), **report.to_json()})  # for `pcmmeta report`
    return report
