"""Measurement CSVs: the long format `device_id,pulse,t_s,g_uS`, its validation, and a simulator.

One row per read. `pulse` counts SET pulses since the last RESET (0 = freshly RESET), `t_s` is
the time since the last programming event (s), `g_uS` the measured conductance (µS). Each
device id holds one RESET cycle; the next SET pulse is taken to follow the last read of the
previous pulse. A (device, pulse) may have any number of reads, devices any pulse counts and
gaps in their pulse sequence. See docs/device-model.md.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn

import jax
import jax.numpy as jnp
import numpy as np

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.errors import UserInputError
from pcmmeta.io.csv_text import check_width, csv_records, parse_number, read_csv_text
from pcmmeta.io.table_file import write_csv

COLUMNS = ("device_id", "pulse", "t_s", "g_uS")
MIN_DEVICES = 2
#: A read above 1 S (1e6 µS) is no PCM conductance in µS: a unit error or a corrupted value,
#: which would dominate every least-squares stage of the fit.
MAX_G_US = 1e6
#: A read time beyond ~300 years is no retention measurement in seconds.
MAX_T_S = 1e10
#: SET pulses since a RESET: an accumulation saturates within tens to hundreds of pulses, so a
#: million is no experiment; the fit keeps one slot per pulse index, and a larger index would
#: only cost memory (1e30 would not fit an integer array at all).
MAX_PULSE = 1_000_000
#: A measurement or support CSV is read into memory whole: 2 GiB is ~50 M rows of reads, beyond
#: what the fit holds in memory anyway (and what stops /dev/zero).
MAX_CSV_BYTES = 1 << 31


@dataclass
class Measurements:
    """Reads, grouped by (device, pulse); the groups are sorted by device then pulse."""

    group: np.ndarray  # (reads,) int: index of the read's (device, pulse) group
    t_s: np.ndarray  # (reads,) float: seconds since the group's programming event
    g_uS: np.ndarray  # (reads,) float: measured conductance, µS
    group_device: np.ndarray  # (groups,) int: device index of each group
    group_pulse: np.ndarray  # (groups,) int: SET pulses since RESET of each group
    device_names: list[str]  # (devices,) "file:id" when several files, else the id
    ignored_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the reader dropped, for the report

    @property
    def n_groups(self) -> int:
        return len(self.group_device)

    def subset(self, devices: np.ndarray) -> "Measurements":
        """The measurements of the given device indices (repeats allowed: bootstrap), renumbered."""
        groups_of = [np.flatnonzero(self.group_device == d) for d in range(len(self.device_names))]
        new_groups = np.concatenate([groups_of[d] for d in devices])
        new_device = np.concatenate([np.full(len(groups_of[d]), i) for i, d in enumerate(devices)])
        order = np.argsort(self.group, kind="stable")
        starts = np.searchsorted(self.group[order], np.arange(self.n_groups + 1))
        rows = [order[starts[g] : starts[g + 1]] for g in new_groups]
        lengths = np.array([len(r) for r in rows])
        return Measurements(
            group=np.repeat(np.arange(len(new_groups)), lengths),
            t_s=self.t_s[np.concatenate(rows)],
            g_uS=self.g_uS[np.concatenate(rows)],
            group_device=new_device,
            group_pulse=self.group_pulse[new_groups],
            device_names=[self.device_names[d] for d in devices],
        )


def _check_columns(path: Path, line: int, header: list[str], used: Sequence[str]) -> None:
    """A column the reader uses must appear once: with two, which one holds the data is a guess."""
    for column in used:
        if header.count(column) > 1:
            raise UserInputError(f"{path}:{line}: column '{column}' appears {header.count(column)} times in the header")


def _first_repeats(keys: Sequence, lines: Sequence[int]) -> tuple[list[int], list[tuple[int, int]], bool]:
    """Indices of the first occurrence of each key, (line, line it repeats) of each repeat, and
    whether every distinct key repeats (the file is copies of itself, not data)."""
    first_line: dict = {}
    unique, repeats, repeated = [], [], set()
    for i, (key, line) in enumerate(zip(keys, lines)):
        if key in first_line:
            repeats.append((line, first_line[key]))
            repeated.add(key)
        else:
            first_line[key] = line
            unique.append(i)
    return unique, repeats, bool(repeats) and len(repeated) == len(unique)


def _refuse_copies(path: Path, repeats: list[tuple[int, int]]) -> NoReturn:
    line, original = repeats[0]
    raise UserInputError(
        f"{path}: every row appears more than once (line {line} repeats line {original}): "
        "the file is copies of itself, not data; keep one copy"
    )


def _read_one(path: Path) -> tuple[list[tuple[str, int, float, float, int]], list[str], list[str]]:
    records_in = csv_records(path, read_csv_text(path, MAX_CSV_BYTES))
    first = next(records_in, None)
    if first is None:
        raise UserInputError(f"{path}: empty file (expected a header {','.join(COLUMNS)})")
    header_line, header = first[0], [cell.strip() for cell in first[1]]
    index = {}
    for column in COLUMNS:
        if column not in header:
            close = difflib.get_close_matches(column, header, n=1)
            hint = f" (found '{close[0]}': misspelled?)" if close else f" (found: {', '.join(header)})"
            raise UserInputError(f"{path}:{header_line}: missing column '{column}'{hint}")
        index[column] = header.index(column)
    _check_columns(path, header_line, header, COLUMNS)
    extra = [h for h in header if h not in COLUMNS]
    records = []
    for line, row in records_in:
        check_width(path, line, row, header)
        device_id = row[index["device_id"]].strip()
        if not device_id:
            raise UserInputError(f"{path}:{line}: column 'device_id' is empty")
        pulse = parse_number(row[index["pulse"]], path, line, "pulse")
        if not 0 <= pulse <= MAX_PULSE or pulse != int(pulse):
            raise UserInputError(
                f"{path}:{line}: column 'pulse' must be a whole number from 0 to {MAX_PULSE:,}, got {row[index['pulse']].strip()!r}"
            )
        t_s = parse_number(row[index["t_s"]], path, line, "t_s")
        if not 0 <= t_s <= MAX_T_S:
            raise UserInputError(f"{path}:{line}: column 't_s' must be ≥ 0 s and ≤ {MAX_T_S:g} s, got {t_s:g}")
        g = parse_number(row[index["g_uS"]], path, line, "g_uS")
        if not 0 <= g <= MAX_G_US:
            raise UserInputError(
                f"{path}:{line}: column 'g_uS' must be ≥ 0 µS and ≤ {MAX_G_US:g} µS (1 S), got {g:g}"
                + (" (a unit error?)" if g > 0 else "")
            )
        records.append((device_id, int(pulse), t_s, g, line))
    if not records:
        raise UserInputError(f"{path}: no data rows after the header")
    devices = {r[0] for r in records}
    if len(devices) < MIN_DEVICES:
        raise UserInputError(
            f"{path}: {len(devices)} device; fit-device needs reads of at least {MIN_DEVICES} devices per file"
        )
    # The same read written twice (a logger retry) would look like two reads without noise and
    # pull the read-noise estimate to zero: keep the first. When every row repeats, the file is
    # copies of itself (concatenated with itself), and what it measured is not known: refuse.
    unique, repeats, all_repeat = _first_repeats([r[:4] for r in records], [r[4] for r in records])
    if all_repeat:
        _refuse_copies(path, repeats)
    notes = []
    if repeats:
        line, original = repeats[0]
        notes.append(
            f"{path}: ignored {len(repeats)} exact duplicate row(s) (same device_id, pulse, t_s, g_uS); "
            f"first: line {line} repeats line {original}"
        )
    return [records[i] for i in unique], extra, notes


def read_measurements(paths: Sequence[str | Path]) -> Measurements:
    """Read and validate one or more measurement CSVs; raises `UserInputError` naming file and line."""
    if not paths:
        raise UserInputError("no measurement files given")
    files = [Path(p) for p in paths]
    seen: dict[Path, Path] = {}
    for path in files:
        if path.exists() and path.resolve() in seen:
            raise UserInputError(
                f"{path}: the same file as {seen[path.resolve()]}, given twice (its devices would count twice)"
            )
        seen[path.resolve()] = path
    prefix = len(files) > 1
    keys, t_all, g_all, extras, notes = [], [], [], [], []
    for path in files:
        records, extra, file_notes = _read_one(path)
        extras += [f"{path.name}:{e}" for e in extra]
        notes += file_notes
        for device_id, pulse, t_s, g, _ in records:
            keys.append((f"{path.name}:{device_id}" if prefix else device_id, pulse))
            t_all.append(t_s)
            g_all.append(g)
    names = sorted({k[0] for k in keys})
    device_index = {n: i for i, n in enumerate(names)}
    group_keys = sorted({(device_index[d], p) for d, p in keys})
    group_index = {k: i for i, k in enumerate(group_keys)}
    return Measurements(
        group=np.array([group_index[(device_index[d], p)] for d, p in keys]),
        t_s=np.array(t_all, float),
        g_uS=np.array(g_all, float),
        group_device=np.array([k[0] for k in group_keys]),
        group_pulse=np.array([k[1] for k in group_keys]),
        device_names=names,
        ignored_columns=extras,
        notes=notes,
    )


DEFAULT_READ_TIMES = (2.0, 10.0, 30.0)
DEFAULT_DRIFT_READ_TIMES = (100.0, 1000.0, 10000.0)
Protocol = Literal["repeated", "ragged"]
#: Distinct read times (--read-times and --drift-read-times together) a protocol needs:
#: "repeated" is several reads of an event (read noise and drift come from them), which one
#: time is not; "ragged" reads each event once, at the first.
MIN_READ_TIMES = {"repeated": 2, "ragged": 1}


#: Peak bytes per cell of the (event, read time, device) grid that `simulate_measurements` and
#: `write_measurements` go through: the reads (float32 in JAX, float64 in NumPy), the mask of
#: those kept, the indices of every kept read and its CSV line built in memory. Measured: 61 B
#: (40,000 devices, 20 pulses, 6 read times: 306 MB above the runtime); ×2 margin.
SIMULATION_BYTES_PER_CELL = 128
#: Python, NumPy and JAX with the simulation's compiled program (peak RSS of 2 devices: 310 MB).
SIMULATION_RUNTIME_BYTES = 320 * 2**20


def simulation_bytes(n_devices: int, n_pulses: int, n_read_times: int) -> int:
    """Peak bytes of simulating and writing measurements of `n_devices` devices, each read at
    up to `n_read_times` times after the RESET and after each of `n_pulses` pulses."""
    return SIMULATION_RUNTIME_BYTES + (n_pulses + 1) * n_read_times * n_devices * SIMULATION_BYTES_PER_CELL


def simulate_measurements(
    device: AbstractPCMDevice,
    key: jax.Array,
    n_devices: int,
    n_pulses: int = 20,
    read_times: Sequence[float] = DEFAULT_READ_TIMES,
    drift_read_times: Sequence[float] = DEFAULT_DRIFT_READ_TIMES,
    drift_every: int = 5,
    protocol: Protocol = "repeated",
    retention_fraction: float = 0.25,
    missing_fraction: float = 0.05,
) -> Measurements:
    """Synthetic measurements from `device`: RESET, then SET pulses, with reads in between.

    `protocol="repeated"`: `n_pulses` pulses per device; after the RESET and after each pulse
    the device is read at `read_times` (s since that programming event); after the RESET, every
    `drift_every`-th pulse and the last pulse also at `drift_read_times`, which show the drift.

    `protocol="ragged"`, as many labs measure: each device gets between n_pulses/2 and
    `n_pulses` pulses and is read once, at the first of `read_times`, after the RESET and after
    each pulse; a fraction `missing_fraction` of those reads is missing (gaps in the pulse
    sequence); after its last pulse a fraction `retention_fraction` of the devices is read at
    every read time and drift read time (a retention series).

    The next pulse follows the last read, as the CSV format assumes. A protocol that waits
    long after every pulse would let drift hold the devices far below saturation, as it would
    on a real chip.
    """
    if protocol not in ("repeated", "ragged"):
        raise ValueError(f"protocol must be 'repeated' or 'ragged', got {protocol!r}")
    k_reset, k_pulses = jax.random.split(key)
    k_count, k_retention, k_missing = jax.random.split(jax.random.fold_in(key, 1), 3)
    state = device.initial_state(k_reset, (n_devices,), t=0.0)
    all_times = sorted(read_times) + sorted(drift_read_times)
    times = jnp.asarray(all_times, jnp.float32)
    n_short = len(read_times)
    pulse_ids = np.arange(n_pulses + 1)
    if protocol == "repeated":
        last_pulse = np.full(n_devices, n_pulses)
        long_reads = (pulse_ids % drift_every == 0) | (pulse_ids == n_pulses)
        keep = (np.arange(len(all_times))[None, :, None] < n_short) | long_reads[:, None, None]
        keep = np.broadcast_to(keep, (n_pulses + 1, len(all_times), n_devices))
        wait = np.where(long_reads, all_times[-1], all_times[n_short - 1])
    else:
        last_pulse = np.asarray(jax.random.randint(k_count, (n_devices,), max(n_pulses // 2, 1), n_pulses + 1))
        retention = np.asarray(jax.random.uniform(k_retention, (n_devices,)) < retention_fraction)
        missing = np.asarray(jax.random.uniform(k_missing, (n_pulses + 1, n_devices)) < missing_fraction)
        at_last = pulse_ids[:, None] == last_pulse[None, :]
        single = (pulse_ids[:, None] <= last_pulse[None, :]) & ~missing | at_last
        first_time = np.arange(len(all_times))[None, :, None] == 0
        keep = single[:, None, :] & (first_time | (at_last & retention[None, :])[:, None, :])
        wait = np.full(n_pulses + 1, all_times[0])

    def pulse_round(state, inputs):
        key, t_wait, pulse = inputs
        k_read, k_set = jax.random.split(key)
        read_keys = jax.random.split(k_read, len(all_times))
        reads = jax.vmap(lambda k, t: device.read(k, state, state.t_prog + t))(read_keys, times)
        pulsed = pulse < jnp.asarray(last_pulse)
        state = device.set_pulse(k_set, state, pulsed, state.t_prog + t_wait)
        return state, reads

    keys = jax.random.split(k_pulses, n_pulses + 1)
    _, reads = jax.lax.scan(pulse_round, state, (keys, jnp.asarray(wait, jnp.float32), jnp.asarray(pulse_ids)))
    return _from_read_grid(np.asarray(reads, float), np.asarray(keep), np.asarray(all_times, float))


def _from_read_grid(reads: np.ndarray, keep: np.ndarray, times: np.ndarray) -> Measurements:
    """Measurements from a (pulse, time, device) grid of reads and the mask of those taken."""
    n_pulses, _, n_devices = reads.shape
    d, p, k = np.nonzero(keep.transpose(2, 0, 1))  # sorted by device, pulse, time
    group_key, group = np.unique(d * n_pulses + p, return_inverse=True)
    return Measurements(
        group=group,
        t_s=times[k],
        g_uS=reads[p, k, d],
        group_device=group_key // n_pulses,
        group_pulse=group_key % n_pulses,
        device_names=[f"sim{i:05d}" for i in range(n_devices)],
    )


def write_measurements(data: Measurements, path: str | Path) -> None:
    """Write measurements in the long CSV format (atomically). Numbers are written with
    `repr`: the shortest text that reads back to the same float, bit for bit."""
    rows = (
        (data.device_names[data.group_device[group]], int(data.group_pulse[group]), repr(float(t)), repr(float(g)))
        for group, t, g in zip(data.group, data.t_s, data.g_uS)
    )
    write_csv(Path(path), COLUMNS, rows)


def read_xy_csv(path: str | Path) -> tuple[list[float], list[float]]:
    """A user's support set for a regression task: a CSV with columns x and y (any order, other
    columns ignored, blank lines skipped). Raises `UserInputError` naming file, line and column."""
    columns = read_columns_csv(path, [("x", "y")], "support points")
    return columns["x"], columns["y"]


def read_columns_csv(path: str | Path, choices: list[tuple[str, ...]], what: str = "rows") -> dict[str, list[float]]:
    """The numeric columns of the first column set in `choices` that the CSV's header holds (any
    order, other columns ignored, blank lines skipped). Raises `UserInputError` naming file,
    line and column."""
    path = Path(path)
    records = csv_records(path, read_csv_text(path, MAX_CSV_BYTES))
    header_line, header = next(records, (1, []))
    header = [h.strip() for h in header]
    chosen = next((c for c in choices if all(col in header for col in c)), None)
    if chosen is None:
        wanted = " or ".join(",".join(c) for c in choices)
        missing = next(col for col in choices[0] if col not in header)
        hint = f"missing column '{missing}'" if len(choices) == 1 else f"expected columns {wanted}"
        raise UserInputError(f"{path}:{header_line}: {hint} (found: {', '.join(header) or 'nothing'})")
    _check_columns(path, header_line, header, chosen)
    index = {col: header.index(col) for col in chosen}
    out: dict[str, list[float]] = {col: [] for col in chosen}
    lines = []
    for line, row in records:
        check_width(path, line, row, header)
        for col, idx in index.items():
            out[col].append(parse_number(row[idx], path, line, col))
        lines.append(line)
    if not lines:
        raise UserInputError(f"{path}: no {what} after the header")
    # A file whose every row repeats is copies of one set (a file concatenated with itself):
    # each example would count twice.
    _, repeats, all_repeat = _first_repeats(list(zip(*out.values())), lines)
    if all_repeat:
        _refuse_copies(path, repeats)
    return out
