"""One line per run directory (`pcmmeta runs`), from the run's files alone (no JAX): what a
researcher scans to find a run. A file that is absent or damaged leaves its fields empty."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from pcmmeta.io.report_page import read_json_object, read_metrics


@dataclasses.dataclass
class RunSummary:
    name: str
    path: str
    recipe: str | None  # the recipe's `name`
    family: str | None
    network: str | None
    mode: str | None
    iterations_done: int | None  # the last iteration logged in metrics.jsonl
    iterations_planned: int | None
    metric: str | None
    metric_before: float | None  # held-out, evaluation.json
    metric_after: float | None
    deployed: str  # "no", "programmed (<method>)" or "measured"
    adapted: int  # adapted arrays in the run (adapted-*.eqx)
    is_latest: bool


def _recipe(run_dir: Path) -> dict:
    try:
        body = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return body if isinstance(body, dict) else {}


def _section(recipe: dict, name: str) -> dict:
    value = recipe.get(name)
    return value if isinstance(value, dict) else {}


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summarize_run(run_dir: Path, latest: str | None = None) -> RunSummary:
    recipe = _recipe(run_dir)
    done = None
    if (run_dir / "metrics.jsonl").is_file():
        try:
            rows, _ = read_metrics(run_dir / "metrics.jsonl")
            done = int(rows[-1]["iteration"]) if rows else 0
        except Exception:  # damaged: shown as unknown
            done = None
    metric = before = after = None
    try:
        ev = read_json_object(run_dir / "evaluation.json")
        metric = ev.get("metric") if isinstance(ev.get("metric"), str) else None
        if metric:
            before, after = _number(ev.get(f"{metric}_before")), _number(ev.get(f"{metric}_after"))
    except Exception:  # absent or damaged
        pass
    deployed = "no"
    if (run_dir / "deployed.eqx").is_file():
        deployed = "yes"
        try:
            body = read_json_object(run_dir / "deploy.json")
            deployed = "measured" if body.get("source") == "measured" else f"programmed ({body.get('method', '?')})"
        except Exception:
            pass
    planned = _section(recipe, "train").get("iterations")
    return RunSummary(
        name=run_dir.name,
        path=str(run_dir),
        recipe=recipe.get("name") if isinstance(recipe.get("name"), str) else None,
        family=_section(recipe, "task").get("family"),
        network=_section(recipe, "network").get("kind"),
        mode=recipe.get("mode") if isinstance(recipe.get("mode"), str) else None,
        iterations_done=done,
        iterations_planned=planned if isinstance(planned, int) else None,
        metric=metric,
        metric_before=before,
        metric_after=after,
        deployed=deployed,
        adapted=len(list(run_dir.glob("adapted-*.eqx"))),
        is_latest=run_dir.name == latest,
    )


def list_runs(runs_dir: Path) -> list[RunSummary]:
    """Every run directory under `runs_dir` (a folder with `run.json` or `recipe.yaml`), oldest
    first (by when its first file was written)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    try:
        latest = (runs_dir / "LATEST").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        latest = None
    found = [
        d for d in runs_dir.iterdir() if d.is_dir() and ((d / "run.json").is_file() or (d / "recipe.yaml").is_file())
    ]

    def started(d: Path) -> tuple[float, str]:
        first = d / "run.json" if (d / "run.json").is_file() else d / "recipe.yaml"
        return first.stat().st_mtime, d.name

    return [summarize_run(d, latest) for d in sorted(found, key=started)]
