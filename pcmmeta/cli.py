"""The `pcmmeta` command line: parse, call the library, print. User errors: one line, exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .errors import UserInputError

app = typer.Typer(
    name="pcmmeta",
    help="Meta-learning for spiking networks on simulated phase-change-memory synapses.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
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


def _parse_floats(text: str, option: str) -> list[float]:
    values = []
    for part in text.split(","):
        try:
            values.append(float(part))
        except ValueError:
            fail(f"{option}: not a number: {part.strip()!r}")
    return values


@app.command("fit-device")
def fit_device_cmd(
    data: Annotated[list[Path], typer.Argument(help="Measurement CSVs: device_id,pulse,t_s,g_uS (docs/device-model.md).", show_default=False)],
    out: Annotated[Path, typer.Option(help="Device YAML to write.")] = Path("fitted-device.yaml"),
    prior: Annotated[str, typer.Option(help="Device whose values stand for the parameters the data cannot constrain.")] = "nandakumar2018",
    name: Annotated[Optional[str], typer.Option(help="Name recorded in the device file (default: the file's stem).")] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples over devices for the standard errors.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimates as JSON instead of a table.")] = False,
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG of data and fitted model.")] = None,
) -> None:
    """Fit the PCM device model to measurement CSVs and write a device YAML."""
    from .device import load_device
    from .fit import fit_device
    from .measurements import read_measurements

    try:
        prior_device = load_device(prior)
        measurements = read_measurements(data)
    except UserInputError as err:
        fail(str(err))
    if measurements.ignored_columns and not as_json:
        err_console.print(f"note: ignored extra columns: {', '.join(measurements.ignored_columns)}", highlight=False)
    with progress_bar() as bar:
        task = bar.add_task("bootstrap", total=bootstrap, info="")
        result = fit_device(
            measurements, prior_device, n_bootstrap=bootstrap, seed=seed, name=name or out.stem,
            progress=lambda i: bar.update(task, completed=i),
        )
    result.device.save(out)
    if plot is not None:
        from .plots import plot_device_fit

        plot_device_fit(measurements, result, plot)
    report = result.to_json()
    report.update(device_file=str(out), ignored_columns=measurements.ignored_columns, files=[str(p) for p in data])
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"PCM device fit → {out}")
    for column in ("parameter", "estimate", "± s.e.", "status"):
        table.add_column(column, justify="right" if column in ("estimate", "± s.e.") else "left")
    for key, entry in report["parameters"].items():
        se = entry["stderr"]
        table.add_row(key, f"{entry['value']:.4g}", "" if se is None else f"{se:.2g}", entry["status"])
    console.print(table)
    gof = report["goodness_of_fit"]
    console.print(
        f"goodness of fit: reads χ²/dof = {gof['reads_reduced_chi2']:.3f} (1 if the read model fits); "
        f"increment z-scores mean {gof['increment_z_mean']:.3f}, std {gof['increment_z_std']:.3f} (0 and 1 if it fits); "
        f"{gof['n_reads']} reads, {gof['n_groups']} (device, pulse) groups, {gof['n_pulse_pairs']} pulse pairs; "
        f"s.e. from {bootstrap} bootstrap resamples over devices",
        highlight=False,
    )
    if plot is not None:
        console.print(f"plot: {plot}")


@app.command("simulate-measurements")
def simulate_measurements_cmd(
    out: Annotated[Path, typer.Option(help="CSV to write.")] = Path("simulated-measurements.csv"),
    devices: Annotated[int, typer.Option(min=2, help="Number of simulated devices.")] = 200,
    device: Annotated[str, typer.Option(help="Built-in device name or device YAML to simulate.")] = "nandakumar2018",
    pulses: Annotated[int, typer.Option(min=1, help="SET pulses after the RESET, per device.")] = 20,
    read_times: Annotated[str, typer.Option(help="Read times after every programming event, s, comma-separated.")] = "2,10,30",
    drift_read_times: Annotated[str, typer.Option(help="Extra, later read times after the RESET, every --drift-every-th pulse and the last, s.")] = "100,1000,10000",
    drift_every: Annotated[int, typer.Option(min=1, help="Pulse interval of the drift reads.")] = 5,
    seed: Annotated[int, typer.Option(help="PRNG seed.")] = 0,
) -> None:
    """Write synthetic measurements from a device model, in fit-device's CSV format."""
    import jax

    from .device import load_device
    from .measurements import MIN_READS_PER_PULSE, simulate_measurements, write_measurements

    times = _parse_floats(read_times, "--read-times")
    if len(times) < MIN_READS_PER_PULSE or min(times) < 0:
        fail(f"--read-times: need at least {MIN_READS_PER_PULSE} times ≥ 0 s")
    drift_times = _parse_floats(drift_read_times, "--drift-read-times") if drift_read_times.strip() else []
    if drift_times and min(drift_times) <= max(times):
        fail("--drift-read-times: every drift read time must come after the last --read-times value")
    try:
        model = load_device(device)
    except UserInputError as err:
        fail(str(err))
    data = simulate_measurements(model, jax.random.key(seed), devices, pulses, times, drift_times, drift_every)
    write_measurements(data, out)
    console.print(f"wrote {data.g_uS.size} simulated reads of {devices} devices ({model.name}) to {out}")


def _evaluation_table(title: str, ev: dict) -> Table:
    table = Table(title=title)
    for column in ("query MSE", "all time steps", "last time step"):
        table.add_column(column, justify="right" if column != "query MSE" else "left")
    table.add_row("before the pulse", f"{ev['mse_before']:.3f} ± {ev['sem_before']:.3f}", f"{ev['mse_before_last']:.3f}")
    table.add_row("after the pulse", f"{ev['mse_after']:.3f} ± {ev['sem_after']:.3f}", f"{ev['mse_after_last']:.3f}")
    table.add_row("zero predictor", f"{ev['mse_zero']:.3f}", f"{ev['mse_zero_last']:.3f}")
    return table


@app.command("meta-train")
def meta_train_cmd(
    recipe: Annotated[Optional[Path], typer.Argument(help="Recipe YAML (docs/recipes.md). Not needed with --resume.", show_default=False)] = None,
    runs_dir: Annotated[Path, typer.Option(help="Folder of run directories.")] = Path("runs"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue a run from its last checkpoint (the latest run unless --run).")] = False,
    run: Annotated[Optional[Path], typer.Option(help="Run directory to resume.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final evaluation as JSON.")] = False,
) -> None:
    """Meta-train a spiking network on PCM synapses with MAML (blind-pulse inner loop)."""
    import yaml

    from .recipe import load_recipe, validate
    from .runs import resolve_run
    from .train import NaNLossError, start_run, train

    try:
        if resume:
            run_dir = resolve_run(run, runs_dir)
            recipe_dict = validate(yaml.safe_load((run_dir / "recipe.yaml").read_text()), str(run_dir / "recipe.yaml"))
        else:
            if recipe is None:
                fail("give a recipe (e.g. recipes/sine-quick.yaml), or --resume")
            recipe_dict = load_recipe(recipe)
            from .device import load_device

            load_device(recipe_dict["device"])
    except UserInputError as err:
        fail(str(err))
    if not resume:
        run_dir = start_run(recipe_dict, runs_dir)
    total = recipe_dict["train"]["iterations"]
    err_console.print(f"run directory: {run_dir}", highlight=False)
    bar = progress_bar(transient=False)
    with bar:
        task = bar.add_task("meta-train", total=total, info="compiling…")
        t_last = [None, 0]

        def on_iteration(it, loss, record):
            import time

            now = time.perf_counter()
            if t_last[0] is None:
                t_last[0], t_last[1] = now, it
            rate = (it - t_last[1]) / (now - t_last[0]) if now > t_last[0] else 0.0
            bar.update(task, completed=it, info=f"loss {loss:.3f} (before pulse {record['loss_before']:.3f})  {rate:.2f} it/s")

        try:
            outcome = train(recipe_dict, run_dir, resume=resume, on_iteration=on_iteration)
        except NaNLossError as err:
            bar.stop()
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
    if outcome.interrupted:
        err_console.print(f"interrupted at iteration {int(outcome.state.iteration)}; checkpoint saved. Continue with: pcmmeta meta-train --resume --run {run_dir}", highlight=False)
        raise typer.Exit(130)
    ev = outcome.evaluation.to_json()
    if as_json:
        print(json.dumps({"run_dir": str(run_dir), **ev}, indent=2))
        return
    console.print(_evaluation_table(f"held-out evaluation: {ev['n_tasks']} tasks, {ev['pulses_per_task']:.1f} pulses per task", ev))
    console.print(f"run directory: {run_dir} (training-curve.png, evaluation.png, evaluation.json)", highlight=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
