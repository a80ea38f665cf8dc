"""Files that must never be seen half-written: atomic writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def default_file_mode() -> int:
    """0666 minus the process's umask: the mode `open()` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, default_file_mode())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_yaml(path: Path):
    """Parse a user's YAML file (a byte-order mark is fine); a syntax error names file and line."""
    import yaml

    from .errors import UserInputError

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UserInputError(f"{path}{where}: not valid YAML") from None


# ----------------------------------------------------------------------------- run directories
import datetime as _dt
import json as _json

from .errors import UserInputError

LATEST = "LATEST"
#: Layout version of run directories (checkpoint, deployed arrays). 2: networks as plug-ins
#: (named layers); runs without `run.json` were made by pcmmeta before that and cannot be loaded.
RUN_FORMAT = 2


def new_run_dir(runs_root: Path, name: str) -> Path:
    """runs/<name>-<YYYYmmdd-HHMMSS>/ (a suffix if that exists already)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(runs_root) / f"{name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    path.mkdir(parents=True)
    return path


def write_run_format(run_dir: Path) -> None:
    write_json(Path(run_dir) / "run.json", {"format": RUN_FORMAT})


def check_run_format(run_dir: Path) -> None:
    """A one-line error for a run directory made by an older pcmmeta."""
    meta = Path(run_dir) / "run.json"
    try:
        found = _json.loads(meta.read_text())["format"]
    except (OSError, ValueError, KeyError, TypeError):
        found = 1
    if found != RUN_FORMAT:
        raise UserInputError(
            f"{run_dir}: made by an older version of pcmmeta (run format {found}, this version reads {RUN_FORMAT}); "
            "train it again with `pcmmeta meta-train RECIPE`"
        )


def set_latest(run_dir: Path) -> None:
    atomic_write_text(run_dir.parent / LATEST, run_dir.name + "\n")


def resolve_run(run: Path | None, runs_root: Path = Path("runs")) -> Path:
    """The run directory `run`, or the latest under `runs_root`; a clear error if none."""
    if run is not None:
        if not (Path(run) / "recipe.yaml").is_file():
            raise UserInputError(f"{run}: not a run directory (no recipe.yaml); run `pcmmeta meta-train RECIPE` first")
        return Path(run)
    pointer = Path(runs_root) / LATEST
    if not pointer.is_file():
        raise UserInputError(f"no run found under {runs_root}/; run `pcmmeta meta-train recipes/sine-quick.yaml` first")
    path = Path(runs_root) / pointer.read_text().strip()
    if not (path / "recipe.yaml").is_file():
        raise UserInputError(f"{pointer} points to {path}, which is not a run directory; run `pcmmeta meta-train RECIPE` first")
    return path


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(_json.dumps(record) + "\n")


def write_json(path: Path, obj) -> None:
    atomic_write_text(Path(path), _json.dumps(obj, indent=2) + "\n")
