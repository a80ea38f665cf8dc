"""A lab's chip in the loop, through the exchange files of `pcmmeta.io.chip_exchange`
(docs/chip-bridge.md): export a run's target conductances, import what the lab measured as the
run's deployed array, plan an on-chip adaptation as SET pulses for the lab to apply, and import
the adapted chip's measurement.

A measured device becomes a `DeviceState` the run's device model drifts forward: a device read
at g_meas, t_s after its last programming event, gets a drift exponent ν drawn from the model
(for the measured conductance) and the G_p that the model's drift takes to g_meas at t_s. The
chip's clock is the deployed array's: t = 0 is the end of programming.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.devices import AbstractPCMDevice, DeviceState
from pcmmeta.core.devices.base import where_state
from pcmmeta.core.devices.registry import device_body
from pcmmeta.core.networks import AbstractNetwork
from pcmmeta.core.seeds import seed_key
from pcmmeta.core.tasks import TaskBatch
from pcmmeta.errors import OutputError, UserInputError
from pcmmeta.experiment.chip import DeployedArray, adapt_on_chip, adaptation_task, read_weights, referenced, run_on_chip
from pcmmeta.io import chip_exchange as X
from pcmmeta.io.runs import atomic_write_unique, read_json_file, write_json
from pcmmeta.io.serial import eqx_bytes, save_eqx
from pcmmeta.io.writable import check_folder_writable, check_writable

MANIFEST = "manifest.json"
TARGETS = "targets.csv"


def crossbars(network: AbstractNetwork) -> list[X.CrossbarLayer]:
    """The crossbar of every layer of the network, in its layer order."""
    shapes = {n: tuple(g.shape) for n, g in network.layers.items()}
    return X.crossbar_layers(shapes, network.layer_names, network.head, network.scales)


def trained_digest(network: AbstractNetwork) -> str:
    layers = crossbars(network)
    return X.conductance_digest(layers, {n: np.asarray(network.layers[n]) for n in network.layer_names})


# ------------------------------------------------------------------------------ export
@dataclasses.dataclass
class ExportReport:
    out_dir: Path
    manifest: Path
    targets: Path
    devices: int
    layers: dict[str, dict]  # per layer: rows, cols, role, devices
    tiles: int | None


def export_chip(
    run_dir: Path,
    network: AbstractNetwork,
    device: AbstractPCMDevice,
    out_dir: Path,
    tile: tuple[int, int] | None = None,
) -> ExportReport:
    """Write `manifest.json` and `targets.csv` (the trained conductances) into `out_dir`
    (created if absent; the two files replaced atomically, the targets first)."""
    layers = crossbars(network)
    conductances = {n: np.asarray(network.layers[n]) for n in network.layer_names}
    for name, g in conductances.items():
        if g.min() < device.g_min or g.max() > device.g_max:
            raise UserInputError(
                f"{run_dir}: layer {name} holds conductances outside the device's range [{device.g_min:g}, {device.g_max:g}] µS "
                f"({g.min():.4g} … {g.max():.4g}; a run trained in the ideal mode?): no chip can be programmed to them"
            )
    tiles = X.tiles_of(layers, *tile) if tile else None
    body = X.manifest(
        {"name": run_dir.name, "path": str(run_dir)},
        device_body(device),
        float(device.g_min),
        float(device.g_max),
        layers,
        X.conductance_digest(layers, conductances),
        tiles,
    )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{out_dir}: cannot create the folder: {err.strerror}") from None
    for name in (TARGETS, MANIFEST):  # both or neither: found before either is written
        check_writable(out_dir / name)
    X.write_targets(out_dir / TARGETS, layers, conductances, tile)
    X.write_manifest(out_dir / MANIFEST, body)
    return ExportReport(
        out_dir,
        out_dir / MANIFEST,
        out_dir / TARGETS,
        sum(layer.n_devices for layer in layers),
        {
            layer.name: {"rows": layer.rows, "cols": layer.cols, "role": layer.role, "devices": layer.n_devices}
            for layer in layers
        },
        None if tiles is None else len(tiles),
    )


def check_manifest(path: Path | None, measured: Path, run_dir: Path, network: AbstractNetwork) -> Path | None:
    """The manifest given, or `manifest.json` beside the measurement if there is one, must be
    this run's; returns the path checked (None: none found)."""
    if path is None:
        beside = Path(measured).parent / MANIFEST
        if not beside.is_file():
            return None
        path = beside
    X.check_manifest_matches(path, X.read_manifest(path), run_dir.name, trained_digest(network))
    return path


# ------------------------------------------------------------------------------ measured states
def anchored_state(
    key: PRNGKeyArray,
    device: AbstractPCMDevice,
    g_measured: Float[Array, "..."],
    t_measured: Float[Array, "..."],
    t_prog: Float[Array, "..."],
    n_set: Array,
    nu: Float[Array, "..."] | None = None,
) -> DeviceState:
    """Devices last programmed at `t_prog` (s) and read at g_measured (µS) at `t_measured`: ν as
    given, or drawn from the model for the measured conductance, and G_p such that the model's
    noiseless drift gives g_measured at t_measured (every family's drift scales G_p)."""
    g = jnp.asarray(g_measured, jnp.float32)
    if nu is None:
        nu = device.draw_nu(key, g.shape, g)
    t_prog = jnp.broadcast_to(jnp.asarray(t_prog, jnp.float32), g.shape)
    unit = DeviceState(jnp.ones_like(g), t_prog, nu, jnp.asarray(n_set, jnp.int32))
    factor = device.drifted(unit, jnp.asarray(t_measured, jnp.float32))
    return DeviceState(g / factor, t_prog, nu, jnp.asarray(n_set, jnp.int32))


def plan_name(task_seed: int, support: Path | None) -> str:
    """What names a plan and its adapted arrays: `task<seed>`, or `support-<file stem>`."""
    if support is None:
        return f"task{task_seed}"
    return "support-" + re.sub(r"[^A-Za-z0-9_.-]", "_", Path(support).stem or "folder")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_times(path: Path, table: X.DeviceTable, at_seconds: float | None, default: float) -> float:
    """The read time of a file without `t_s` (`--at-seconds`, else `default`); a file with the
    column and the flag both is ambiguous."""
    if table.times is not None and at_seconds is not None:
        raise UserInputError(
            f"--at-seconds: {path} has a t_s column, which gives every read's time; leave the flag out"
        )
    return default if at_seconds is None else at_seconds


def _times(table: X.DeviceTable, name: str, at_seconds: float) -> np.ndarray:
    if table.times is None:
        return np.full(table.values[name].shape, at_seconds)
    return table.times[name]


def _file_facts(path: Path, table: X.DeviceTable, at_seconds: float, default_from: str = "--at-seconds") -> dict:
    t = [_times(table, n, at_seconds) for n in table.values]
    all_t = np.concatenate([a.ravel() for a in t])
    return {
        "file": str(path),
        "sha256": file_sha256(path),
        "devices": int(sum(v.size for v in table.values.values())),
        "t_s_min": float(all_t.min()),
        "t_s_max": float(all_t.max()),
        "times_from": "the file's t_s column" if table.times is not None else f"{default_from} {at_seconds:g} s",
    }


@dataclasses.dataclass
class ImportReport:
    run_dir: Path
    deployed_array: Path
    measurement: dict
    rms_from_target_uS: float  # measured vs trained conductances, every device
    layers: dict[str, dict]  # per layer: devices, RMS deviation from target (µS)
    replaced_previous: bool


def import_measurement(
    run_dir: Path,
    network: AbstractNetwork,
    device: AbstractPCMDevice,
    measured: Path,
    at_seconds: float | None = None,
    seed: int = 0,
    manifest: Path | None = None,
) -> ImportReport:
    """The lab's measurement of every device after programming becomes the run's deployed array
    (`deployed.eqx`, with `deploy.json` saying it was measured)."""
    manifest_checked = check_manifest(manifest, measured, run_dir, network)
    layers = crossbars(network)
    table = X.read_device_values(measured, layers, "g_uS", optional_time=True)
    at_seconds = _read_times(measured, table, at_seconds, 0.0)
    key = seed_key(seed)
    k_nu, k_ref = jax.random.split(key)
    nu_keys = dict(zip(network.layer_names, jax.random.split(k_nu, len(network.layer_names))))
    states, per_layer, errors = {}, {}, []
    for layer in layers:
        shape = network.layers[layer.name].shape
        g = table.values[layer.name].reshape(shape)
        t = _times(table, layer.name, at_seconds).reshape(shape)
        n_set = device.pulses_to_reach(jnp.asarray(g, jnp.float32))
        states[layer.name] = anchored_state(nu_keys[layer.name], device, g, t, jnp.zeros(shape), n_set)
        deviation = g - np.asarray(network.layers[layer.name])
        errors.append(deviation.ravel())
        per_layer[layer.name] = {
            "devices": layer.n_devices,
            "rms_from_target_uS": float(np.sqrt(np.mean(deviation**2))),
        }
    array = referenced(k_ref, states, network, device)
    path = run_dir / "deployed.eqx"
    replaced = path.exists()
    facts = _file_facts(measured, table, at_seconds)
    if manifest_checked is not None:
        facts["manifest"] = str(manifest_checked)
    rms = float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))
    save_eqx(path, array)
    write_json(
        run_dir / "deploy.json",
        {
            "run_dir": str(run_dir),
            "source": "measured",
            "method": "measured on a chip",
            "measurement": facts,
            "seed": seed,
            "n_devices": facts["devices"],
            "rms_error_uS": rms,
            "layers": per_layer,
        },
    )
    return ImportReport(run_dir, path, facts, rms, per_layer, replaced)


# ------------------------------------------------------------------------------ pulse plans
def _support_as_query(task: TaskBatch) -> TaskBatch:
    return TaskBatch(task.x_support, task.y_support, task.x_support, task.y_support, task.params)


def _metric_without_adaptation(key, array, task, family, network, meta, t) -> dict[str, float]:
    result, _ = run_on_chip(key, array, task, family, network, meta, jnp.asarray(t), False, 1, False)
    return {k: float(np.asarray(v)[0, 0]) for k, v in result.metrics.items()}


@dataclasses.dataclass
class PlanReport:
    plan_csv: Path
    plan_json: Path
    task: dict
    at_hours: float
    steps: int
    metric: str
    support_before: dict[str, float]  # the support set's metrics on the chip as read, before the pulses
    query_before: dict[str, float]
    query_after_simulated: dict[str, float]  # what the device model predicts after the planned pulses
    devices: int  # lines in the plan
    pulses: int


def plan_adaptation(
    run_dir: Path,
    exp,
    network: AbstractNetwork,
    array: DeployedArray,
    plan_csv: Path,
    *,
    steps: int | None = None,
    at_hours: float = 1.0,
    task_seed: int = 0,
    shots: int | None = None,
    support: Path | None = None,
    seed: int = 0,
) -> PlanReport:
    """The SET pulses the recipe's inner rule chooses for one task on the (imported) chip, written
    as a plan for the lab instead of applied; steps after the first read the model's prediction
    of the chip. Writes `plan_csv` and `plan-<name>.json` in the run (`plan_name`: what `import-chip
    --adapted-for` needs, with digests of the plan and of the deployed array it was made for)."""
    check_folder_writable(run_dir)  # the plan's record goes there: fail before the work
    rule = exp.meta.rule
    if not rule.adapts_by_set_pulses:
        raise UserInputError(
            f"--plan: the recipe's inner rule {rule.name} re-programs changed pairs by write-verify (RESET and verify), "
            "which a pulse plan cannot express; plans are for rules that adapt by SET pulses"
        )
    family, task = adaptation_task(exp, task_seed, shots, support)
    steps = rule.steps if steps is None else steps
    t = at_hours * 3600.0
    key = jax.random.fold_in(seed_key(seed), 1)  # adapt's stream: the plan is the pulses adapt applies
    result, head_state, _, _ = adapt_on_chip(
        key, array, task, family, network, exp.meta, t, steps, family.plot_inputs(task)
    )
    result = jax.tree.map(np.asarray, result)
    pulses = {n: np.asarray(head_state[n].n_set[0]) - np.asarray(array.layers[n].n_set) for n in network.head}
    if any((p < 0).any() for p in pulses.values()):  # a rule that RESETs; refused above
        raise UserInputError(f"--plan: the inner rule {rule.name} RESET devices; a pulse plan cannot express that")
    layers = crossbars(network)
    lines = X.write_plan(plan_csv, layers, pulses)
    k_support = jax.random.fold_in(seed_key(seed), 2)
    name = plan_name(task_seed, support)
    report = PlanReport(
        plan_csv=Path(plan_csv).resolve(),
        plan_json=run_dir / f"plan-{name}.json",
        task={"support": str(support)} if support is not None else {"seed": task_seed, **family.describe(task, 0)},
        at_hours=at_hours,
        steps=steps,
        metric=family.metric,
        support_before=_metric_without_adaptation(
            k_support, array, _support_as_query(task), family, network, exp.meta, t
        ),
        query_before={k: float(v[0, 0]) for k, v in result.metrics.items()},
        query_after_simulated={k: float(v[0, -1]) for k, v in result.metrics.items()},
        devices=lines,
        pulses=int(sum(int(p.sum()) for p in pulses.values())),
    )
    body = dataclasses.asdict(report)
    body.update(
        name=name,
        task_seed=None if support is not None else task_seed,
        shots=shots,
        support=None if support is None else str(Path(support).resolve()),
        seed=seed,
        plan_sha256=file_sha256(report.plan_csv),
        support_sha256=file_sha256(Path(support)) if support is not None and Path(support).is_file() else None,
        deployed_sha256=file_sha256(run_dir / "deployed.eqx"),  # the chip the plan was made for
    )
    write_json(report.plan_json, body)
    return report


# ------------------------------------------------------------------------------ adapted chips
@dataclasses.dataclass
class AdaptedImportReport:
    adapted_array: Path
    report_json: Path
    task: dict
    at_hours: float
    metric: str
    set_name: str
    before: dict[str, float]  # the task's query metrics on the chip before the lab's pulses
    after: dict[str, float]  # … on the measured adapted chip
    after_simulated: dict[str, float]  # the plan's prediction
    measurement: dict
    source: str = "measured"


def import_adapted(
    run_dir: Path,
    exp,
    network: AbstractNetwork,
    array: DeployedArray,
    measured: Path,
    name: str,
    at_seconds: float | None = None,
    seed: int = 0,
    manifest: Path | None = None,
) -> AdaptedImportReport:
    """The lab's measurement of every device after it applied the plan `name` (`plan_name`):
    stored as an adapted array of the run, the task's query metric before and after (at the
    plan's time)."""
    plan_path = run_dir / f"plan-{name}.json"
    if not plan_path.is_file():
        made = sorted(p.name for p in run_dir.glob("plan-*.json"))
        raise UserInputError(
            f"--adapted-for: no plan {plan_path.name} in {run_dir} (plans: {', '.join(made) or 'none'}); "
            f"make one with `pcmmeta adapt --run {run_dir} --plan PULSES.csv` first"
        )
    plan = read_json_file(plan_path)
    try:
        t_adapt = float(plan["at_hours"]) * 3600.0
        plan_csv, plan_digest, deployed_digest = Path(plan["plan_csv"]), plan["plan_sha256"], plan["deployed_sha256"]
    except (KeyError, TypeError, ValueError):
        raise UserInputError(f"{plan_path}: not a plan written by `pcmmeta adapt --plan` (damaged?)") from None
    if file_sha256(run_dir / "deployed.eqx") != deployed_digest:
        raise UserInputError(
            f"{plan_path.name} was made for another deployed array of {run_dir.name} (imported or deployed again since); plan again"
        )
    if not plan_csv.is_file() or file_sha256(plan_csv) != plan_digest:
        raise UserInputError(
            f"{plan_csv}: {'missing' if not plan_csv.is_file() else 'changed'} since `adapt --plan` wrote it"
        )
    manifest_checked = check_manifest(manifest, measured, run_dir, network)
    layers = crossbars(network)
    table = X.read_device_values(measured, layers, "g_uS", optional_time=True)
    at = _read_times(measured, table, at_seconds, t_adapt)
    planned = X.read_device_values(
        plan_csv, layers, "pulses", only=network.head, every_device=False, integer_values=True
    )
    key = jax.random.fold_in(seed_key(seed), 3)
    device = exp.meta.device
    states = {}
    for i, layer in enumerate(layers):
        old = array.layers[layer.name]
        shape = old.g_prog.shape
        g = table.values[layer.name].reshape(shape)
        t = _times(table, layer.name, at).reshape(shape)
        pulsed = (
            np.nan_to_num(planned.values[layer.name]).reshape(shape)
            if layer.name in planned.values
            else np.zeros(shape)
        )
        t_prog = np.where(pulsed > 0, t_adapt, np.asarray(old.t_prog))
        if (t < t_prog - 1e-6).any():
            raise UserInputError(
                f"{measured}: layer {layer.name} has devices read before the adaptation's pulses at {t_adapt:g} s (t_s earlier than the plan's time)"
            )
        fresh = anchored_state(jax.random.fold_in(key, i), device, g, t, t_prog, old.n_set + pulsed.astype(np.int32))
        kept = anchored_state(key, device, g, t, t_prog, old.n_set, nu=old.nu)
        states[layer.name] = where_state(jnp.asarray(pulsed > 0), fresh, kept)
    adapted = DeployedArray(states, array.reference)
    support = Path(plan["support"]) if plan.get("support") else None
    if (
        support is not None
        and plan.get("support_sha256")
        and (not support.is_file() or file_sha256(support) != plan["support_sha256"])
    ):
        raise UserInputError(
            f"{support}: {'missing' if not support.is_file() else 'changed'} since the plan was made for it"
        )
    family, task = adaptation_task(exp, plan.get("task_seed") or 0, plan.get("shots"), support)
    k_eval = jax.random.fold_in(seed_key(seed), 4)
    before = _metric_without_adaptation(k_eval, array, task, family, network, exp.meta, t_adapt)
    after = _metric_without_adaptation(k_eval, adapted, task, family, network, exp.meta, t_adapt)
    stem = f"adapted-{name}-{float(plan['at_hours']):g}h-measured"
    path = atomic_write_unique(run_dir, stem, ".eqx", eqx_bytes(adapted))
    report = AdaptedImportReport(
        adapted_array=path,
        report_json=path.with_suffix(".json"),
        task=plan["task"],
        at_hours=float(plan["at_hours"]),
        metric=family.metric,
        set_name="query" if not plan.get("support") else "support",
        before=before,
        after=after,
        after_simulated=plan["query_after_simulated"],
        measurement=_file_facts(measured, table, at, "--at-seconds" if at_seconds is not None else "the plan's time,")
        | ({"manifest": str(manifest_checked)} if manifest_checked else {}),
    )
    write_json(
        report.report_json,
        {**dataclasses.asdict(report), "adapted_array": str(path), "report_json": str(report.report_json)},
    )
    return report


# ------------------------------------------------------------------------------ NIR
@dataclasses.dataclass
class NirExportReport:
    path: Path
    array: Path  # the deployed or adapted array read
    at_hours: float
    nodes: list[str]
    layers: dict[str, list[int]]  # the weight matrices' shapes (inputs × outputs)


def export_nir(
    exp,
    network: AbstractNetwork,
    array: DeployedArray,
    array_path: Path,
    out: Path,
    at_hours: float = 1.0,
    seed: int = 0,
) -> NirExportReport:
    """The spiking network as a NIR graph with the weights of one read of `array` at `at_hours`
    after deployment (docs/nir.md)."""
    from pcmmeta.io.nir_file import network_graph, write_nir

    read = read_weights(seed_key(seed), array, jnp.asarray(at_hours * 3600.0), network, exp.meta.device)
    weights = {n: np.asarray(w) for n, w in read.items()}
    graph = network_graph(network, weights, bias_channel=exp.family.bias_channel)
    write_nir(out, graph)
    return NirExportReport(
        out,
        array_path,
        at_hours,
        sorted(graph.nodes),
        {n: list(w.reshape(w.shape[0], -1).shape) for n, w in weights.items()},
    )
