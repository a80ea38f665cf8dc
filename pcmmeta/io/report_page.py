"""One self-contained HTML page per run directory (`pcmmeta report`).

The page reads the run's files only (no JAX, no network): the recipe, the training log, the
held-out evaluation, the deployment, the programming comparison, on-chip adaptations and pulse
plans, and the drift evaluation (docs/runs.md, docs/chip.md). Every figure is a PNG embedded as
a `data:` URI, the style sheet is inline, so the file can be mailed or archived on its own. A
section whose file is absent says which command makes it; a file that cannot be read gives one
line saying so, and the page is written all the same.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import json
import math
import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path

from pcmmeta.errors import UserInputError
from pcmmeta.io.baseline_names import BASELINE_NAMES
from pcmmeta.io.number_text import mean_sem_text
from pcmmeta.io.runs import RUN_FORMAT, atomic_write_text, read_yaml

#: The page's file name in the run directory when no other is given.
DEFAULT_NAME = "report.html"

#: The sections in page order, by the names `ReportSummary` uses.
SECTIONS = ("run", "training", "evaluation", "deployment", "programming comparison", "adaptation", "drift")

#: Bigger files are not read: run files are a few kB, figures a few hundred kB.
MAX_JSON_BYTES = 64 << 20
MAX_PNG_BYTES = 32 << 20
MAX_TEXT_BYTES = 1 << 20

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclasses.dataclass(frozen=True)
class ReportSummary:
    """The written page and its sections by state: `present` (filled from the run's files),
    `absent` (the file is not there yet: the section names the command that makes it) and
    `unreadable` (the file is there but could not be read: the section says why)."""

    path: Path
    present: tuple[str, ...]
    absent: tuple[str, ...]
    unreadable: tuple[str, ...] = ()


class Unreadable(Exception):
    """A run file that is there but cannot be used; the message is one line."""


# ----------------------------------------------------------------------------- text and numbers
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")


def clean_text(text: str) -> str:
    """`text` fit for an HTML page: line ends made "\\n", and characters HTML does not allow
    (control characters, lone surrogates, non-characters) shown as escapes (`\\u001b`)."""
    text = text.replace("\r\n", "\n")
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def esc(value: object) -> str:
    """Any value as escaped HTML text."""
    return html.escape(clean_text(str(value)), quote=True)


def one_line(text: str, limit: int = 300) -> str:
    """A message on one line of at most `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def number_text(value: object) -> str:
    """A value from a run file as short text: integers with thousands separators, floats to 4
    significant digits, `None` as "–", lists and objects compactly."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isfinite(value) and 1e4 <= abs(value) < 1e15:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        items = [number_text(v) for v in value[:50]]
        return "[" + ", ".join(items) + (", …" if len(value) > 50 else "") + "]"
    if isinstance(value, dict):
        items = [f"{k}: {number_text(v)}" for k, v in list(value.items())[:30]]
        return ", ".join(items) + (", …" if len(value) > 30 else "")
    return one_line(str(value), 500)


def _float(value: object) -> float | None:
    """A JSON number as float; None for null, text, booleans and the like."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# ----------------------------------------------------------------------------- reading run files
def _read_bytes(path: Path, limit: int) -> bytes:
    try:
        if not path.is_file():
            raise Unreadable("not a regular file")
        size = path.stat().st_size
        if size > limit:
            raise Unreadable(f"{size:,} bytes, more than a run file holds ({limit:,})")
        return path.read_bytes()
    except OSError as err:
        raise Unreadable(f"cannot read: {err.strerror or err}") from None


def read_json(path: Path) -> object:
    """A run file's JSON value; `Unreadable` with one line if it is not JSON."""
    raw = _read_bytes(path, MAX_JSON_BYTES)
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise Unreadable("not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise Unreadable(f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except RecursionError:
        raise Unreadable("JSON nested too deeply") from None


def read_json_object(path: Path) -> dict:
    value = read_json(path)
    if not isinstance(value, dict):
        raise Unreadable(f"expected a JSON object, found {type(value).__name__}")
    return value


def read_png(path: Path) -> bytes:
    data = _read_bytes(path, MAX_PNG_BYTES)
    if not data.startswith(PNG_SIGNATURE):
        raise Unreadable("not a PNG file")
    return data


def read_metrics(path: Path) -> tuple[list[dict], int]:
    """The lines of `metrics.jsonl` that are JSON objects with an iteration, and how many other
    non-blank lines there were (a line cut off by a process that died mid-write)."""
    raw = _read_bytes(path, MAX_JSON_BYTES)
    rows, bad = [], 0
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if isinstance(row, dict) and _float(row.get("iteration")) is not None:
            rows.append(row)
        else:
            bad += 1
    return rows, bad


# ----------------------------------------------------------------------------- HTML pieces
def png_img(data: bytes, alt: str) -> str:
    """An <img> holding the PNG itself as a base64 `data:` URI."""
    encoded = base64.b64encode(data).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{encoded}" alt="{esc(alt)}"><figcaption>{esc(alt)}</figcaption></figure>'


def figure_img(fig, alt: str) -> str:
    """A Matplotlib figure as an embedded PNG (the figure is closed)."""
    from pcmmeta.io.plots import figure_png  # Matplotlib: only when a figure is drawn

    return png_img(figure_png(fig), alt)


def table(header: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "", text_columns: Iterable[int] = ()) -> str:
    """A table; `header` and cells are HTML already (escape text with `esc`). Numbers are
    right-aligned; the first column and `text_columns` hold text and are left-aligned."""
    left = {0, *text_columns}

    def cell(tag: str, i: int, content: str) -> str:
        return f'<{tag} class="t">{content}</{tag}>' if i in left else f"<{tag}>{content}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_table(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table of label (text) and value (HTML)."""
    body = "".join(f'<tr><th scope="row">{esc(label)}</th><td>{value}</td></tr>' for label, value in rows)
    return f'<table class="keys"><tbody>{body}</tbody></table>'


def para(text_html: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{text_html}</p>"


def hint(text_html: str) -> str:
    """The line of an absent part: what is missing and the command that makes it."""
    return para(text_html, "hint")


def unreadable(name: str, err: object) -> str:
    return para(f"<code>{esc(name)}</code> could not be read: {esc(one_line(str(err)))}", "error")


def command(text: str) -> str:
    return f"<code>{esc(text)}</code>"


# ----------------------------------------------------------------------------- the sections
@dataclasses.dataclass
class _Section:
    state: str  # "present", "absent" or "unreadable"
    body: str


class _Run:
    """What the sections share: the run directory, its recipe (if readable) and the shell form
    of its path for the commands the page suggests."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.arg = shlex.quote(str(run_dir))
        self.recipe: dict | None = None
        self.recipe_error: str | None = None
        path = run_dir / "recipe.yaml"
        if path.is_file():
            try:
                recipe = read_yaml(path)
                if isinstance(recipe, dict):
                    self.recipe = recipe
                else:
                    self.recipe_error = "not a mapping of recipe sections"
            except UserInputError as err:
                self.recipe_error = str(err)

    def recipe_value(self, section: str, key: str | None = None) -> object:
        if self.recipe is None:
            return None
        value = self.recipe.get(section)
        if key is None:
            return value
        return value.get(key) if isinstance(value, dict) else None

    def file(self, name: str) -> Path:
        return self.dir / name


def _run_section(run: _Run) -> _Section:
    rows = [("name", esc(run.dir.name)), ("path", f"<code>{esc(run.dir.resolve())}</code>")]
    meta = run.file("run.json")
    if not meta.exists():
        rows.append(("format", esc("no run.json: made by pcmmeta before run formats (format 1)")))
    else:
        try:
            found = read_json_object(meta).get("format")
            note = "" if found == RUN_FORMAT else f" (this version of pcmmeta reads format {RUN_FORMAT})"
            rows.append(("format", esc(f"{number_text(found)}{note}")))
        except Unreadable as err:
            rows.append(("format", f'<span class="error">run.json could not be read: {esc(one_line(str(err)))}</span>'))
    path = run.file("recipe.yaml")
    if not path.exists():
        body = key_table(rows) + hint(
            f"no <code>recipe.yaml</code>: not a run directory made by {command('pcmmeta meta-train RECIPE')}"
        )
        return _Section("absent", body)
    for label, section, key in (
        ("recipe", "name", None),
        ("task family", "task", "family"),
        ("network", "network", "kind"),
        ("mode", "mode", None),
        ("inner rule", "inner", "rule"),
        ("device", "device", None),
        ("seed", "seed", None),
    ):
        value = run.recipe_value(section, key)
        if value is not None:
            rows.append((label, esc(number_text(value))))
    parts = [key_table(rows)]
    if run.recipe_error is not None:
        parts.append(unreadable("recipe.yaml", run.recipe_error))
    try:
        text = _read_bytes(path, MAX_TEXT_BYTES).decode("utf-8", errors="replace")
    except Unreadable as err:
        parts.append(unreadable("recipe.yaml", err))
        return _Section("unreadable", "".join(parts))
    parts.append(f"<details open><summary>recipe.yaml</summary><pre>{esc(text)}</pre></details>")
    return _Section("unreadable" if run.recipe_error is not None else "present", "".join(parts))


def _training_section(run: _Run) -> _Section:
    metrics, curve = run.file("metrics.jsonl"), run.file("training-curve.png")
    resume = f"pcmmeta meta-train --resume --run {run.arg}"
    if not metrics.exists() and not curve.exists():
        return _Section(
            "absent",
            hint(f"no training logged yet (<code>metrics.jsonl</code>): run {command(resume)} to train on"),
        )
    parts, rows, state = [], [], "present"
    planned = run.recipe_value("train", "iterations")
    if metrics.exists():
        try:
            lines, bad = read_metrics(metrics)
        except Unreadable as err:
            lines, bad = [], 0
            parts.append(unreadable("metrics.jsonl", err))
            state = "unreadable"
        if lines:
            done = max(int(_float(r["iteration"]) or 0) for r in lines)
            progress = f"{done:,}" + (f" of {number_text(planned)}" if planned is not None else "")
            table_rows = [("iterations done", esc(progress)), ("lines logged", esc(f"{len(lines):,}"))]
            if isinstance(planned, int) and done < planned:
                table_rows.append(("to finish", command(resume)))
            last = lines[-1]
            for key, value in last.items():
                if key != "iteration" and _float(value) is not None:
                    table_rows.append((f"last line: {key}", esc(number_text(value))))
            rows = table_rows
        elif state == "present":
            parts.append(unreadable("metrics.jsonl", "no line holds a JSON object with an iteration"))
            state = "unreadable"
        if bad:
            parts.append(para(esc(f"metrics.jsonl: {bad:,} line(s) could not be read and are left out"), "error"))
    else:
        lines = []
        parts.append(hint(esc("no metrics.jsonl: the training log is missing")))
    if rows:
        parts.insert(0, key_table(rows))
    if curve.exists():
        try:
            parts.append(png_img(read_png(curve), "training curve (training-curve.png)"))
        except Unreadable as err:
            parts.append(unreadable("training-curve.png", err))
    elif lines:
        try:
            from pcmmeta.io.plots import training_curve_figure

            fig = training_curve_figure(lines)
            parts.append(
                figure_img(
                    fig, "training curve drawn from metrics.jsonl (training-curve.png is written when training ends)"
                )
            )
        except Exception as err:  # a line without the losses: the table above still stands
            parts.append(para(f"the training curve could not be drawn: {esc(one_line(str(err)))}", "error"))
    return _Section(state, "".join(parts))


def _evaluation_rows(ev: dict) -> tuple[list[str], list[list[str]]]:
    """The per-step table: one column per metric of the family, one row per inner step (or
    before/after where the file has no per-step lists)."""
    names = [k[: -len("_per_step")] for k in ev if k.endswith("_per_step") and not k.startswith("sem_")]
    names = [n for n in names if isinstance(ev[f"{n}_per_step"], list)]
    primary = ev.get("metric")
    if primary in names:
        names.remove(primary)
        names.insert(0, primary)
    rows: list[list[str]] = []
    if names:
        steps = max(len(ev[f"{n}_per_step"]) for n in names)
        for s in range(steps):
            if s == 0:
                label = "before adaptation"
            elif s < steps - 1:
                label = f"after step {s}"
            else:
                label = f"after adaptation ({s} step{'s' if s > 1 else ''})"
            cells = [esc(label)]
            for n in names:
                means, sems = ev[f"{n}_per_step"], ev.get(f"sem_{n}_per_step")
                mean = _float(means[s]) if s < len(means) else None
                sem = _float(sems[s]) if isinstance(sems, list) and s < len(sems) else None
                cells.append(esc(mean_sem_text(mean, sem)))
            rows.append(cells)
        return names, rows
    names = [k[: -len("_before")] for k in ev if k.endswith("_before") and not k.startswith(("sem_", "loss"))]
    for when in ("before", "after"):
        cells = [esc(f"{when} adaptation")]
        for n in names:
            cells.append(esc(mean_sem_text(_float(ev.get(f"{n}_{when}")), _float(ev.get(f"sem_{n}_{when}")))))
        rows.append(cells)
    return names, rows


def _evaluation_section(run: _Run) -> _Section:
    path, png = run.file("evaluation.json"), run.file("evaluation.png")
    if not path.exists():
        resume = f"pcmmeta meta-train --resume --run {run.arg}"
        return _Section(
            "absent",
            hint(
                f"not evaluated yet: <code>meta-train</code> writes <code>evaluation.json</code> when training ends "
                f"({command(resume)} finishes an interrupted run)"
            ),
        )
    try:
        ev = read_json_object(path)
    except Unreadable as err:
        return _Section("unreadable", unreadable("evaluation.json", err))
    info = []
    for key, label in (("recipe", "recipe"), ("mode", "mode"), ("inner", "inner rule"), ("data", "data")):
        if ev.get(key) is not None:
            info.append((label, esc(number_text(ev[key]))))
    for key, label in (("n_tasks", "held-out tasks"), ("metric", "primary metric")):
        if key in ev:
            info.append((label, esc(number_text(ev[key]))))
    if "loss_before" in ev or "loss_after" in ev:
        info.append(
            ("loss before → after", esc(f"{number_text(ev.get('loss_before'))} → {number_text(ev.get('loss_after'))}"))
        )
    if "pulses_per_task" in ev:
        info.append(("pulses per task (head)", esc(number_text(ev["pulses_per_task"]))))
    names, rows = _evaluation_rows(ev)
    parts = [key_table(info)]
    if names:
        header = [f"held-out {esc(ev.get('metric', ''))} (± s.e.)"] + [esc(n) for n in names]
        parts.append(table(header, rows, "evaluation"))
    else:
        parts.append(para(esc("evaluation.json holds no metric before and after adaptation"), "error"))
    metric = ev.get("metric", "")
    baselines = [
        (f"{label} ({metric})", esc(number_text(ev[key]))) for key, label in BASELINE_NAMES.items() if key in ev
    ]
    if baselines:
        parts.append("<h3>Baselines on the same tasks</h3>" + key_table(baselines))
    if png.exists():
        try:
            parts.append(png_img(read_png(png), "held-out tasks (evaluation.png)"))
        except Unreadable as err:
            parts.append(unreadable("evaluation.png", err))
    else:
        parts.append(hint(esc("no evaluation.png: meta-train draws it with evaluation.json")))
    return _Section("present", "".join(parts))


#: deploy.json's figures in table order: key, label, key of its standard error (or None).
DEPLOY_FIGURES = (
    ("method", "method", None),
    ("seed", "programming seed", None),
    ("n_devices", "devices", None),
    ("tolerance_uS", "tolerance (µS)", None),
    ("rms_error_uS", "RMS error (µS)", "sem_rms_error_uS"),
    ("max_error_uS", "max error (µS)", None),
    ("rms_weight_error", "RMS weight error", None),
    ("max_weight_error", "max weight error", None),
    ("fraction_within_tolerance", "within tolerance (%)", "sem_fraction_within_tolerance"),
    ("pulses_mean", "pulses per device, mean", None),
    ("pulses_p50", "pulses per device, median", None),
    ("pulses_p99", "pulses per device, p99", None),
    ("pulses_max", "pulses per device, max", None),
    ("set_pulses_mean", "SET pulses per device, mean", None),
    ("resets_mean", "RESETs per device, mean", None),
    ("verify_reads_mean", "verify reads per device, mean", None),
    ("time_us_mean", "programming time per device (µs)", "sem_time_us"),
    ("energy_pj_mean", "programming energy per device (pJ)", None),
    ("max_pulses", "pulse budget", None),
    ("devices_at_budget", "devices at the pulse budget", None),
    ("programming_time_s", "programming time (s)", None),
    ("chip_time_s", "chip time (s)", None),
    ("devices_per_s", "simulation speed (devices/s)", None),
    ("deploy_time_s", "simulation time (s)", None),
)
LAYER_LABELS = {
    "devices": "devices",
    "rms_error_uS": "RMS error (µS)",
    "rms_from_target_uS": "RMS deviation from target (µS)",
}
#: Keys shown elsewhere or not at all.
_DEPLOY_OTHER = {"run_dir", "layers", "cost", "source", "measurement", "metric"}


def _figure_cell(body: dict, key: str, sem_key: str | None) -> str:
    value, sem = _float(body.get(key)), _float(body.get(sem_key)) if sem_key else None
    if value is None:
        return number_text(body.get(key))
    if key.startswith("fraction_"):  # shown in %
        return mean_sem_text(100 * value, None if sem is None else 100 * sem)
    if sem is not None:
        return mean_sem_text(value, sem)
    return number_text(body.get(key))


def _figures_rows(body: dict) -> list[tuple[str, str]]:
    shown = {k for k, _, _ in DEPLOY_FIGURES} | {s for _, _, s in DEPLOY_FIGURES if s}
    rows = [(label, esc(_figure_cell(body, key, sem))) for key, label, sem in DEPLOY_FIGURES if key in body]
    for key, value in body.items():
        if key not in shown and key not in _DEPLOY_OTHER and not isinstance(value, (dict, list)):
            rows.append((key, esc(number_text(value))))
    return rows


def _measured_box(body: dict, what: str) -> str:
    measurement = body.get("measurement")
    parts = [
        '<div class="measured"><p><strong>Measured on a chip.</strong> '
        f"{esc(what)} was imported from a chip measurement, not simulated.</p>"
    ]
    if isinstance(measurement, dict):
        parts.append(key_table((str(k), esc(number_text(v))) for k, v in measurement.items()))
    elif measurement is not None:
        parts.append(para(esc(f"measurement: {number_text(measurement)}")))
    parts.append("</div>")
    return "".join(parts)


def _deployment_section(run: _Run) -> _Section:
    path = run.file("deploy.json")
    if not path.exists():
        deploy = command(f"pcmmeta deploy --run {run.arg}")
        imported = command(f"pcmmeta import-chip MEASURED.csv --run {run.arg}")
        return _Section("absent", hint(f"not deployed yet: run {deploy} (or {imported} for a chip's measurement)"))
    try:
        body = read_json_object(path)
    except Unreadable as err:
        return _Section("unreadable", unreadable("deploy.json", err))
    parts = []
    if body.get("source") == "measured":
        parts.append(_measured_box(body, "The deployed array"))
    parts.append(key_table(_figures_rows(body)))
    layers = body.get("layers")
    if isinstance(layers, dict) and layers:
        per_layer = {str(name): f if isinstance(f, dict) else {} for name, f in layers.items()}
        keys = list(dict.fromkeys(k for f in per_layer.values() for k in f))
        rows = [[esc(name)] + [esc(number_text(f.get(k))) for k in keys] for name, f in per_layer.items()]
        header = ["layer"] + [esc(LAYER_LABELS.get(k, k)) for k in keys]
        parts.append("<h3>Per layer</h3>" + table(header, rows))
    cost = body.get("cost")
    if isinstance(cost, dict) and cost:
        parts.append("<h3>Cost model</h3>" + key_table((str(k), esc(number_text(v))) for k, v in cost.items()))
    return _Section("present", "".join(parts))


def _metric_rows(methods: list[dict], metric_name: str) -> list[tuple[str, list[str]]]:
    """Rows of a comparison's held-out metric: one per (condition, hours) any method has."""
    keys: dict[tuple[str, str], None] = {}
    for m in methods:
        metric = m.get("metric")
        if isinstance(metric, dict):
            for condition, by_hours in metric.items():
                if isinstance(by_hours, dict):
                    for hours in by_hours:
                        keys[(str(condition), str(hours))] = None
    rows = []
    for condition, hours in keys:
        cells = []
        for m in methods:
            metric = m.get("metric")
            by_hours = metric.get(condition) if isinstance(metric, dict) else None
            point = by_hours.get(hours) if isinstance(by_hours, dict) else None
            if isinstance(point, dict):
                cells.append(esc(mean_sem_text(_float(point.get("mean")), _float(point.get("sem")))))
            else:
                cells.append(esc(number_text(point)))
        rows.append((f"held-out {metric_name}, {condition}, {hours} h".replace(" , ", " "), cells))
    return rows


def _comparison_section(run: _Run) -> _Section:
    path = run.file("programming-comparison.json")
    if not path.exists():
        return _Section(
            "absent",
            hint(f"no programming comparison yet: run {command(f'pcmmeta deploy --compare --run {run.arg}')}"),
        )
    try:
        body = read_json_object(path)
        methods = body.get("methods")
        if not isinstance(methods, list) or not methods or not all(isinstance(m, dict) for m in methods):
            raise Unreadable('"methods" is not a list of objects')
    except Unreadable as err:
        return _Section("unreadable", unreadable("programming-comparison.json", err))
    header = ["figure"] + [esc(number_text(m.get("method", f"method {i + 1}"))) for i, m in enumerate(methods)]
    rows = []
    shown = {"method"}
    for key, label, sem in DEPLOY_FIGURES:
        if key == "method":
            continue
        if any(key in m for m in methods):
            rows.append([esc(label)] + [esc(_figure_cell(m, key, sem)) if key in m else "–" for m in methods])
        shown |= {key} | ({sem} if sem else set())
    extra: dict[str, None] = {}
    for m in methods:
        for key, value in m.items():
            if key not in shown and key != "metric" and not isinstance(value, (dict, list)):
                extra[key] = None
    for key in extra:
        rows.append([esc(key)] + [esc(number_text(m.get(key))) for m in methods])
    metric_name = body.get("metric") if isinstance(body.get("metric"), str) else "metric"
    for label, cells in _metric_rows(methods, str(metric_name)):
        rows.append([esc(label)] + cells)
    info = [
        (k, esc(number_text(body[k])))
        for k in ("seed", "seeds", "tasks", "hours", "split")
        if k in body and not isinstance(body[k], dict)
    ]
    parts = [key_table(info)] if info else []
    parts.append(table(header, rows, "comparison"))
    cost = body.get("cost")
    if isinstance(cost, dict) and cost:
        parts.append("<h3>Cost model</h3>" + key_table((str(k), esc(number_text(v))) for k, v in cost.items()))
    png = run.file("programming-comparison.png")
    if png.exists():
        try:
            parts.append(png_img(read_png(png), "programming comparison (programming-comparison.png)"))
        except Unreadable as err:
            parts.append(unreadable("programming-comparison.png", err))
    return _Section("present", "".join(parts))


def _metrics_change(body: dict) -> str:
    """ "name: before → after" for every metric of an adaptation, the primary one first."""
    before, after = body.get("before"), body.get("after")
    if not isinstance(before, dict):
        return number_text(before)
    names = list(before)
    primary = body.get("metric")
    if primary in names:
        names.remove(primary)
        names.insert(0, primary)
    after = after if isinstance(after, dict) else {}
    text = "; ".join(f"{n}: {number_text(before.get(n))} → {number_text(after.get(n))}" for n in names)
    predicted = body.get("after_simulated")
    if isinstance(predicted, dict) and predicted:
        text += " (the plan predicted " + "; ".join(f"{n}: {number_text(v)}" for n, v in predicted.items()) + ")"
    return text


ADAPT_COLUMNS = (
    "file",
    "source",
    "at (h)",
    "steps",
    "task",
    "shots",
    "set",
    "before → after",
    "per step",
    "devices pulsed",
    "pulses",
    "energy (pJ)",
)
#: A pulse plan's keys in column order (any others follow in the file's order).
PLAN_KEYS = (
    "task_seed",
    "at_hours",
    "steps",
    "plan_csv",
    "devices",
    "pulses",
    "support_metric_before",
    "support_before",
    "query_before",
    "query_after_simulated",
)
_PLAN_OTHER = {"run_dir", "plan_json"}


def _adaptation_row(path: Path) -> list[str] | str:
    try:
        body = read_json_object(path)
    except Unreadable as err:
        return str(err)
    source = body.get("source")
    source_cell = '<strong class="badge">measured</strong>' if source == "measured" else esc(source or "simulated")
    return [
        esc(path.name),
        source_cell,
        esc(number_text(body.get("at_hours"))),
        esc(number_text(body.get("steps"))),
        esc(number_text(body.get("task"))),
        esc(number_text(body.get("shots"))),
        esc(number_text(body.get("set_name"))),
        esc(_metrics_change(body)),
        esc(number_text(body.get("per_step"))),
        esc(number_text(body.get("devices_pulsed"))),
        esc(number_text(body.get("total_pulses"))),
        esc(number_text(body.get("energy_pJ"))),
    ]


def _adaptation_section(run: _Run) -> _Section:
    reports = sorted(run.dir.glob("adapted-*.json"))
    plans = sorted(run.dir.glob("plan-*.json"))
    arrays = sorted(run.dir.glob("adapted-*.eqx"))
    parts, readable, failed = [], 0, 0
    if reports:
        rows, errors = [], []
        for path in reports:
            row = _adaptation_row(path)
            if isinstance(row, str):
                errors.append(unreadable(path.name, row))
                failed += 1
            else:
                rows.append(row)
                readable += 1
        if rows:
            parts.append(table([esc(c) for c in ADAPT_COLUMNS], rows, "adaptation", (1, 4, 6, 7, 8)))
        parts += errors
    else:
        parts.append(
            hint(
                f"no on-chip adaptation yet (<code>adapted-*.json</code>): run {command(f'pcmmeta adapt --run {run.arg}')}"
            )
        )
    without = [p.name for p in arrays if not p.with_suffix(".json").exists()]
    if without:
        parts.append(para(esc("adapted arrays without a report: " + ", ".join(without))))
    parts.append("<h3>Pulse plans</h3>")
    if plans:
        rows, errors, bodies = [], [], []
        for path in plans:
            try:
                bodies.append((path, read_json_object(path)))
            except Unreadable as err:
                errors.append(unreadable(path.name, err))
                failed += 1
        present = dict.fromkeys(k for _, body in bodies for k in body if k not in _PLAN_OTHER)
        columns = [k for k in PLAN_KEYS if k in present] + [k for k in present if k not in PLAN_KEYS]
        for path, body in bodies:
            rows.append([esc(path.name)] + [esc(number_text(body.get(k))) for k in columns])
            readable += 1
        if rows:
            text = [i + 1 for i, c in enumerate(columns) if any(isinstance(b.get(c), (str, dict)) for _, b in bodies)]
            parts.append(table(["file"] + [esc(c) for c in columns], rows, "plans", text))
        parts += errors
    else:
        plan = command(f"pcmmeta adapt --run {run.arg} --plan PULSES.csv")
        parts.append(hint(f"no pulse plans (<code>plan-*.json</code>) in this run: {plan} writes one for a lab"))
    if readable:
        state = "present"
    elif failed:
        state = "unreadable"
    else:
        state = "absent"
    return _Section(state, "".join(parts))


def _drift_section(run: _Run) -> _Section:
    path = run.file("drift.json")
    if not path.exists():
        return _Section(
            "absent", hint(f"no drift evaluation yet: run {command(f'pcmmeta drift-eval --run {run.arg}')}")
        )
    try:
        body = read_json_object(path)
        metric = body.get("metric")
        results = body.get("results")
        if not isinstance(metric, str):
            raise Unreadable('"metric" is not the name of a metric')
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise Unreadable('"results" is not a list of objects')
        rows = []
        for r in results:
            at, mean = _float(r.get("hours")), _float(r.get(metric))
            if at is None or not isinstance(r.get("condition"), str):
                raise Unreadable(f'a result without "hours" or "condition": {one_line(json.dumps(r), 120)}')
            rows.append(
                {
                    "hours": at,
                    "condition": r["condition"],
                    metric: mean,
                    "sem": _float(r.get("sem")),
                    "pulses_per_task": r.get("pulses_per_task"),
                }
            )
    except Unreadable as err:
        return _Section("unreadable", unreadable("drift.json", err))
    info = [(k, esc(number_text(body[k]))) for k in ("metric", "tasks", "inner_steps", "seed") if k in body]
    parts = [key_table(info)]
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    hours = sorted(set(r["hours"] for r in rows))
    cells = {(r["hours"], r["condition"]): r for r in rows}
    table_rows = []
    for h in hours:
        row = [esc(number_text(h))]
        for c in conditions:
            r = cells.get((h, c))
            row.append("–" if r is None else esc(mean_sem_text(r[metric], r["sem"])))
        table_rows.append(row)
    header = [esc("hours since deployment")] + [esc(c) for c in conditions]
    parts.append(table(header, table_rows, "drift"))
    pulses = [(c, [cells[(h, c)]["pulses_per_task"] for h in hours if (h, c) in cells]) for c in conditions]
    pulses = [(c, p) for c, p in pulses if any(_float(v) for v in p)]
    if pulses:
        parts.append(
            para(
                esc("pulses per task: " + "; ".join(f"{c}: {', '.join(number_text(v) for v in p)}" for c, p in pulses))
            )
        )
    drawn = [  # a log axis: positive times only; no error bar where the s.e. is unknown
        {**r, "sem": 0.0 if r["sem"] is None else r["sem"]}
        for r in sorted(rows, key=lambda r: r["hours"])
        if r[metric] is not None and r["hours"] > 0
    ]
    if drawn:
        try:
            from pcmmeta.io.plots import drift_figure

            title = f"{run.dir.name}: {number_text(body.get('tasks'))} held-out tasks per point (± s.e.)"
            baselines = body.get("baselines")  # absent in drift.json from before baselines were kept
            baselines = (
                {k: v for k, v in baselines.items() if isinstance(v, (int, float))}
                if isinstance(baselines, dict)
                else None
            )
            figure = drift_figure(drawn, title, metric, baselines)
            parts.append(figure_img(figure, f"held-out {metric} vs time since deployment"))
        except Exception as err:  # the table above still stands
            parts.append(para(f"the drift plot could not be drawn: {esc(one_line(str(err)))}", "error"))
    return _Section("present", "".join(parts))


_SECTION_BUILDERS: tuple[tuple[str, str, str, Callable[[_Run], _Section]], ...] = (
    ("run", "run", "Run", _run_section),
    ("training", "training", "Training", _training_section),
    ("evaluation", "evaluation", "Held-out evaluation", _evaluation_section),
    ("deployment", "deployment", "Deployment", _deployment_section),
    ("programming comparison", "programming-comparison", "Programming comparison", _comparison_section),
    ("adaptation", "adaptation", "On-chip adaptation", _adaptation_section),
    ("drift", "drift", "Drift", _drift_section),
)

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
  max-width: 70em; padding: 0 1em; color: #1b1b1b; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
nav ol { columns: 2; }
table { border-collapse: collapse; margin: 0.6em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th { background: #f4f4f4; }
table.keys th { text-align: left; font-weight: normal; color: #444; }
table.keys td, th.t, td.t { text-align: left; }
td.t:first-child { white-space: nowrap; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
code { font-size: 0.92em; }
figure { margin: 0.8em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
p.hint { color: #555; font-style: italic; }
p.error { color: #a00000; }
.measured { border: 2px solid #c77700; background: #fff6e5; padding: 0.4em 1em; margin: 0.8em 0; }
.badge { color: #c77700; }
footer { margin-top: 3em; color: #777; font-size: 0.85em; }
"""


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("pcmmeta")
    except Exception:  # not installed as a distribution (a source tree on sys.path)
        return "unknown"


def report_html(run_dir: Path) -> tuple[str, dict[str, str]]:
    """The page of a run directory and the state of each section ("present", "absent" or
    "unreadable"). Reads files only; never raises for a damaged run file."""
    run = _Run(Path(run_dir))
    states: dict[str, str] = {}
    toc, sections = [], []
    for name, anchor, heading, build in _SECTION_BUILDERS:
        try:
            section = build(run)
        except Exception as err:  # a file of an unexpected shape: one line, the page still written
            section = _Section(
                "unreadable", para(f"could not be read: {esc(one_line(f'{type(err).__name__}: {err}'))}", "error")
            )
        states[name] = section.state
        toc.append(f'<li><a href="#{anchor}">{esc(heading)}</a></li>')
        sections.append(f'<section id="{anchor}"><h2>{esc(heading)}</h2>{section.body}</section>')
    title = f"pcmmeta report: {run.dir.name}"
    written = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<header><h1>{esc(title)}</h1>"
        f"<p>run directory <code>{esc(run.dir.resolve())}</code></p></header>\n"
        f"<nav><ol>{''.join(toc)}</ol></nav>\n<main>\n"
        + "\n".join(sections)
        + f"\n</main>\n<footer><p>written by pcmmeta {esc(_version())} on {esc(written)}</p></footer>\n"
        "</body>\n</html>\n"
    )
    return page, states


def write_report(run_dir: Path, out: Path | None = None) -> ReportSummary:
    """Write the HTML page of `run_dir` to `out` (default `run_dir/report.html`) atomically.
    A run directory that is not a folder is a `UserInputError`; a page that cannot be written,
    an `OutputError` naming it. Absent or damaged run files are said so on the page."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserInputError(f"{run_dir}: no such run directory")
    out = Path(out) if out is not None else run_dir / DEFAULT_NAME
    page, states = report_html(run_dir)
    atomic_write_text(out, page)
    return ReportSummary(
        path=out,
        present=tuple(n for n in SECTIONS if states[n] == "present"),
        absent=tuple(n for n in SECTIONS if states[n] == "absent"),
        unreadable=tuple(n for n in SECTIONS if states[n] == "unreadable"),
    )
