"""The `pcmmeta` command line: parse, call the library, print. User errors: one line, exit 2;
an output that cannot be written (disk full, file-size limit): one line, exit 1; SIGINT/SIGTERM:
one line, exit 130/143 (`pcmmeta.runtime.interrupts`).

Each command imports the library inside its body: importing this module loads neither JAX nor
matplotlib, so `pcmmeta --help`, a bad flag and an interrupt at start-up are answered at once
(`tests/test_layers.py` checks it)."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from pcmmeta.core.fields import MAX_TASKS
from pcmmeta.core.seeds import SEED_MAX
from pcmmeta.errors import OutputError, UserInputError, safe_text
from pcmmeta.io.number_text import mean_sem_text
from pcmmeta.io.runs import json_text

#: Flag bounds: write-verify never needs more than a few dozen pulses per device (docs/chip.md),
#: and far more support examples or evaluation tasks than these cannot fit in memory.
MAX_PULSES = 10_000
MAX_SHOTS = 10_000
#: Times since deployment, h: a thousand years (a time in s must stay well inside float32).
MAX_HOURS = 1e7


class _Commands(typer.Typer):
    """Every command maps a `UserInputError` to one line and exit 2 (`fail`): the commands raise
    it, none catches it."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)

        def decorator(function):
            @functools.wraps(function)
            def refusing_bad_input(*a, **k):
                try:
                    return function(*a, **k)
                except UserInputError as err:
                    fail(str(err))

            register(refusing_bad_input)
            return function

        return decorator


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"pcmmeta {version('pcmmeta')}")
        raise typer.Exit(0)


app = _Commands(
    name="pcmmeta",
    help="Meta-learning for networks on simulated phase-change-memory synapses: spiking sinusoid regression, few-shot image classification, a spiking robot arm; and a lab's chip in the loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[g_min, g_max]" and "[default: …]" are text, not markup
)
#: Tables printed into a pipe or file are not wrapped at rich's default 80 columns (a terminal's
#: own width is used where there is one).
PIPE_WIDTH = 200


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Meta-learning for networks on simulated phase-change-memory synapses: spiking sinusoid
    regression, few-shot image classification, a spiking robot arm; and a lab's chip in the loop."""


console = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)


def fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(safe_text(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def progress_bar(transient: bool = True) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=err_console,
        transient=transient,
    )


# ------------------------------------------------------- flag checks (before any work starts)
def _finite(value: Optional[float]) -> Optional[float]:
    """typer callback: a float flag must be a finite number (typer's bounds let inf and nan by)."""
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


def _positive_finite(value: float) -> float:
    if not (_finite(value) > 0):  # type: ignore[operator]  # typer passes a value, never None here
        raise typer.BadParameter(f"must be > 0, got {value:g}")
    return value


def _input_path(value: str | Path) -> Path:
    """typer parser of a file or folder to read: an empty value would become '.' (the current
    folder) and be answered about '.', not about the flag."""
    if str(value).strip() == "":  # (a default arrives as a Path)
        raise typer.BadParameter("empty: give a file or folder name")
    return Path(value)


def _name_or_path(value: str) -> str:
    """typer parser of a built-in name or a file or folder (--device, --prior, --targets): not empty."""
    if value == "":
        raise typer.BadParameter("empty: give a built-in name or a path")
    return value


def _output_path(value: str | Path) -> Path:
    """typer parser of a file to write: a name that ends in a separator names a folder (as a
    Path it would lose the separator and become a file of that name)."""
    if isinstance(value, Path):  # a default: a file name already
        return value
    if value.strip() == "":
        raise typer.BadParameter("empty: expected a file name")
    if value.endswith(("/", os.sep)):
        raise typer.BadParameter(f"{safe_text(value, 80)}: ends in '/', a folder; expected a file name")
    return Path(value)


def _png_path(param: typer.CallbackParam, value: Optional[Path]) -> Optional[Path]:
    """typer callback: a PNG to write — ends in .png, in a folder that exists, not a folder itself."""
    if value is None:
        return None
    if value.suffix.lower() != ".png":
        raise typer.BadParameter(f"{safe_text(str(value), 80)}: the plot is a PNG; give a file name ending in .png")
    return _output_file(param, value)


def _output_file(param: typer.CallbackParam, value: Optional[Path]) -> Optional[Path]:
    """typer callback: a file to write, in a folder that exists (a typo in a folder name must
    not create folders), and not itself a folder."""
    if value is None:
        return None
    parent = value.parent
    if not parent.is_dir():
        raise typer.BadParameter(f"{safe_text(str(parent), 80)}: no such folder")
    if str(value) == ".":  # what an empty value becomes as a Path
        raise typer.BadParameter("empty or '.' (the current folder): expected a file name")
    if value.is_dir():
        raise typer.BadParameter(f"{safe_text(str(value), 80)}: is a folder, expected a file name")
    if value.exists() and not value.is_file():  # a device or pipe would be replaced by a file
        raise typer.BadParameter(
            f"{safe_text(str(value), 80)}: not a regular file (a device or pipe?); expected a file name"
        )
    from pcmmeta.io.runs import run_file_owner
    from pcmmeta.io.writable import check_writable

    owner = run_file_owner(value)
    if owner is not None and value.exists():
        raise typer.BadParameter(
            f"{safe_text(str(value), 80)}: a file of the run {safe_text(str(owner), 80)} (pcmmeta keeps it); give another name"
        )

    check_writable(
        value, param.opts[0] if param.opts else None
    )  # a read-only folder fails now, not after the work (exit 1: not a usage error)
    return value


def _parse_times(text: str, option: str) -> list[float]:
    """Read times, s, comma-separated: each finite, ≥ 0 and ≤ the longest time a measurement
    CSV may hold (nan passes every comparison, and a file fit-device refuses is no output)."""
    import math

    from pcmmeta.io.measurements import MAX_T_S

    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            fail(f"{option}: not a number: {part.strip()!r}")
        if not (math.isfinite(value) and 0 <= value <= MAX_T_S):
            fail(f"{option}: times must be ≥ 0 s and ≤ {MAX_T_S:g} s, got {part.strip()!r}")
        values.append(value)
    return values


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the flag of parameter `name` was given on the command line (not its default)."""
    source = ctx.get_parameter_source(name)  # click's ParameterSource (typer may vendor click)
    return source is not None and source.name == "COMMANDLINE"


@app.command("fit-device")
def fit_device_cmd(
    data: Annotated[
        list[Path],
        typer.Argument(
            parser=_input_path,
            help="Measurement CSVs: device_id,pulse,t_s,g_uS (docs/device-model.md).",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option(callback=_output_file, parser=_output_path, help="Device YAML to write.")] = Path(
        "fitted-device.yaml"
    ),
    prior: Annotated[
        Optional[str],
        typer.Option(
            parser=_name_or_path,
            help="Device whose values stand for the parameters the data cannot constrain (default: the family's built-in device).",
            show_default=False,
        ),
    ] = None,
    family: Annotated[
        Optional[str],
        typer.Option(
            help="Device family to fit: nandakumar2018 or joshi2020 (default: the --prior's family, else nandakumar2018).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        Optional[str], typer.Option(help="Name recorded in the device file (default: the file's stem).")
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(min=0, help="Bootstrap resamples over devices for the standard errors.")
    ] = 20,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed of the bootstrap.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimates as JSON instead of a table.")] = False,
    plot: Annotated[
        Optional[Path],
        typer.Option(callback=_png_path, parser=_output_path, help="Write a PNG of data and fitted model."),
    ] = None,
) -> None:
    """Fit the PCM device model to measurement CSVs and write a device YAML."""
    _not_an_input("--out", out, data)
    _not_an_input("--plot", plot, data)
    _no_copies(data)
    from pcmmeta.experiment.device_fitting import fit_device_files, prior_device
    from pcmmeta.io.measurements import read_measurements

    prior_model = prior_device(family, prior)
    measurements = read_measurements(data)  # a bad file is refused before the progress bar starts
    if measurements.ignored_columns and not as_json:
        err_console.print(f"note: ignored extra columns: {', '.join(measurements.ignored_columns)}", highlight=False)
    with progress_bar() as bar:
        task = bar.add_task("fit", total=bootstrap + 1, info="estimate, then bootstrap over devices")
        fit = fit_device_files(
            data,
            out,
            prior_model,
            name=name,
            bootstrap=bootstrap,
            seed=seed,
            plot=plot,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            measurements=measurements,
        )
    report = fit.to_json()
    if as_json:
        print(json_text(report, indent=2))
        return
    result = fit.result
    for warning in result.warnings:
        err_console.print(f"warning: {escape(safe_text(warning))}", highlight=False, soft_wrap=True)
    table = Table(title=f"PCM device fit → {out}")
    for column in ("parameter", "estimate", "± s.e.", "constrained by the data"):
        table.add_column(column, justify="right" if column in ("estimate", "± s.e.") else "left")
    for key, entry in report["parameters"].items():
        se = entry["stderr"]
        table.add_row(key, f"{entry['value']:.4g}", "" if se is None else f"{se:.2g}", entry["status"])
    console.print(table)
    gof = report["goodness_of_fit"]
    number = lambda v: "n/a" if v is None else f"{v:.3f}"
    console.print(
        f"goodness of fit: reads χ²/dof = {number(gof['reads_reduced_chi2'])} (1 if the read model fits); "
        f"increment z-scores mean {number(gof['increment_z_mean'])}, std {number(gof['increment_z_std'])} (0 and 1 if it fits); "
        f"{gof['n_reads']} reads of {gof['n_devices']} devices, {gof['n_groups']} (device, pulse) groups, "
        f"{gof['n_repeated_read_dof']} repeated-read degrees of freedom, {gof['n_pulse_pairs']} pulse pairs; "
        f"s.e. from {bootstrap} bootstrap resamples over devices",
        highlight=False,
    )
    if plot is not None:
        console.print(f"plot: {plot}")


@app.command("simulate-measurements")
def simulate_measurements_cmd(
    out: Annotated[Path, typer.Option(callback=_output_file, parser=_output_path, help="CSV to write.")] = Path(
        "simulated-measurements.csv"
    ),
    devices: Annotated[int, typer.Option(min=2, help="Number of simulated devices.")] = 200,
    device: Annotated[
        str, typer.Option(parser=_name_or_path, help="Built-in device name or device YAML to simulate.")
    ] = "nandakumar2018",
    pulses: Annotated[int, typer.Option(min=1, help="SET pulses after the RESET, per device.")] = 20,
    read_times: Annotated[
        str, typer.Option(help="Read times after every programming event, s, comma-separated.")
    ] = "2,10,30",
    drift_read_times: Annotated[
        str, typer.Option(help="Extra, later read times after the RESET, every --drift-every-th pulse and the last, s.")
    ] = "100,1000,10000",
    drift_every: Annotated[int, typer.Option(min=1, help="Pulse interval of the drift reads.")] = 5,
    protocol: Annotated[
        str,
        typer.Option(
            help="'repeated': every read time after every event; 'ragged': one read after each event (some missing), a retention series after the last pulse on some devices, pulse counts from --pulses/2 to --pulses."
        ),
    ] = "repeated",
    retention_fraction: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="ragged: fraction of devices read at every time after their last pulse."),
    ] = 0.25,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="PRNG seed.")] = 0,
) -> None:
    """Write synthetic measurements from a device model, in fit-device's CSV format."""
    from pcmmeta.io.measurements import MIN_READ_TIMES

    if protocol not in ("repeated", "ragged"):
        fail(f"--protocol: 'repeated' or 'ragged', got {protocol!r}")
    times = _parse_times(read_times, "--read-times")
    drift_times = _parse_times(drift_read_times, "--drift-read-times") if drift_read_times.strip() else []
    if len(set(times) | set(drift_times)) < MIN_READ_TIMES[protocol]:  # the RESET is read at both lists' times
        fail(
            f"--read-times: the {protocol} protocol reads events at {MIN_READ_TIMES[protocol]} or more distinct times "
            f"(--read-times and --drift-read-times together), got {read_times!r} and {drift_read_times!r}"
        )
    if drift_times and min(drift_times) <= max(times):
        fail("--drift-read-times: every drift read time must come after the last --read-times value")
    from pcmmeta.experiment.device_fitting import simulate_measurement_file
    from pcmmeta.io.device_file import load_device

    written = simulate_measurement_file(
        out,
        load_device(device),
        devices=devices,
        pulses=pulses,
        read_times=times,
        drift_read_times=drift_times,
        drift_every=drift_every,
        protocol=protocol,
        retention_fraction=retention_fraction,
        seed=seed,
    )
    console.print(
        f"wrote {written.reads} simulated reads of {written.devices} devices ({written.device_name}) to {written.path}"
    )


def _evaluation_table(title: str, ev: dict) -> Table:
    """Every metric of the family before adaptation and after each inner step (± s.e.)."""
    metrics = [k[: -len("_per_step")] for k in ev if k.endswith("_per_step") and not k.startswith("sem_")]
    table = Table(title=title)
    table.add_column("held-out " + ev["metric"])
    for name in metrics:
        table.add_column(name, justify="right")
    steps = len(ev[f"{ev['metric']}_per_step"])
    for s in range(steps):
        label = (
            "before adaptation"
            if s == 0
            else (f"after step {s}" if s < steps - 1 else f"after adaptation ({s} step{'s' if s > 1 else ''})")
        )
        cells = [mean_sem_text(ev[f"{name}_per_step"][s], ev[f"sem_{name}_per_step"][s]) for name in metrics]
        table.add_row(label, *cells)
    from pcmmeta.io.baseline_names import BASELINE_NAMES

    for key, label in BASELINE_NAMES.items():
        if key in ev:
            table.add_row(label, f"{ev[key]:.4g}", *[""] * (len(metrics) - 1))
    return table


class ItRate:
    """Iterations per second since the first call (the first iteration includes compilation)."""

    def __init__(self) -> None:
        self.start: tuple[float, int] | None = None

    def __call__(self, it: int) -> float:
        import time

        now = time.perf_counter()
        if self.start is None:
            self.start = (now, it)
        t0, it0 = self.start
        return (it - it0) / (now - t0) if now > t0 else 0.0


@app.command("meta-train")
def meta_train_cmd(
    recipe: Annotated[
        Optional[Path],
        typer.Argument(
            parser=_input_path, help="Recipe YAML (docs/recipes.md). Not needed with --resume.", show_default=False
        ),
    ] = None,
    runs_dir: Annotated[Path, typer.Option(parser=_input_path, help="Folder of run directories.")] = Path("runs"),
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a run from its last checkpoint (the latest run unless --run).")
    ] = False,
    run: Annotated[Optional[Path], typer.Option(parser=_input_path, help="Run directory to resume.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final evaluation as JSON.")] = False,
    set_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            help="Set a recipe key, dotted: --set train.iterations=500 --set mode=ideal (a YAML value; validated as the recipe, recorded in the run's recipe.yaml). Repeatable.",
        ),
    ] = None,
) -> None:
    """Meta-train a network on PCM synapses with MAML (the recipe names network, task family,
    inner rule and mode)."""
    if recipe is not None and not resume:
        from pcmmeta.io.runs import read_yaml

        read_yaml(recipe)  # a missing, oversized or malformed file is answered before JAX loads (≈ 2 s)
    from pcmmeta.experiment.train import NaNLossError
    from pcmmeta.experiment.training_run import prepare_run
    from pcmmeta.runtime import interrupts

    overrides = _parse_sets(set_ or [])
    if overrides and resume:
        fail("--set: a resumed run keeps its recipe; start a new run with the recipe and --set")
    training = prepare_run(recipe, resume, run, runs_dir, overrides)
    if training.finished:
        err_console.print(
            f"{training.run_dir}: already finished ({training.experiment.train.iterations} iterations, evaluation.json written); nothing to do",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        return
    run_dir = training.start(runs_dir)
    experiment = training.experiment
    err_console.print(f"run directory: {run_dir}", highlight=False)
    if experiment.family.data_description():
        err_console.print(f"data: {experiment.family.data_description()}", highlight=False, markup=False)
    bar = progress_bar(transient=False)
    metric = experiment.family.metric
    with bar:
        task = bar.add_task("meta-train", total=experiment.train.iterations, info="compiling…")
        rate = ItRate()

        def on_iteration(it, loss, record):
            change = f"{metric} {record[metric + '_before']:.3f} → {record[metric + '_after']:.3f}"
            # the arm's metric is its loss: one "loss", before → after
            info = f"{change if metric == 'loss' else f'loss {loss:.3f}  {change}'}  {rate(it):.2f} it/s"
            bar.update(task, completed=it, info=info)

        try:
            outcome = training.run(on_iteration)
        except NaNLossError as err:
            bar.stop()
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    if outcome.interrupted:
        import signal

        signum = interrupts.requested() or signal.SIGINT
        name = "interrupted" if signum == signal.SIGINT else "terminated"
        err_console.print(
            f"{name} at iteration {int(outcome.state.iteration)}; checkpoint saved; resume with `pcmmeta meta-train --resume --run {run_dir}`",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(interrupts.EXIT_CODES.get(signum, 130))
    assert outcome.evaluation is not None  # not interrupted: evaluated
    ev = outcome.evaluation.to_json()
    if as_json:
        print(json_text({"run_dir": str(run_dir), **ev}, indent=2))
        return
    title = f"held-out evaluation: {ev['n_tasks']} tasks ({experiment.meta.mode.name}, {experiment.meta.rule.name}), {ev['pulses_per_task']:.1f} pulses per task"
    console.print(_evaluation_table(title, ev))
    console.print(f"run directory: {run_dir} (training-curve.png, evaluation.png, evaluation.json)", highlight=False)


def _parse_sets(items: list[str]) -> dict:
    """--set KEY=VALUE items as {dotted key: YAML value}; one line naming the item otherwise."""
    import re

    import yaml

    out: dict = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
            fail(f"--set {item!r}: expected KEY=VALUE with a dotted recipe key, e.g. --set train.iterations=500")
        if key in out:
            fail(f"--set {key}: given twice")
        try:
            out[key] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            fail(f"--set {item!r}: the value is not a YAML value (quote a string with spaces or colons)")
        except ValueError:  # an integer of more digits than Python reads (4,300)
            fail(f"--set {key}: an integer of {len(text.strip()):,} digits is not a value a recipe takes")
        if out[key] is None:
            fail(f"--set {key}: empty value; give one, e.g. --set {key}=…")
    return out


# ------------------------------------------------------------------ the chip after training
RunOption = Annotated[
    Optional[Path], typer.Option("--run", parser=_input_path, help="Run directory (default: the latest run).")
]
RunsDirOption = Annotated[Path, typer.Option(parser=_input_path, help="Folder of run directories.")]


def _wrote(what: str, path) -> None:
    """Say where a file went (on stderr: stdout may be JSON)."""
    err_console.print(f"{what}: {path}", highlight=False, markup=False, soft_wrap=True)


def _figure_table(title: str, rows: list[tuple[str, str]]) -> Table:
    """A two-column table: what was measured, and its value."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def _not_an_input(flag: str, out: Optional[Path], inputs) -> None:
    """One line (exit 2) when the output `out` is one of the `inputs` (the same file under any
    name): writing it would destroy what the command reads."""
    if out is None or not out.exists():
        return
    for given in inputs:
        if given is not None and Path(given).exists() and os.path.samefile(out, given):
            fail(f"{flag} {out}: is an input of this command ({given}); give another file name")


def _no_copies(files: list[Path]) -> None:
    """One line (exit 2) when two measurement files hold the same bytes: one measurement under
    two names, which a fit would count twice as if it were two."""
    import hashlib

    seen: dict[tuple[int, str], Path] = {}
    for path in files:
        if not path.is_file():
            continue  # the reader names what is wrong with it
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        key = (path.stat().st_size, digest.hexdigest())
        if key in seen:
            fail(f"{path}: the same bytes as {seen[key]}: one measurement given twice; give each file once")
        seen[key] = path


def _load_trained(run: Optional[Path], runs_dir: Path):
    from pcmmeta.experiment.run_access import load_trained_run

    trained = load_trained_run(run, runs_dir)
    return trained.run_dir, trained.experiment, trained.network


def _load_deployed(run: Optional[Path], runs_dir: Path):
    from pcmmeta.experiment.run_access import load_deployed_run

    deployed = load_deployed_run(run, runs_dir)
    return deployed.run_dir, deployed.experiment, deployed.network, deployed.array


#: The longest duration the cost model takes for one pulse or read, ns (a second): beyond it, a
#: typo (and inf or nan would make every time in the report null).
MAX_OPERATION_NS = 1e9
SetNsOption = Annotated[
    float,
    typer.Option(
        "--set-ns",
        min=0.0,
        max=MAX_OPERATION_NS,
        help="Duration of one SET pulse, ns (cost model, docs/programming.md).",
    ),
]
ResetNsOption = Annotated[
    float, typer.Option("--reset-ns", min=0.0, max=MAX_OPERATION_NS, help="Duration of one RESET pulse, ns.")
]
ReadNsOption = Annotated[
    float, typer.Option("--read-ns", min=0.0, max=MAX_OPERATION_NS, help="Duration of one verify read, ns.")
]
ToleranceOption = Annotated[
    float, typer.Option(callback=_positive_finite, help="Write-verify tolerance, µS (≈ read noise at mid-range), > 0.")
]
MaxPulsesOption = Annotated[int, typer.Option(min=1, max=MAX_PULSES, help="Pulse budget per device (SET + RESET).")]


def _cost(set_ns: float, reset_ns: float, read_ns: float):
    from pcmmeta.core.programming import ProgrammingCost

    return ProgrammingCost(set_s=set_ns * 1e-9, reset_s=reset_ns * 1e-9, read_s=read_ns * 1e-9)


def _policy_trainer(device, tolerance: float, max_pulses: int, cost):
    """A function that trains a policy with a progress bar, for `obtain_policy` to call when
    no policy is cached (`deploy --method learned`, `deploy --compare`)."""
    import jax

    from pcmmeta.core.programming import PolicyTraining, learn_policy

    def train():
        settings = PolicyTraining()
        err_console.print(
            f"no cached programming policy for {device.name}: training one ({settings.iterations} steps; cached for later calls)",
            highlight=False,
            markup=False,
        )
        with progress_bar() as bar:
            task = bar.add_task("learning to program", total=settings.iterations, info="")

            def on_iteration(i, value):
                bar.update(task, completed=i + 1, info=f"time {value:.3f} × write-verify")
                if not err_console.is_terminal:  # piped: the bar does not show, a line now and then does
                    err_console.print(
                        f"learning to program: step {i + 1}/{settings.iterations}, time {value:.3f} × write-verify",
                        highlight=False,
                        markup=False,
                    )

            policy, info, _ = learn_policy(
                jax.random.key(0), device, tolerance, max_pulses, cost, settings, on_iteration=on_iteration
            )
        return policy, info

    return train


@app.command("learn-programming")
def learn_programming_cmd(
    device: Annotated[
        str, typer.Option(parser=_name_or_path, help="Built-in device name or device YAML (fit-device).")
    ] = "nandakumar2018",
    out: Annotated[
        Optional[Path],
        typer.Option(
            callback=_output_file,
            parser=_output_path,
            help="Policy file to write (default: the cache that `deploy --method learned` reads).",
        ),
    ] = None,
    targets: Annotated[
        str,
        typer.Option(
            parser=_name_or_path,
            help="Training targets: 'uniform' over [g_min, g_max], or a run folder (its trained conductances).",
        ),
    ] = "uniform",
    tolerance: ToleranceOption = 0.5,
    max_pulses: MaxPulsesOption = 100,
    iterations: Annotated[
        int,
        typer.Option(
            min=1,
            max=100,
            help="Calibration steps: each plans the policy for a price of precision and simulates it against write-verify.",
        ),
    ] = 8,
    seed: Annotated[
        int,
        typer.Option(
            min=0,
            max=2**32 - 1,
            help="Seed of the training (0 … 2³²−1: seeds of held-out targets are derived from it).",
        ),
    ] = 0,
    set_ns: SetNsOption = 50.0,
    reset_ns: ResetNsOption = 50.0,
    read_ns: ReadNsOption = 200.0,
    runs_dir: RunsDirOption = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Train a programming policy for a device: when to read, pulse blind, RESET or stop (docs/programming.md)."""
    from pcmmeta.experiment.learn_programming import (
        HELD_OUT_TARGETS,
        held_out_report,
        learn_programming,
        trained_conductances,
    )
    from pcmmeta.io.device_file import load_device
    from pcmmeta.runtime.cache_dir import default_cache_dir

    cost = _cost(set_ns, reset_ns, read_ns)
    pcm = load_device(device)
    pool, label = None, "uniform"
    if targets != "uniform":
        run_dir, _, network = _load_trained(Path(targets), runs_dir)
        pool = trained_conductances(network)
        label = f"run {run_dir.name}"
    with progress_bar() as bar:
        task = bar.add_task("learning to program", total=iterations, info="")
        learned = learn_programming(
            pcm,
            tolerance,
            max_pulses,
            cost,
            iterations,
            seed,
            out,
            default_cache_dir(),
            pool,
            label,
            on_iteration=lambda i, value: bar.update(task, completed=i + 1, info=f"time {value:.3f} × write-verify"),
        )
    with err_console.status(f"comparing with write-verify on {HELD_OUT_TARGETS:,} held-out targets…"):
        report = held_out_report(learned, pcm, tolerance, max_pulses, cost, seed, pool)
    if as_json:
        print(json_text(report.to_json(), indent=2))
        return
    figures = report.held_out
    console.print(
        _comparison_table(
            f"learned programming on {pcm.name}: {HELD_OUT_TARGETS:,} held-out targets ({label})", figures
        )
    )
    wv, by_policy = figures
    console.print(
        f"learned / write-verify: time {by_policy.time_us_mean / wv.time_us_mean:.2f}×, verify reads "
        f"{by_policy.verify_reads_mean / wv.verify_reads_mean:.2f}×; saved {report.policy_path}",
        highlight=False,
    )


def _comparison_table(title: str, figures) -> Table:
    table = Table(title=title)
    table.add_column("figure")
    for f in figures:
        table.add_column(f.method, justify="right")
    rows = [
        ("RMS error (µS)", lambda f: f"{f.rms_error_uS:.3f} ± {f.sem_rms_error_uS:.3f}"),
        ("max error (µS)", lambda f: f"{f.max_error_uS:.2f}"),
        (
            f"within ±{figures[0].tolerance_uS:g} µS",
            lambda f: f"{100 * f.fraction_within_tolerance:.2f} ± {100 * f.sem_fraction_within_tolerance:.2f}%",
        ),
        ("pulses mean / p50 / p99", lambda f: f"{f.pulses_mean:.1f} / {f.pulses_p50:.0f} / {f.pulses_p99:.0f}"),
        ("verify reads (mean)", lambda f: f"{f.verify_reads_mean:.2f}"),
        ("RESETs (mean)", lambda f: f"{f.resets_mean:.2f}"),
        ("time per device (µs)", lambda f: f"{f.time_us_mean:.3f}"),
        ("energy per device (pJ)", lambda f: f"{f.energy_pj_mean:.1f}"),
        ("at the pulse budget", lambda f: f"{f.devices_at_budget:,}"),
        ("simulation speed (devices/s)", lambda f: f"{f.devices_per_s:,.0f}"),
    ]
    for label, cell in rows:
        table.add_row(label, *[cell(f) for f in figures])
    return table


@app.command("deploy")
def deploy_cmd(
    run: RunOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    method: Annotated[
        str,
        typer.Option(
            help="write-verify (iterative), write-verify-set-on-flat (SET instead of RESET on an overshoot where the SET law is flat), write-verify-burst (also an open-loop burst after each RESET), single-shot (mean pulse count, no verify), learned (write-verify with a learned policy's blind bursts; `learn-programming`) or network-aware (blind everywhere, verified where the network is sensitive, within --budget)."
        ),
    ] = "write-verify",
    budget: Annotated[
        Optional[float],
        typer.Option(
            min=0.0,
            max=10.0,
            help="network-aware (and --compare): total device time allowed, as a fraction of plain write-verify's expected total on the run's conductances [default: 0.1].",
            show_default=False,
        ),
    ] = None,
    tolerance: ToleranceOption = 0.5,
    max_pulses: MaxPulsesOption = 100,
    policy: Annotated[
        Optional[Path],
        typer.Option(
            parser=_input_path,
            help="Policy file for --method learned (default: the cached one for this device, trained on first use).",
        ),
    ] = None,
    force_policy: Annotated[
        bool,
        typer.Option(
            "--force-policy",
            help="Use --policy even if it was trained for other device parameters, tolerance or budget.",
        ),
    ] = False,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare", help="Program the run's targets with every method and compare them (writes no array)."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="PRNG seed of the programming noise.")] = 0,
    seeds: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            max=10,
            help="--compare: programming seeds per method (seed, seed + 1, …) [default: 3].",
            show_default=False,
        ),
    ] = None,
    tasks: Annotated[
        Optional[int],
        typer.Option(
            min=2,
            max=MAX_TASKS,
            help="--compare: held-out test tasks per condition and time [default: 100].",
            show_default=False,
        ),
    ] = None,
    hours: Annotated[
        Optional[str],
        typer.Option(
            help="--compare: times since deployment, h, comma-separated [default: 1,720].", show_default=False
        ),
    ] = None,
    set_ns: SetNsOption = 50.0,
    reset_ns: ResetNsOption = 50.0,
    read_ns: ReadNsOption = 200.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    plot: Annotated[
        Optional[Path],
        typer.Option(
            callback=_png_path,
            parser=_output_path,
            help="PNG: target vs programmed and pulse-count histogram (with --compare: the held-out metric vs total device time and vs row-parallel chip time, per method).",
        ),
    ] = None,
) -> None:
    """Program the run's trained conductances (every layer) into a simulated PCM array."""
    from pcmmeta.experiment.deployment import DEFAULT_BUDGET, NETWORK_AWARE, check_method_name

    check_method_name(method)
    if budget is not None and method != NETWORK_AWARE and not compare:
        fail("--budget: only used with --method network-aware or --compare")
    for flag, value in (("--seeds", seeds), ("--tasks", tasks), ("--hours", hours)):
        if value is not None and not compare:
            fail(f"{flag}: only used with --compare")
    if policy is not None and method != "learned" and not compare:
        fail("--policy: only used with --method learned or --compare")
    hour_list = _parse_hours(hours or "1,720") if compare else []
    options = dict(
        tolerance=tolerance,
        max_pulses=max_pulses,
        cost=_cost(set_ns, reset_ns, read_ns),
        budget=DEFAULT_BUDGET if budget is None else budget,
        plot=plot,
        stage=err_console.status,
    )
    from pcmmeta.experiment.deployment import check_deployable
    from pcmmeta.experiment.run_access import load_trained_run

    trained = load_trained_run(run, runs_dir)
    check_deployable(trained, None if compare else method)  # before a learned policy is trained
    learned_policy = None
    if method == "learned" or compare:
        learned_policy = _obtain_policy(
            trained.experiment.meta.device, tolerance, max_pulses, options["cost"], policy, force_policy
        )
    if compare:
        _deploy_compare(
            trained, learned_policy, options, [seed + i for i in range(seeds or 3)], hour_list, tasks or 100, as_json
        )
        return
    from pcmmeta.experiment.deployment import deploy_run

    deployment = deploy_run(trained, method, seed=seed, policy=learned_policy, **options)
    if plot is not None:
        _wrote("plot", plot)
    body = deployment.to_json()
    if as_json:
        print(json_text(body, indent=2))
        return
    report = deployment.report
    rows = [
        (
            "devices",
            f"{report.n_devices:,} (" + ", ".join(f"{n} {v['devices']:,}" for n, v in report.layers.items()) + ")",
        ),
        ("RMS / max error (µS)", f"{report.rms_error_uS:.3f} / {report.max_error_uS:.3f}"),
        ("RMS / max weight error", f"{report.rms_weight_error:.4f} / {report.max_weight_error:.4f}"),
        (f"within ±{tolerance} µS", f"{100 * report.fraction_within_tolerance:.1f}%"),
        (
            "pulses per device: mean, p50, p99, max",
            f"{report.pulses_mean:.1f}, {report.pulses_p50:.0f}, {report.pulses_p99:.0f}, {report.pulses_max}",
        ),
        ("verify reads per device (mean)", f"{report.verify_reads_mean:.2f}"),
        ("programming time, energy per device", f"{report.time_us_mean:.3f} µs, {report.energy_pj_mean:.1f} pJ"),
        (
            "total device time, row-parallel chip time",
            f"{report.programming_time_s * 1e3:.4g} ms, {report.chip_time_s * 1e3:.4g} ms",
        ),
        ("devices at the pulse budget", f"{report.devices_at_budget}"),
        ("simulation speed", f"{report.devices_per_s:,.0f} devices/s"),
    ]
    run_dir = deployment.run_dir
    console.print(_figure_table(f"deployed {run_dir.name} ({method})", rows))
    console.print(f"saved {deployment.array_path} and deploy.json; t = 0 is the end of deployment", highlight=False)


def _obtain_policy(device, tolerance: float, max_pulses: int, cost, path: Optional[Path], force: bool):
    """The learned programming policy (`obtain_policy`): from --policy, the cache, or trained now
    with a progress bar; says which."""
    from pcmmeta.io.policy_file import obtain_policy

    trainer = _policy_trainer(device, tolerance, max_pulses, cost)
    policy, _, policy_path, trained = obtain_policy(device, tolerance, max_pulses, cost, path, force, train=trainer)
    err_console.print(
        f"{'trained and cached' if trained else 'using'} programming policy {policy_path}", highlight=False
    )
    return policy


def _deploy_compare(
    trained, policy, options: dict, seeds: list[int], hours: list[float], tasks: int, as_json: bool
) -> None:
    from pcmmeta.core.programming import PROGRAMMING_METHODS
    from pcmmeta.experiment.deployment import compare_run
    from pcmmeta.experiment.programming_comparison import hours_key

    with progress_bar() as bar:
        task = bar.add_task("deploy --compare", total=(len(PROGRAMMING_METHODS) + 1) * len(seeds), info="")
        result = compare_run(
            trained, policy, seeds=seeds, hours=hours, tasks=tasks, progress=lambda: bar.advance(task), **options
        )
    if options["plot"] is not None:
        _wrote("plot", options["plot"])
    if as_json:
        print(json_text(result.to_json(), indent=2))
        return
    comparisons, plan, metric = result.methods, result.plan, result.metric
    reference = comparisons[0].programming_time_s  # plain write-verify
    table = Table(
        title=f"programming {result.run_dir.name}: {comparisons[0].figures.n_devices:,} devices on {result.device_name}, "
        f"held-out {metric} on {tasks} test tasks (mean ± s.e., {len(seeds)} programming seeds)"
    )
    for column in ("method", "device time (ms)", "× write-verify", "chip time (ms)", "RMS error (µS)"):
        table.add_column(column, justify="left" if column == "method" else "right")
    conditions = [(c, h) for c in ("deployed", "adapted") for h in hours]
    for condition, h in conditions:
        table.add_column(f"{condition} {h:g} h", justify="right")
    for c in comparisons:
        cells = [mean_sem_text(**c.metric[condition][hours_key(h)]) for condition, h in conditions]
        table.add_row(
            c.method,
            f"{c.programming_time_s * 1e3:.4g}",
            f"{c.programming_time_s / reference:.3f}",
            f"{c.chip_time_s * 1e3:.4g}",
            f"{c.figures.rms_error_uS:.3f}",
            *cells,
        )
    console.print(table)
    console.print(
        f"network-aware: budget {plan.budget_fraction:g} × write-verify's expected {plan.write_verify_expected_s * 1e3:.4g} ms; "
        f"lowered pairs in {', '.join(plan.lowered) or 'no layer'}",
        highlight=False,
        markup=False,
    )


@app.command("adapt")
def adapt_cmd(
    ctx: typer.Context,
    run: RunOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    steps: Annotated[
        Optional[int],
        typer.Option(
            "--steps",
            "--pulses",
            min=1,
            max=20,
            help="Inner steps on chip: pulse rounds (blind-pulse, planned-pulse), SGD steps (quantized-sgd, reprogram-sgd) or e-prop updates (eprop-lsg). Default: the recipe's.",
        ),
    ] = None,
    at_hours: Annotated[
        float,
        typer.Option(min=0.0, max=MAX_HOURS, callback=_finite, help="Time since deployment of the adaptation, h."),
    ] = 1.0,
    task_seed: Annotated[
        int, typer.Option(min=0, max=SEED_MAX, help="Seed of the new task (sampled from the recipe's held-out tasks).")
    ] = 0,
    shots: Annotated[
        Optional[int],
        typer.Option(
            min=1, max=MAX_SHOTS, help="Support examples K, per class for classification (default: the recipe's)."
        ),
    ] = None,
    support: Annotated[
        Optional[Path],
        typer.Option(
            parser=_input_path,
            help="Your own support set: a CSV with columns x,y (regression), a demonstration CSV t,theta1,theta2 or t,x,y (arm), or a folder of N class folders of images (classification). The query set is then the support set.",
        ),
    ] = None,
    energy_pj: Annotated[
        Optional[float],
        typer.Option(min=0.0, callback=_finite, help="Energy per SET pulse, pJ [default: the cost model's, 10 pJ]."),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="PRNG seed of reads and pulses.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    plot: Annotated[
        Optional[Path],
        typer.Option(callback=_png_path, parser=_output_path, help="PNG of the task before and after adaptation."),
    ] = None,
    plan: Annotated[
        Optional[Path],
        typer.Option(
            callback=_output_file,
            parser=_output_path,
            help="Write the SET pulses the rule chooses to this CSV (layer,row,col,sign,pulses) for a lab to apply, instead of applying them (docs/chip-bridge.md).",
        ),
    ] = None,
) -> None:
    """Adapt the deployed array to one new task with the recipe's inner rule on the head."""
    from pcmmeta.experiment.chip import adapt

    _not_an_input("--plan", plan, [support])
    _not_an_input("--plot", plot, [support])
    if plan is not None and (plot is not None or energy_pj is not None):
        fail(
            f"{'--plot' if plot is not None else '--energy-pj'}: not used with --plan (nothing is applied); leave it out"
        )
    if support is not None:  # the file is the task: its size and content, no sampled task
        given = [f"--{n.replace('_', '-')}" for n in ("shots", "task_seed") if _given(ctx, n)]
        if given:
            fail(
                f"{' and '.join(given)}: not used with --support (the task and its support examples are the file's); leave {'them' if len(given) > 1 else 'it'} out"
            )
    run_dir, exp, network, array = _load_deployed(run, runs_dir)
    _warn_beyond_training(steps, exp)
    if plan is not None:
        _adapt_plan(run_dir, exp, network, array, plan, steps, at_hours, task_seed, shots, support, seed, as_json)
        return
    report = adapt(
        run_dir,
        exp,
        network,
        array,
        steps=steps,
        at_hours=at_hours,
        task_seed=task_seed,
        shots=shots,
        support=support,
        **({} if energy_pj is None else {"energy_pj": energy_pj}),
        seed=seed,
        plot=plot,
    )
    body = {"run_dir": str(run_dir), **report.to_json()}
    if plot is not None:
        _wrote("plot", plot)
    before, after = report.before[report.metric], report.after[report.metric]
    if report.set_name == "support" and (after < before if exp.family.higher_is_better else after > before):
        err_console.print(
            f"warning: adaptation made the support {report.metric} worse ({before:.4g} → {after:.4g}): "
            "the rule's update does not fit this support set (check the file's units and ranges, or try other --steps)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if as_json:
        print(json_text(body, indent=2))
        return
    which = report.set_name
    rows = [(f"{which} {k} before → after", f"{report.before[k]:.4g} → {report.after[k]:.4g}") for k in report.before]
    if len(report.per_step) > 2:
        rows.append((f"{report.metric} per inner step", ", ".join(f"{v:.4g}" for v in report.per_step)))
    for label, value in report.breakdown.items():
        rows.append((label, value if isinstance(value, str) else f"{value:.4g}"))
    rows += [
        ("task", ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in report.task.items())),
        (
            "support examples",
            str(report.shots)
            if report.support_examples == report.shots
            else f"{report.support_examples} ({report.shots} per class)",
        ),
        ("devices pulsed / pulses", f"{report.devices_pulsed} / {report.total_pulses}"),
        ("energy", f"{report.energy_pJ:.4g} pJ ({report.energy_per_pulse_pJ:g} pJ per pulse)"),
    ]
    console.print(
        _figure_table(f"on-chip adaptation, {run_dir.name}, at {at_hours:g} h, {report.steps} inner step(s)", rows)
    )
    console.print(f"adapted array saved to {report.adapted_array} (deployed.eqx unchanged)", highlight=False)


def _warn_beyond_training(steps: Optional[int], exp) -> None:
    """More inner steps than the rule was meta-trained for are allowed, with a warning: the
    meta-learned initialisation and rule never saw them."""
    trained = exp.meta.rule.steps
    if steps is not None and steps > trained:
        err_console.print(
            f"warning: --steps {steps}: the recipe's {exp.meta.rule.name} was meta-trained for {trained} step{'s' if trained > 1 else ''}; "
            "later steps go beyond what training optimised",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def _adapt_plan(run_dir, exp, network, array, plan, steps, at_hours, task_seed, shots, support, seed, as_json) -> None:
    import shlex

    from pcmmeta.experiment.chip_bridge import plan_adaptation

    with err_console.status("planning the adaptation…"):
        report = plan_adaptation(
            run_dir,
            exp,
            network,
            array,
            plan,
            steps=steps,
            at_hours=at_hours,
            task_seed=task_seed,
            shots=shots,
            support=support,
            seed=seed,
        )
    if as_json:
        print(json_text({"run_dir": str(run_dir), **dataclasses.asdict(report)}, indent=2))
        return
    m = report.metric
    rows = [
        (f"support {m} on the chip as read, before", f"{report.support_before[m]:.4g}"),
        (
            f"query {m} before → after (simulated)",
            f"{report.query_before[m]:.4g} → {report.query_after_simulated[m]:.4g}",
        ),
        ("devices to pulse / SET pulses", f"{report.devices} / {report.pulses}"),
    ]
    console.print(_figure_table(f"pulse plan, {run_dir.name}, at {at_hours:g} h, {report.steps} inner step(s)", rows))
    console.print(
        f"plan: {report.plan_csv} ({report.plan_json.name} in the run); after the lab applies it and measures every device: "
        f"`pcmmeta import-chip MEASURED.csv --run {shlex.quote(str(run_dir))} --adapted-for {task_seed if support is None else shlex.quote(str(support))}`",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


#: Times one drift-eval (or deploy --compare) evaluates: each is a full evaluation per condition.
MAX_HOUR_COUNT = 100


def _parse_hours(text: str) -> list[float]:
    import math

    parts = [p.strip() for p in text.split(",")]
    if parts == [""]:
        fail("--hours: give at least one time, e.g. --hours 1,24,720")
    if len(parts) > MAX_HOUR_COUNT:  # each time is a full evaluation of every condition
        fail(f"--hours: {len(parts):,} times; give at most {MAX_HOUR_COUNT}, e.g. --hours 1,24,720")
    if "" in parts:  # "1,,2" or "1,24,": a typo, not a request for fewer times
        fail(f"--hours: empty item in {text!r}; give times separated by single commas, e.g. --hours 1,24,720")
    hours = []
    for p in parts:
        try:
            h = float(p)
        except ValueError:
            fail(f"--hours: not a number: {p!r}")
        if not math.isfinite(h) or not 0 < h <= MAX_HOURS:
            fail(f"--hours: times must be > 0 and ≤ {MAX_HOURS:g} h, got {p}")
        hours.append(h)
    return sorted(set(hours))


@app.command("drift-eval")
def drift_eval_cmd(
    hours: Annotated[str, typer.Option(help="Times since deployment, h, comma-separated (any order).")] = "1,24,720",
    run: RunOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    tasks: Annotated[int, typer.Option(min=1, max=MAX_TASKS, help="Held-out tasks per time.")] = 300,
    steps: Annotated[
        Optional[int],
        typer.Option(
            "--steps", "--pulses", min=1, max=20, help="Inner steps of the adapted conditions (default: the recipe's)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="PRNG seed of tasks, reads and pulses.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    csv_path: Annotated[
        Optional[Path],
        typer.Option("--csv", callback=_output_file, parser=_output_path, help="Write the results as CSV."),
    ] = None,
    plot: Annotated[
        Optional[Path],
        typer.Option(
            callback=_png_path,
            parser=_output_path,
            help="PNG of the metric vs time (log axis), one line per condition.",
        ),
    ] = None,
) -> None:
    """The deployed network's held-out metric as its conductances drift, with and without
    on-chip adaptation and global drift compensation."""
    from pcmmeta.experiment.drift_evaluation import evaluate_drift
    from pcmmeta.experiment.run_access import load_deployed_run

    hour_list = _parse_hours(hours)
    deployed = load_deployed_run(run, runs_dir)
    _warn_beyond_training(steps, deployed.experiment)
    with progress_bar() as bar:
        from pcmmeta.experiment.chip import CONDITIONS

        task = bar.add_task("drift-eval", total=len(hour_list) * len(CONDITIONS), info="")
        evaluation = evaluate_drift(
            deployed, hour_list, tasks, steps, seed, csv_path, plot, progress=lambda: bar.advance(task)
        )
    if csv_path is not None:
        _wrote("csv", csv_path)
    if plot is not None:
        _wrote("plot", plot)
    if as_json:
        print(json_text(evaluation.to_json(), indent=2))
        return
    metric = evaluation.metric
    table = Table(title=f"held-out {metric} under drift, {deployed.run_dir.name}, {tasks} tasks (± s.e.)")
    table.add_column("hours", justify="right")
    for name in evaluation.conditions:
        table.add_column(name, justify="right")
    for h in evaluation.hours:
        cells = [mean_sem_text(c[metric], c["sem"]) for c in (evaluation.cell(h, n) for n in evaluation.conditions)]
        table.add_row(f"{h:g}", *cells)
    console.print(table)
    from pcmmeta.io.baseline_names import BASELINE_NAMES

    on_tasks = ", ".join(f"{BASELINE_NAMES.get(k, k)} {v:.4g}" for k, v in evaluation.baselines.items())
    console.print(f"on the same tasks: {on_tasks}", highlight=False, markup=False)


# ------------------------------------------------------------------ a lab's chip in the loop
@app.command("export")
def export_cmd(
    out: Annotated[
        Path,
        typer.Argument(
            parser=_input_path,
            help="Folder to write manifest.json and targets.csv into (created if absent); with --format nir, the .nir file.",
            show_default=False,
        ),
    ],
    run: RunOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="chip: the exchange files of docs/chip-bridge.md; nir: the spiking network as a NIR graph (docs/nir.md).",
        ),
    ] = "chip",
    tile: Annotated[
        Optional[str],
        typer.Option(
            help="Cut each layer onto physical crossbars of ROWSxCOLS devices (COLS even): adds tile,tile_row,tile_col."
        ),
    ] = None,
    at_hours: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=MAX_HOURS,
            callback=_finite,
            help="--format nir: the chip read at this time since deployment, h.",
        ),
    ] = 1.0,
    adapted: Annotated[
        Optional[Path],
        typer.Option(
            parser=_input_path,
            help="--format nir: an adapted array of the run (adapted-*.eqx) instead of deployed.eqx.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="--format nir: PRNG seed of the read.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Write the run's target conductances for a lab's programmer (manifest.json, targets.csv), or its spiking network as NIR."""
    if format_ not in ("chip", "nir"):
        fail(f"--format: must be chip or nir, got {format_!r}")
    if format_ == "nir":
        if tile is not None:
            fail("--tile: only used with --format chip")
        _export_nir(out, run, runs_dir, at_hours, adapted, seed, as_json)
        return
    if adapted is not None:
        fail("--adapted: only used with --format nir")
    from pcmmeta.experiment.chip_bridge import export_chip
    from pcmmeta.io.chip_exchange import parse_tile

    tile_shape = parse_tile(tile) if tile is not None else None
    if out.exists() and not out.is_dir():
        fail(f"{out}: is a file; export writes a folder (manifest.json, targets.csv)")
    if not out.exists() and not out.parent.is_dir():
        fail(f"{out.parent}: no such folder")
    run_dir, exp, network = _load_trained(run, runs_dir)
    report = export_chip(run_dir, network, exp.meta.device, out, tile_shape)
    if as_json:
        print(json_text({"run_dir": str(run_dir), **dataclasses.asdict(report)}, indent=2))
        return
    rows = [
        (f"{n} ({v['role']})", f"{v['rows']} × {v['cols']} pairs, {v['devices']:,} devices")
        for n, v in report.layers.items()
    ]
    rows.append(("devices", f"{report.devices:,}" + (f" on {report.tiles} tiles" if report.tiles else "")))
    console.print(_figure_table(f"exported {run_dir.name} (pcmmeta-chip/1)", rows))
    console.print(f"wrote {report.manifest} and {report.targets}", highlight=False, markup=False)


def _export_nir(out, run, runs_dir, at_hours, adapted, seed, as_json) -> None:
    from pcmmeta.experiment.chip_bridge import export_nir

    if out.is_dir():
        fail(f"{out}: is a folder; --format nir writes one file, e.g. network.nir")
    if not out.parent.is_dir():
        fail(f"{out.parent}: no such folder")
    from pcmmeta.experiment.run_access import load_adapted_array, load_deployed_run

    deployed = load_deployed_run(run, runs_dir)
    run_dir, exp, network = deployed.run_dir, deployed.experiment, deployed.network
    path, array = run_dir / "deployed.eqx", deployed.array
    if adapted is not None:
        path, array = load_adapted_array(deployed, adapted)
    report = export_nir(exp, network, array, path, out, at_hours, seed)
    if as_json:
        print(json_text({"run_dir": str(run_dir), **dataclasses.asdict(report)}, indent=2))
        return
    console.print(
        f"wrote {report.path}: {len(report.nodes)} NIR nodes, weights of {path.name} read at {at_hours:g} h (docs/nir.md)",
        highlight=False,
        markup=False,
    )


@app.command("import-chip")
def import_chip_cmd(
    measured: Annotated[
        Path,
        typer.Argument(
            parser=_input_path,
            help="The lab's measurement: layer,row,col,sign,g_uS[,t_s], one line per device.",
            show_default=False,
        ),
    ],
    run: RunOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    at_seconds: Annotated[
        Optional[float],
        typer.Option(
            min=0.0,
            max=1e10,
            callback=_finite,
            help="Time of the reads, s since the end of programming, where the file has no t_s [default: 0; with --adapted-for, the plan's time].",
        ),
    ] = None,
    adapted_for: Annotated[
        Optional[str],
        typer.Option(
            help="The measurement is of the chip after the lab applied `adapt --plan` for this task: its --task-seed, or the --support file or folder it was planned for.",
        ),
    ] = None,
    manifest: Annotated[
        Optional[Path],
        typer.Option(
            parser=_input_path,
            help="The export's manifest.json to check against the run [default: the one beside MEASURED, if any].",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, max=SEED_MAX, help="PRNG seed of the drift exponents drawn for the measured devices.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import a lab's measured conductances as the run's deployed array (or, with --adapted-for, as an adapted array)."""
    from pcmmeta.experiment.chip_bridge import import_adapted, import_measurement, plan_name

    if adapted_for is not None:
        if adapted_for.isdigit():
            if int(adapted_for) > SEED_MAX:
                fail(f"--adapted-for: a task seed is 0 … {SEED_MAX}, got {adapted_for}")
            name = plan_name(int(adapted_for), None)
        elif adapted_for == "":
            fail("--adapted-for: empty; give the task seed or the support file the plan was made for")
        else:
            name = plan_name(0, Path(adapted_for))
        run_dir, exp, network, array = _load_deployed(run, runs_dir)
        with err_console.status("reading the measurement…"):
            adapted = import_adapted(run_dir, exp, network, array, measured, name, at_seconds, seed, manifest)
        body = {"run_dir": str(run_dir), **dataclasses.asdict(adapted)}
        if as_json:
            print(json_text(body, indent=2))
            return
        m = adapted.metric
        rows = [
            (f"{adapted.set_name} {m} before the lab's pulses", f"{adapted.before[m]:.4g}"),
            (f"{adapted.set_name} {m} on the measured chip", f"{adapted.after[m]:.4g}"),
            (f"{adapted.set_name} {m} the model predicted", f"{adapted.after_simulated[m]:.4g}"),
            ("devices measured", f"{adapted.measurement['devices']:,}"),
        ]
        console.print(_figure_table(f"measured adaptation, {run_dir.name}, task {adapted_for}", rows))
        console.print(
            f"adapted array saved to {adapted.adapted_array} (deployed.eqx unchanged)", highlight=False, markup=False
        )
        return
    run_dir, exp, network = _load_trained(run, runs_dir)
    with err_console.status("reading the measurement…"):
        report = import_measurement(run_dir, network, exp.meta.device, measured, at_seconds, seed, manifest)
    body = dataclasses.asdict(report)
    if as_json:
        print(json_text(body, indent=2))
        return
    rows = [
        (f"{n}", f"{v['devices']:,} devices, RMS {v['rms_from_target_uS']:.3f} µS from target")
        for n, v in report.layers.items()
    ]
    rows.append(("measured vs trained, RMS (µS)", f"{report.rms_from_target_uS:.3f}"))
    rows.append(
        (
            "read times (s)",
            f"{report.measurement['t_s_min']:g} … {report.measurement['t_s_max']:g} ({report.measurement['times_from']})",
        )
    )
    console.print(_figure_table(f"imported measurement, {run_dir.name}", rows))
    console.print(
        f"saved {report.deployed_array} (measured{'; it replaces the previous deployment' if report.replaced_previous else ''}) and deploy.json; "
        "drift-eval, adapt and report now work on the measured chip",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


# ------------------------------------------------------------------ runs and their reports
@app.command("report")
def report_cmd(
    run: Annotated[
        Optional[Path],
        typer.Argument(parser=_input_path, help="Run directory (default: the latest run).", show_default=False),
    ] = None,
    runs_dir: RunsDirOption = Path("runs"),
    out: Annotated[
        Optional[Path],
        typer.Option(callback=_output_file, parser=_output_path, help="HTML file to write [default: RUN/report.html]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what the page holds as JSON.")] = False,
) -> None:
    """One self-contained HTML page of everything a run's chain produced (figures embedded; docs/report.md)."""
    from pcmmeta.io.report_page import write_report
    from pcmmeta.io.runs import resolve_run

    run_dir = resolve_run(run, runs_dir)
    summary = write_report(run_dir, out)
    if as_json:
        print(json_text({"run_dir": str(run_dir), **dataclasses.asdict(summary)}, indent=2))
        return
    absent = f"; not yet made: {', '.join(summary.absent)}" if summary.absent else ""
    damaged = f"; could not be read: {', '.join(summary.unreadable)}" if summary.unreadable else ""
    console.print(f"wrote {summary.path}{absent}{damaged}", highlight=False, markup=False, soft_wrap=True)


@app.command("runs")
def runs_cmd(
    runs_dir: RunsDirOption = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """One line per run: recipe, family, mode, iterations, held-out metric, chip state, path."""
    from pcmmeta.io.run_index import list_runs

    runs = list_runs(runs_dir)
    if as_json:
        print(json_text({"runs_dir": str(runs_dir), "runs": [dataclasses.asdict(r) for r in runs]}, indent=2))
        return
    if not runs:
        console.print(
            f"no runs in {runs_dir}; start one with `pcmmeta meta-train recipes/sine-quick.yaml`",
            highlight=False,
            markup=False,
        )
        return
    table = Table(title=f"runs in {runs_dir}")
    for column in ("run", "recipe", "family", "mode", "iterations", "held-out before → after", "deployed", "adapted"):
        table.add_column(column, justify="right" if column in ("iterations", "adapted") else "left")

    def number(x):
        return "–" if x is None else f"{x:.4g}"

    for r in runs:
        iterations = f"{'?' if r.iterations_done is None else r.iterations_done} / {'?' if r.iterations_planned is None else r.iterations_planned}"
        metric = f"{r.metric} {number(r.metric_before)} → {number(r.metric_after)}" if r.metric else "–"
        table.add_row(
            ("* " if r.is_latest else "") + r.name,
            r.recipe or "?",
            r.family or "?",
            r.mode or "?",
            iterations,
            metric,
            r.deployed,
            str(r.adapted),
        )
    console.print(table)
    console.print("* the latest run (runs/LATEST); paths: --json", highlight=False, markup=False)


def main() -> None:
    from pcmmeta.runtime.distributed import maybe_initialize

    global _DISTRIBUTED
    try:
        _DISTRIBUTED = maybe_initialize()
    except UserInputError as err:
        err_console.print(f"error: {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    try:  # recent typer vendors click; older typer re-uses click's exceptions
        from typer.exceptions import TyperException as CommandLineError
    except ImportError:
        from click.exceptions import ClickException as CommandLineError  # type: ignore[no-redef]

    try:
        code = app(standalone_mode=False)
    except CommandLineError as err:  # a bad flag or value: one line, not a box
        if type(err).__name__ == "NoArgsIsHelpError":  # bare `pcmmeta`: its help, and nothing went wrong
            print(err.format_message())
            _exit(0)
        ctx = getattr(err, "ctx", None)
        command = ctx.command_path if ctx is not None else "pcmmeta"
        err_console.print(
            f"error: {safe_text(command)}: {safe_text(err.format_message())}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        _exit(getattr(err, "exit_code", 2))
    except OutputError as err:  # not a usage error: the input was fine, the disk was not
        err_console.print(f"error: {safe_text(str(err))}", highlight=False, soft_wrap=True, markup=False)
        _exit(1)
    except (KeyboardInterrupt, typer.Abort):  # Ctrl-C reached Python before our handler (e.g. in a test)
        err_console.print("interrupted; nothing written", highlight=False)
        _exit(130)
    _exit(code if isinstance(code, int) else 0)


def _exit(code: int) -> None:
    """Flush and leave without interpreter teardown (see `pcmmeta.runtime.interrupts`) when running as
    the `pcmmeta` process; raise SystemExit when called in-process (tests, notebooks)."""
    import os

    if _IN_PROCESS:
        sys.exit(code)
    if code == 0 and _DISTRIBUTED:
        from pcmmeta.runtime.distributed import finish

        finish()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_IN_PROCESS = True
_DISTRIBUTED = False  # jax.distributed was started: leave it together at the end (`finish`)


def entry() -> None:
    """The `pcmmeta` process: the interrupt policy (`pcmmeta.runtime.interrupts`), exits without teardown."""
    from pcmmeta.runtime import interrupts

    interrupts.install()
    global _IN_PROCESS
    _IN_PROCESS = False
    from pcmmeta.runtime.compile_cache import enable_compile_cache
    from pcmmeta.runtime.compile_options import set_process_flags

    set_process_flags()  # before JAX's backend starts: XLA reads its flags once
    enable_compile_cache()  # a later start reads compiled programs back (pcmmeta.runtime.compile_cache)
    main()


if __name__ == "__main__":
    entry()
