"""Files that must never be seen half-written: atomic writes."""

from __future__ import annotations

import datetime as _dt
import json as _json
import os
import tempfile
from pathlib import Path

import yaml

from pcmmeta.core.fields import check_name
from pcmmeta.errors import OutputError, UserInputError, short_repr
from pcmmeta.io.writable import check_writable
from pcmmeta.runtime import interrupts


def default_file_mode() -> int:
    """0666 minus the process's umask: the mode `open()` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    if path.is_dir():  # os.replace would say only "Is a directory"
        raise UserInputError(f"{path}: is a folder where a file belongs (a damaged run?); remove or rename it")
    if path.exists() and not path.is_file():  # a device or pipe would be replaced by a file
        raise UserInputError(f"{path}: not a regular file (a device or pipe?); give a file name")
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
    """Parse a user's YAML file strictly: UTF-8 (a byte-order mark is fine), no duplicate keys, no
    NUL characters, aliases expanding to at most `MAX_YAML_VALUES` values, nesting bounded. Every
    refusal is a `UserInputError` naming the file (and the line where YAML knows it)."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:
        raise UserInputError(_oversized_yaml(path))
    raw = read_user_file(path, MAX_YAML_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserInputError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); save the file as UTF-8"
        ) from None
    loader = None
    try:
        loader = _StrictLoader(text)  # the reader refuses non-printable characters here
        node = loader.get_single_node()
        if node is None:
            return None
        values = _expanded_size(node, {})
        if values > MAX_YAML_VALUES:
            raise UserInputError(
                f"{path}: YAML aliases expand to more than {MAX_YAML_VALUES:,} values (an alias bomb?)"
            )
        return loader.construct_document(node)
    except yaml.reader.ReaderError as err:  # a control character YAML does not allow (NUL, ESC…)
        line = text[: err.position].count("\n") + 1
        code = err.character if isinstance(err.character, int) else ord(err.character)
        key = _key_on_line(text[text.rfind("\n", 0, err.position) + 1 :])
        raise UserInputError(f"{path}:{line}:{key} not valid YAML: character U+{code:04X} is not allowed") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        what = err.problem if isinstance(err, _StrictYAMLError) else "not valid YAML"
        raise UserInputError(f"{path}{where}: {what}") from None
    except RecursionError:
        raise UserInputError(f"{path}: YAML nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _oversized_yaml(path: Path) -> str:
    """Why a YAML file over `MAX_YAML_BYTES` is refused; when one line holds most of it (a
    pasted 50 MB value), that line and its key. Scanned in blocks, never held whole."""
    size = path.stat().st_size
    block_size = 1 << 16  # a line longer than half the file spans whole blocks
    line, start, offset = 1, 0, 0  # current line number, offset of its start, bytes read
    longest = (0, 1, 0)  # (length, line number, offset of its start)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(block_size), b""):
            first = block.find(b"\n")
            if first >= 0:  # the lines between the block's first and last newline are short
                longest = max(longest, (offset + first - start, line, start))
                line, start = line + block.count(b"\n"), offset + block.rfind(b"\n") + 1
            offset += len(block)
        longest = max(longest, (offset - start, line, start))
        length, where, begin = longest
        fh.seek(begin)
        head = fh.read(200).decode("utf-8", errors="replace")
    limit = f"more than a recipe or device file may hold ({MAX_YAML_BYTES:,})"
    if length < size / 2:
        return f"{path}: {size:,} bytes, {limit}"
    return f"{path}:{where}:{_key_on_line(head)} a line of {length:,} bytes makes the file {size:,} bytes, {limit}"


def _key_on_line(text: str) -> str:
    """ " 'key':" for a YAML line `key: value` (or `- key: value`), else "": for naming the key
    where the parser cannot (the line is too long or holds a character YAML refuses)."""
    first = text.split("\n", 1)[0]
    if ":" not in first:
        return ""
    key = first.split(":", 1)[0].strip().lstrip("- ").strip("'\"")
    return f" {short_repr(key)}:" if key and len(key) <= 80 and "\x00" not in key else ""


#: Values (scalars and collections) a user's YAML may expand to through aliases: recipes and
#: device files hold a few hundred; a few hundred bytes of nested aliases can expand to billions.
MAX_YAML_VALUES = 100_000


def _expanded_size(node, memo: dict) -> int:
    """Values in the document once every alias is expanded (aliases share one node object, so
    the count is memoised per node: linear in the file, however large the expansion)."""
    key = id(node)
    if key not in memo:
        memo[key] = 1  # a recursive alias (&a [*a]) counts once instead of looping
        if isinstance(node, yaml.SequenceNode):
            memo[key] = 1 + sum(_expanded_size(child, memo) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[key] = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    return memo[key]


class _StrictYAMLError(yaml.constructor.ConstructorError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (the later one would
    silently win) and NUL characters in strings (no file name or value may hold one)."""

    def construct_mapping(self, node, deep=False) -> dict:
        seen: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may be overridden by explicit keys, by design
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader reports it itself
            if first is not None:
                raise _StrictYAMLError(
                    None, None, f"key {short_repr(key)} given twice (first on line {first})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
            if isinstance(value_node, yaml.ScalarNode) and "\x00" in value_node.value:
                raise _StrictYAMLError(
                    None, None, f"{short_repr(key)}: the value holds a NUL character", value_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_str(self, node):
        value = super().construct_yaml_str(node)
        if "\x00" in value:
            raise _StrictYAMLError(None, None, "a string holds a NUL character", node.start_mark)
        return value

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python reads at most 4,300 digits of an integer
            raise _StrictYAMLError(
                None,
                None,
                f"an integer of {len(str(node.value)):,} digits: not a value a recipe takes",
                node.start_mark,
            ) from None


_StrictLoader.add_constructor("tag:yaml.org,2002:str", _StrictLoader.construct_yaml_str)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


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
RUN_FORMAT = 3  # 3: the optimizer state holds one Adam per parameter group (conductances, off-chip)


def new_run_dir(runs_root: Path, name: str) -> Path:
    """runs/<name>-<YYYYmmdd-HHMMSS>/ (a suffix if that exists already). `name` must be a plain
    file name (`fields.check_name`), so the directory is always inside `runs_root`; a runs root
    that cannot hold it (a file, read-only, full) is a `UserInputError` naming it."""
    check_name(name, "run name")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(runs_root) / f"{name}-{stamp}"
    try:
        Path(runs_root).mkdir(parents=True, exist_ok=True)
        path, i = base, 1
        while True:  # mkdir claims the name atomically: concurrent runs get different folders
            try:
                path.mkdir()
                return path
            except FileExistsError:
                path, i = Path(f"{base}-{i}"), i + 1
    except FileExistsError:
        raise UserInputError(f"{runs_root}: not a folder; give --runs-dir a folder for run directories") from None
    except OSError as err:
        raise UserInputError(
            f"{runs_root}: cannot create a run directory there: {err.strerror}; give --runs-dir a writable folder"
        ) from None


def write_run_format(run_dir: Path) -> None:
    write_json(Path(run_dir) / "run.json", {"format": RUN_FORMAT})


def check_run_format(run_dir: Path) -> None:
    """A one-line error for a run directory made by an older pcmmeta."""
    meta = Path(run_dir) / "run.json"
    if not meta.exists():
        found = 1  # runs from before run.json
    else:
        try:
            found = _json.loads(meta.read_bytes())["format"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserInputError(
                f'{meta}: damaged (expected {{"format": {RUN_FORMAT}}}); restore it, or train again with `pcmmeta meta-train RECIPE`'
            ) from None
    if found != RUN_FORMAT:
        raise UserInputError(
            f"{run_dir}: made by an older version of pcmmeta (run format {found}, this version reads {RUN_FORMAT}); "
            "train it again with `pcmmeta meta-train RECIPE`"
        )


#: Files pcmmeta keeps in a run directory (and patterns of them): a command's output flag
#: must not name one (`drift-eval --csv RUN/deployed.eqx` would destroy the deployed array).
RUN_FILES = (
    "recipe.yaml",
    "run.json",
    "checkpoint.eqx",
    "metrics.jsonl",
    "evaluation.json",
    "deployed.eqx",
    "deploy.json",
    "drift.json",
    "programming-comparison.json",
)
RUN_FILE_PREFIXES = ("adapted-", "plan-")


def run_file_owner(path: Path) -> Path | None:
    """The run directory whose own file `path` names (`RUN_FILES`, `adapted-*`, `plan-*.json`),
    else None."""
    path = Path(path)
    folder = path.parent
    if not (folder / "recipe.yaml").is_file():
        return None
    own = path.name in RUN_FILES or (path.name.startswith(RUN_FILE_PREFIXES) and path.suffix in (".eqx", ".json"))
    return folder if own else None


def set_latest(run_dir: Path) -> None:
    atomic_write_text(run_dir.parent / LATEST, run_dir.name + "\n")


def check_latest_writable(runs_root: Path) -> None:
    """`OutputError` when `runs_root/LATEST` exists but cannot be replaced (immutable), a
    `UserInputError` when it is a folder: checked before a run directory is made, so a run that
    could never become the latest leaves nothing behind."""
    pointer = _latest_pointer(runs_root, "remove it")
    if pointer.is_file():
        check_writable(pointer)


def _latest_pointer(runs_root: Path, remedy: str) -> Path:
    """`runs_root/LATEST`; a `UserInputError` ending in `remedy` when it is a folder."""
    pointer = Path(runs_root) / LATEST
    if pointer.is_dir():
        raise UserInputError(
            f"{pointer}: is a folder where the latest run's name belongs (a damaged runs folder?); {remedy}"
        )
    return pointer


def resolve_run(run: Path | None, runs_root: Path = Path("runs")) -> Path:
    """The run directory `run`, or the latest under `runs_root`; a clear error if none."""
    if run is not None:
        if not (Path(run) / "recipe.yaml").is_file():
            raise UserInputError(f"{run}: not a run directory (no recipe.yaml); run `pcmmeta meta-train RECIPE` first")
        return Path(run)
    pointer = _latest_pointer(runs_root, "remove it, or give --run DIR")
    if not pointer.is_file():
        raise UserInputError(f"no run found under {runs_root}/; run `pcmmeta meta-train recipes/sine-quick.yaml` first")
    name = read_user_file(pointer, 4096).decode("utf-8", errors="replace").strip()
    if not name or any(c in name for c in "/\\\n\x00\ufffd") or name in (".", ".."):
        raise UserInputError(
            f"{pointer}: damaged (it should hold one run directory's name); give --run DIR, or write the name of a run under {runs_root}/ into it"
        )
    path = Path(runs_root) / name
    if not (path / "recipe.yaml").is_file():
        raise UserInputError(
            f"{pointer} points to {path}, which is not a run directory; run `pcmmeta meta-train RECIPE` first"
        )
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
    if isinstance(obj, Path):  # reports name the files they wrote
        return str(obj)
    return obj


def json_text(obj, indent: int | None = None) -> str:
    """Strict JSON: NaN and ±inf become null (JSON has no such numbers), paths strings."""
    return _json.dumps(_finite(obj), indent=indent, allow_nan=False)


def read_json_file(path: Path, max_bytes: int = 64 << 20) -> dict:
    """A JSON object written by pcmmeta (`write_json`): one line naming the file if it is
    missing, too large, not UTF-8 JSON or not an object."""
    data = read_user_file(path, max_bytes)
    try:
        body = _json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: not UTF-8 text (damaged?)") from None
    except _json.JSONDecodeError as err:
        raise UserInputError(f"{path}:{err.lineno}: not JSON: {err.msg} (damaged?)") from None
    if not isinstance(body, dict):
        raise UserInputError(f"{path}: not a JSON object (damaged?)")
    return body


def write_json(path: Path, obj) -> None:
    atomic_write_text(Path(path), json_text(obj, indent=2) + "\n")
