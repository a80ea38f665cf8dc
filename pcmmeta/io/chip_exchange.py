"""The chip exchange format `pcmmeta-chip/1` (docs/chip-bridge.md): the files through which a
lab programs a run's conductances into its own PCM devices, reports what it measured, and
applies the pulses of an on-chip adaptation.

Every layer of a network is a crossbar of differential pairs: its conductances are an array
(2, *shape) with G⁺ at index 0 and G⁻ at index 1 (`pcmmeta.core.crossbar.pair_weights`). Its
crossbar matrix has `rows` = shape[0] (the inputs, a bias row last where the layer has one;
a convolution's im2col rows 9·c_in + 1) and `cols` = the product of the rest (outputs), and
a device is named by (layer, row, col, sign) with 0-based row and col and sign `+` or `-`.

Files:
- `manifest.json` (`write_manifest`): format, run, device, range, layers with their roles and
  weight maps, optional tiles.
- `targets.csv`: `layer,row,col,sign,target_uS` (+ `tile,tile_row,tile_col` when tiled).
- a lab's measurement: `layer,row,col,sign,g_uS` (+ optional `t_s`), one line per device.
- a pulse plan: `layer,row,col,sign,pulses`, head devices only, whole SET pulses ≥ 1.
Every refusal is one `UserInputError` line naming the file and line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from pcmmeta.errors import UserInputError
from pcmmeta.io.csv_text import check_width, csv_records, parse_number, read_csv_text
from pcmmeta.io.runs import atomic_write_text
from pcmmeta.io.table_file import write_csv

FORMAT = "pcmmeta-chip/1"
TARGET_COLUMNS = ("layer", "row", "col", "sign", "target_uS")
TILE_COLUMNS = ("tile", "tile_row", "tile_col")
MEASURED_COLUMNS = ("layer", "row", "col", "sign", "g_uS")
TIME_COLUMN = "t_s"
PLAN_COLUMNS = ("layer", "row", "col", "sign", "pulses")
SIGNS = ("+", "-")  # index 0: G⁺, index 1: G⁻
#: A measured conductance above 1 S (1e6 µS) is no PCM conductance in µS: a unit error.
MAX_G_US = 1e6
#: A measurement time beyond ~300 years is no retention experiment in seconds.
MAX_T_S = 1e10
#: A measurement of a few million devices is a few hundred MB of text at most.
MAX_EXCHANGE_BYTES = 1 << 30
#: SET pulses per device in one plan: the inner rules apply at most a few per step.
MAX_PLAN_PULSES = 10_000


@dataclasses.dataclass(frozen=True)
class CrossbarLayer:
    """One layer's crossbar: `rows` × `cols` weights, each a pair (G⁺, G⁻)."""

    name: str
    rows: int
    cols: int
    role: str  # "body": programmed once; "head": adapted on chip
    scale: float  # the weight of a pair at full range: W = scale·(G⁺ − G⁻)/(g_max − g_min)
    shape: tuple[int, ...]  # the layer's array in the simulation, without the pair axis

    @property
    def n_devices(self) -> int:
        return 2 * self.rows * self.cols


def crossbar_layers(
    layer_shapes: dict[str, tuple[int, ...]], order: Sequence[str], head: Sequence[str], scales: dict[str, float]
) -> list[CrossbarLayer]:
    """The crossbar of each layer in `order`, from its conductance array's shape (2, *shape)."""
    out = []
    for name in order:
        shape = tuple(int(s) for s in layer_shapes[name][1:])
        rows = shape[0]
        cols = math.prod(shape[1:]) if len(shape) > 1 else 1
        out.append(CrossbarLayer(name, rows, cols, "head" if name in head else "body", float(scales[name]), shape))
    return out


def as_matrix(g: np.ndarray, layer: CrossbarLayer) -> np.ndarray:
    """A layer's conductances (2, *shape) as (2, rows, cols)."""
    return np.asarray(g).reshape(2, layer.rows, layer.cols)


def conductance_digest(layers: Sequence[CrossbarLayer], conductances: dict[str, np.ndarray]) -> str:
    """sha256 of the layers' conductances (float32, in layer order): what ties a manifest to a run's
    trained conductances."""
    digest = hashlib.sha256()
    for layer in layers:
        digest.update(layer.name.encode())
        digest.update(np.ascontiguousarray(conductances[layer.name], np.float32).tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------ tiles
@dataclasses.dataclass(frozen=True)
class Tile:
    """A block of a layer's device matrix (rows × 2·cols: G⁺ of weight column c in device column
    2c, G⁻ in 2c + 1, so a pair never straddles two tiles) on one physical crossbar."""

    tile: int
    layer: str
    row0: int  # first row of the layer's matrix on the tile
    col0: int  # first device column
    rows: int
    cols: int  # device columns


def parse_tile(text: str) -> tuple[int, int]:
    """`ROWSxCOLS` (device rows and columns of one physical crossbar; COLS even)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UserInputError(f"--tile: expected ROWSxCOLS, e.g. 256x256, got {text!r}")
    rows, cols = (int(p) for p in parts)
    if not (1 <= rows <= 1_000_000 and 2 <= cols <= 1_000_000):
        raise UserInputError(f"--tile: rows must be 1 … 1000000 and columns 2 … 1000000, got {text!r}")
    if cols % 2:
        raise UserInputError(f"--tile: columns must be even (a differential pair sits on adjacent columns), got {cols}")
    return rows, cols


def tiles_of(layers: Sequence[CrossbarLayer], tile_rows: int, tile_cols: int) -> list[Tile]:
    """Each layer's device matrix cut into tiles of at most tile_rows × tile_cols, numbered
    from 0 in layer order, row-major within a layer."""
    tiles: list[Tile] = []
    for layer in layers:
        for r0 in range(0, layer.rows, tile_rows):
            for c0 in range(0, 2 * layer.cols, tile_cols):
                rows = min(tile_rows, layer.rows - r0)
                cols = min(tile_cols, 2 * layer.cols - c0)
                tiles.append(Tile(len(tiles), layer.name, r0, c0, rows, cols))
    return tiles


# ------------------------------------------------------------------------------ export
def device_rows(layer: CrossbarLayer, values: np.ndarray) -> Iterable[tuple[str, int, int, str, float]]:
    """(layer, row, col, sign, value) of every device of the layer, rows then columns then sign;
    `values` is (2, rows, cols)."""
    for r in range(layer.rows):
        for c in range(layer.cols):
            for s, sign in enumerate(SIGNS):
                yield layer.name, r, c, sign, float(values[s, r, c])


def write_targets(
    path: Path,
    layers: Sequence[CrossbarLayer],
    conductances: dict[str, np.ndarray],
    tile: tuple[int, int] | None = None,
) -> None:
    """`targets.csv`: one line per device, conductances in µS as Python writes floats (exact)."""
    header = TARGET_COLUMNS + (TILE_COLUMNS if tile else ())
    first_tile = {}
    if tile:
        for t in reversed(tiles_of(layers, *tile)):
            first_tile[t.layer] = t.tile

    def lines():
        for layer in layers:
            values = as_matrix(conductances[layer.name], layer)
            for name, r, c, sign, value in device_rows(layer, values):
                row: list = [name, r, c, sign, value]
                if tile:
                    device_col = 2 * c + SIGNS.index(sign)
                    tiles_per_row = -(-2 * layer.cols // tile[1])
                    index = first_tile[name] + (r // tile[0]) * tiles_per_row + device_col // tile[1]
                    row += [index, r % tile[0], device_col % tile[1]]
                yield row

    write_csv(path, header, lines())


def manifest(
    run: dict,
    device: dict,
    g_min: float,
    g_max: float,
    layers: Sequence[CrossbarLayer],
    digest: str,
    tiles: Sequence[Tile] | None = None,
) -> dict:
    """The body of `manifest.json`."""
    span = g_max - g_min
    body = {
        "format": FORMAT,
        "run": run,
        "conductances_sha256": digest,
        "device": device,
        "g_min_uS": g_min,
        "g_max_uS": g_max,
        "devices": sum(layer.n_devices for layer in layers),
        "signs": {"+": "G⁺ (index 0 of a pair)", "-": "G⁻ (index 1 of a pair)"},
        "layers": [
            {
                "name": layer.name,
                "rows": layer.rows,
                "cols": layer.cols,
                "role": layer.role,
                "devices": layer.n_devices,
                "weight_map": "W[row, col] = weight_per_uS · (G⁺[row, col] − G⁻[row, col])",
                "scale": layer.scale,
                "weight_per_uS": layer.scale / span,
                "simulation_shape": list(layer.shape),
            }
            for layer in layers
        ],
    }
    if tiles is not None:
        body["tiles"] = [dataclasses.asdict(t) for t in tiles]
    return body


def write_manifest(path: Path, body: dict) -> None:
    atomic_write_text(path, json.dumps(body, indent=2, ensure_ascii=False) + "\n")


def read_manifest(path: Path) -> dict:
    """A manifest written by `write_manifest`: one line naming the file if it is not one."""
    text = read_csv_text(path, 64 << 20)
    try:
        body = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserInputError(f"{path}:{err.lineno}: not JSON: {err.msg}") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        found = body.get("format") if isinstance(body, dict) else None
        raise UserInputError(f"{path}: not a {FORMAT} manifest (format {found!r})")
    for key in ("run", "conductances_sha256", "layers"):
        if key not in body:
            raise UserInputError(f"{path}: manifest without '{key}'")
    return body


def check_manifest_matches(path: Path, body: dict, run_name: str, digest: str) -> None:
    """The manifest was exported from this run's current conductances."""
    other = body["run"].get("name") if isinstance(body["run"], dict) else body["run"]
    if other != run_name:
        raise UserInputError(f"{path}: a manifest of run {other!r}, not of {run_name!r}; export this run again")
    if body["conductances_sha256"] != digest:
        raise UserInputError(
            f"{path}: exported from other conductances of {run_name!r} (trained further since?); export again"
        )


# ------------------------------------------------------------------------------ reading device files
@dataclasses.dataclass
class DeviceTable:
    """Per layer, one value per device as (2, rows, cols) arrays, and the file's line of each."""

    values: dict[str, np.ndarray]
    times: dict[str, np.ndarray] | None  # `t_s` per device when the file has the column


def _check_header(path: Path, line: int, header: list[str], allowed: Sequence[Sequence[str]]) -> list[str]:
    cells = [h.strip() for h in header]
    if cells and cells[0].startswith("\ufeff"):
        cells[0] = cells[0][1:]
    if not any(cells == list(a) for a in allowed):
        raise UserInputError(
            f"{path}:{line}: header {','.join(cells)!r}; the format's is "
            + " or ".join(repr(",".join(a)) for a in allowed)
        )
    return cells


def _index(text: str, path: Path, line: int, column: str, size: int) -> int:
    text = text.strip()
    if not text.isdigit():
        raise UserInputError(f"{path}:{line}: column '{column}' must be a whole number ≥ 0, got {text!r}")
    value = int(text)
    if value >= size:
        raise UserInputError(f"{path}:{line}: {column} {value} out of range (the layer has {size})")
    return value


def read_device_values(
    path: Path,
    layers: Sequence[CrossbarLayer],
    value_column: str,
    *,
    optional_time: bool = False,
    only: Sequence[str] | None = None,
    every_device: bool = True,
    integer_values: bool = False,
) -> DeviceTable:
    """A device file of the exchange format: `layer,row,col,sign,<value_column>` (+ `t_s` if
    `optional_time`). Every device of the layers named in `only` (default: all) exactly once when
    `every_device`, at most once otherwise. Values finite and ≥ 0 (whole and ≥ 1 when
    `integer_values`), times finite and ≥ 0."""
    path = Path(path)
    by_name = {layer.name: layer for layer in layers}
    allowed_layers = set(only) if only is not None else set(by_name)
    columns = (*MEASURED_COLUMNS[:4], value_column)
    allowed = [columns, (*columns, TIME_COLUMN)] if optional_time else [columns]
    values = {n: np.full((2, by_name[n].rows, by_name[n].cols), np.nan) for n in allowed_layers}
    seen = {n: np.zeros((2, by_name[n].rows, by_name[n].cols), np.int64) for n in allowed_layers}
    times: dict[str, np.ndarray] | None = None
    records = csv_records(path, read_csv_text(path, MAX_EXCHANGE_BYTES))
    header_line, header = next(records, (1, []))
    if not header:
        raise UserInputError(f"{path}: empty file; the header is {','.join(columns)!r}")
    header = _check_header(path, header_line, header, allowed)
    with_time = len(header) == 6
    if with_time:
        times = {n: np.full(values[n].shape, np.nan) for n in allowed_layers}
    for line, row in records:
        check_width(path, line, row, header)
        name = row[0].strip()
        if name not in by_name:
            raise UserInputError(f"{path}:{line}: unknown layer {name!r}; the layers are {', '.join(by_name)}")
        if name not in allowed_layers:
            raise UserInputError(
                f"{path}:{line}: layer {name!r} is not adapted on chip; this file holds {', '.join(sorted(allowed_layers))} only"
            )
        layer = by_name[name]
        r = _index(row[1], path, line, "row", layer.rows)
        c = _index(row[2], path, line, "col", layer.cols)
        sign = row[3].strip()
        if sign not in SIGNS:
            raise UserInputError(f"{path}:{line}: sign must be '+' or '-', got {sign!r}")
        s = SIGNS.index(sign)
        if seen[name][s, r, c]:
            raise UserInputError(
                f"{path}:{line}: device {name} row {r} col {c} sign {sign} appears again (first on line {seen[name][s, r, c]})"
            )
        seen[name][s, r, c] = line
        value = parse_number(row[4], path, line, value_column)
        if integer_values:
            if value != int(value) or not 1 <= value <= MAX_PLAN_PULSES:
                raise UserInputError(
                    f"{path}:{line}: {value_column} must be a whole number 1 … {MAX_PLAN_PULSES}, got {row[4].strip()!r}"
                )
        elif not 0 <= value <= MAX_G_US:
            raise UserInputError(
                f"{path}:{line}: {value_column} must be ≥ 0 and ≤ {MAX_G_US:g} µS, got {row[4].strip()!r}"
            )
        values[name][s, r, c] = value
        if times is not None:
            t = parse_number(row[5], path, line, TIME_COLUMN)
            if not 0 <= t <= MAX_T_S:
                raise UserInputError(f"{path}:{line}: t_s must be ≥ 0 and ≤ {MAX_T_S:g} s, got {row[5].strip()!r}")
            times[name][s, r, c] = t
    if every_device:
        for name in (n for n in by_name if n in allowed_layers):
            missing = np.argwhere(seen[name] == 0)
            if len(missing):
                s, r, c = (int(v) for v in missing[0])
                total = sum(int((v == 0).sum()) for v in seen.values())
                raise UserInputError(
                    f"{path}: no line for device {name} row {r} col {c} sign {SIGNS[s]}"
                    + (f" ({total:,} devices missing)" if total > 1 else "")
                    + "; the file must hold every device of the manifest once"
                )
    return DeviceTable(values, times)


def write_plan(path: Path, layers: Sequence[CrossbarLayer], pulses: dict[str, np.ndarray]) -> int:
    """The pulse plan: one line per device with ≥ 1 SET pulse (`pulses` per layer (2, *shape));
    returns the number of lines."""
    rows = []
    for layer in layers:
        if layer.name not in pulses:
            continue
        counts = as_matrix(pulses[layer.name], layer)
        for name, r, c, sign, n in device_rows(layer, counts):
            if n >= 1:
                rows.append((name, r, c, sign, int(n)))
    write_csv(path, PLAN_COLUMNS, rows)
    return len(rows)
