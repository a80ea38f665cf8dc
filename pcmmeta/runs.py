"""Files that must never be seen half-written: atomic writes."""

from __future__ import annotations

import datetime as _dt
import json as _json
import os
import tempfile
from pathlib import Path

from . import interrupts
from .errors import OutputError, UserInputError


def default_file_mode() -> int:
    """0666 minus the process's umask: the mode `open()` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    tmp = _write_temporary(path, data)
    try:
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write: {err.strerror}") from None
    finally:
        interrupts.untrack(tmp)


def _write_temporary(path: Path, data: bytes) -> str:
    """`data` in a new temporary file beside `path` (same folder, so a rename is atomic)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OutputError(f"{path}: cannot write: {err.strerror}") from None
    interrupts.track(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, default_file_mode())  # mkstemp makes 0600; outputs get the usual mode
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        interrupts.untrack(tmp)
        if isinstance(err, OSError):
            raise OutputError(f"{path}: cannot write: {err.strerror or err}") from None
        raise
    return tmp


def atomic_write_unique(folder: Path, stem: str, suffix: str, data: bytes) -> Path:
    """Write `data` as `folder/stem{suffix}`, or `stem-1`, `stem-2`, … if taken: the name is
    claimed atomically (a hard link fails if it exists), so concurrent processes never write
    the same file, and the file appears complete or not at all."""
    folder = Path(folder)
    tmp = _write_temporary(folder / f"{stem}{suffix}", data)
    try:
        i = 0
        while True:
            path = folder / (f"{stem}{suffix}" if i == 0 else f"{stem}-{i}{suffix}")
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                i += 1
    except OSError as err:
        raise OutputError(f"{folder / (stem + suffix)}: cannot write: {err.strerror}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
        interrupts.untrack(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_yaml(path: Path):
    """Parse a user's YAML file (a byte-order mark is fine); a syntax error names file and line."""
    import yaml

    path = Path(path)
    text = read_user_file(path, MAX_YAML_BYTES).decode("utf-8-sig", errors="replace")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UserInputError(f"{path}{where}: not valid YAML") from None
    except RecursionError:
        raise UserInputError(f"{path}: YAML nested too deeply") from None


#: Recipes and device files are small; a bigger file is a mistake (or /dev/zero).
MAX_YAML_BYTES = 1 << 20


def read_user_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a user's regular file of at most `max_bytes`; one-line errors otherwise."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path}: no such file")
    if path.is_dir():
        raise UserInputError(f"{path}: is a folder, expected a file")
    if not path.is_file():
        raise UserInputError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size > max_bytes:
        raise UserInputError(f"{path}: {size:,} bytes, more than this kind of file may hold ({max_bytes:,})")
    try:
        return path.read_bytes()
    except OSError as err:
        raise UserInputError(f"{path}: cannot read: {err.strerror}") from None


# ----------------------------------------------------------------------------- run directories
LATEST = "LATEST"
#: Layout version of run directories (checkpoint, deployed arrays). 2: networks as plug-ins
#: (named layers); runs without `run.json` were made by pcmmeta before that and cannot be loaded.
RUN_FORMAT = 2


def new_run_dir(runs_root: Path, name: str) -> Path:
    """runs/<name>-<YYYYmmdd-HHMMSS>/ (a suffix if that exists already)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(runs_root) / f"{name}-{stamp}"
    Path(runs_root).mkdir(parents=True, exist_ok=True)
    path, i = base, 1
    while True:  # mkdir claims the name atomically: concurrent runs get different folders
        try:
            path.mkdir()
            return path
        except FileExistsError:
            path, i = Path(f"{base}-{i}"), i + 1


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
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json_text(record) + "\n")
    except OSError as err:
        raise OutputError(f"{path}: cannot write: {err.strerror}") from None


def _finite(obj):
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_text(obj, indent: int | None = None) -> str:
    """Strict JSON: NaN and ±inf become null (JSON has no such numbers)."""
    return _json.dumps(_finite(obj), indent=indent, allow_nan=False)


def write_json(path: Path, obj) -> None:
    atomic_write_text(Path(path), json_text(obj, indent=2) + "\n")
