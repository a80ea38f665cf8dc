"""Measurement CSVs: the long format `device_id,pulse,t_s,g_uS`, its validation, and a simulator.

One row per read. `pulse` counts SET pulses since the last RESET (0 = freshly RESET), `t_s` is
the time since the last programming event (s), `g_uS` the measured conductance (µS). Each
device id holds one RESET cycle; the next SET pulse is taken to follow the last read of the
previous pulse. See docs/device-model.md.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .device import PCMDevice
from .errors import UserInputError
from .runs import atomic_write_text

COLUMNS = ("device_id", "pulse", "t_s", "g_uS")
MIN_READS_PER_PULSE = 3
MIN_DEVICES = 2


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


def _parse_number(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserInputError(f"{path}:{line}: column '{column}' is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise UserInputError(f"{path}:{line}: column '{column}' must be finite, got {text!r}")
    return value


def _read_one(path: Path) -> tuple[list[tuple[str, int, float, float]], list[str]]:
    if not path.exists():
        raise UserInputError(f"{path}: no such file")
    if not path.is_file():
        raise UserInputError(f"{path}: not a file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserInputError(f"{path}: not UTF-8 text (byte {err.start})") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    while header is not None and not any(cell.strip() for cell in header):
        header = next(rows, None)
    if header is None:
        raise UserInputError(f"{path}: empty file (expected a header {','.join(COLUMNS)})")
    header = [cell.strip() for cell in header]
    index = {}
    for column in COLUMNS:
        if column not in header:
            close = difflib.get_close_matches(column, header, n=1)
            hint = f" (found '{close[0]}': misspelled?)" if close else f" (found: {', '.join(header)})"
            raise UserInputError(f"{path}:1: missing column '{column}'{hint}")
        index[column] = header.index(column)
    extra = [h for h in header if h not in COLUMNS]
    records = []
    for row in rows:
        line = rows.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise UserInputError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
        device_id = row[index["device_id"]].strip()
        if not device_id:
            raise UserInputError(f"{path}:{line}: column 'device_id' is empty")
        pulse = _parse_number(row[index["pulse"]], path, line, "pulse")
        if pulse < 0 or pulse != int(pulse):
            raise UserInputError(f"{path}:{line}: column 'pulse' must be a whole number ≥ 0, got {row[index['pulse']]!r}")
        t_s = _parse_number(row[index["t_s"]], path, line, "t_s")
        if t_s < 0:
            raise UserInputError(f"{path}:{line}: column 't_s' must be ≥ 0 s, got {t_s}")
        g = _parse_number(row[index["g_uS"]], path, line, "g_uS")
        if g < 0:
            raise UserInputError(f"{path}:{line}: column 'g_uS' must be ≥ 0 µS, got {g}")
        records.append((device_id, int(pulse), t_s, g))
    if not records:
        raise UserInputError(f"{path}: no data rows after the header")
    devices = {r[0] for r in records}
    if len(devices) < MIN_DEVICES:
        raise UserInputError(f"{path}: {len(devices)} device; fit-device needs reads of at least {MIN_DEVICES} devices per file")
    counts: dict[tuple[str, int], int] = {}
    for device_id, pulse, _, _ in records:
        counts[(device_id, pulse)] = counts.get((device_id, pulse), 0) + 1
    for (device_id, pulse), count in counts.items():
        if count < MIN_READS_PER_PULSE:
            raise UserInputError(
                f"{path}: device '{device_id}' pulse {pulse} has {count} read(s); "
                f"fit-device needs at least {MIN_READS_PER_PULSE} reads per (device, pulse)"
            )
    return records, extra


def read_measurements(paths: Sequence[str | Path]) -> Measurements:
    """Read and validate one or more measurement CSVs; raises `UserInputError` naming file and line."""
    if not paths:
        raise UserInputError("no measurement files given")
    paths = [Path(p) for p in paths]
    prefix = len(paths) > 1
    keys, t_all, g_all, extras = [], [], [], []
    for path in paths:
        records, extra = _read_one(path)
        extras += [f"{path.name}:{e}" for e in extra]
        for device_id, pulse, t_s, g in records:
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
    )


DEFAULT_READ_TIMES = (2.0, 10.0, 30.0)
DEFAULT_DRIFT_READ_TIMES = (100.0, 1000.0, 10000.0)


def simulate_measurements(
    device: PCMDevice,
    key: jax.Array,
    n_devices: int,
    n_pulses: int = 20,
    read_times: Sequence[float] = DEFAULT_READ_TIMES,
    drift_read_times: Sequence[float] = DEFAULT_DRIFT_READ_TIMES,
    drift_every: int = 5,
) -> Measurements:
    """Synthetic measurements from `device`: RESET, then `n_pulses` SET pulses per device.

    After the RESET and after each pulse the device is read at `read_times` (s since that
    programming event); after the RESET, every `drift_every`-th pulse and the last pulse it is
    also read at `drift_read_times`, which show the drift. The next pulse follows the last read,
    as the CSV format assumes. A protocol that waits long after every pulse would let drift
    hold the devices far below saturation, as it would on a real chip.
    """
    k_reset, k_pulses = jax.random.split(key)
    state = device.initial_state(k_reset, (n_devices,), t=0.0)
    all_times = sorted(read_times) + sorted(drift_read_times)
    times = jnp.asarray(all_times, jnp.float32)
    n_short = len(read_times)
    pulse_ids = np.arange(n_pulses + 1)
    long_reads = (pulse_ids % drift_every == 0) | (pulse_ids == n_pulses)

    def pulse_round(state, inputs):
        key, with_drift_reads = inputs
        k_read, k_set = jax.random.split(key)
        read_keys = jax.random.split(k_read, len(all_times))
        reads = jax.vmap(lambda k, t: device.read(k, state, state.t_prog + t))(read_keys, times)
        t_last = jnp.where(with_drift_reads, times[-1], times[n_short - 1])
        state = device.set_pulse(k_set, state, jnp.ones(state.shape, bool), state.t_prog + t_last)
        return state, reads

    keys = jax.random.split(k_pulses, n_pulses + 1)
    _, reads = jax.lax.scan(pulse_round, state, (keys, jnp.asarray(long_reads)))
    reads = np.asarray(reads, float)  # (pulses + 1, times, devices)
    group, t_s, g = [], [], []
    group_device, group_pulse = [], []
    for d in range(n_devices):
        for k in pulse_ids:
            n_reads = len(all_times) if long_reads[k] else n_short
            group += [len(group_device)] * n_reads
            t_s += all_times[:n_reads]
            g += list(reads[k, :n_reads, d])
            group_device.append(d)
            group_pulse.append(k)
    return Measurements(
        group=np.asarray(group),
        t_s=np.asarray(t_s, float),
        g_uS=np.asarray(g, float),
        group_device=np.asarray(group_device),
        group_pulse=np.asarray(group_pulse),
        device_names=[f"sim{d:05d}" for d in range(n_devices)],
    )


def write_measurements(data: Measurements, path: str | Path) -> None:
    """Write measurements in the long CSV format (atomically). Numbers are written with
    `repr`: the shortest text that reads back to the same float, bit for bit."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for group, t, g in zip(data.group, data.t_s, data.g_uS):
        writer.writerow(
            (data.device_names[data.group_device[group]], int(data.group_pulse[group]), repr(float(t)), repr(float(g)))
        )
    atomic_write_text(Path(path), out.getvalue())


def read_xy_csv(path: str | Path) -> tuple[list[float], list[float]]:
    """A user's support set for a regression task: a CSV with columns x and y (any order, other
    columns ignored, blank lines skipped). Raises `UserInputError` naming file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    for col in ("x", "y"):
        if col not in header:
            raise UserInputError(f"{path}:1: missing column '{col}' (found: {', '.join(header) or 'nothing'})")
    ix, iy = header.index("x"), header.index("y")
    xs: list[float] = []
    ys: list[float] = []
    for row in reader:
        if not any(c.strip() for c in row):
            continue
        line = reader.line_num
        for col, idx, out in (("x", ix, xs), ("y", iy, ys)):
            try:
                value = float(row[idx])
            except (ValueError, IndexError):
                raise UserInputError(f"{path}:{line}: column '{col}' is not a number") from None
            if not math.isfinite(value):
                raise UserInputError(f"{path}:{line}: column '{col}' must be finite")
            out.append(value)
    if not xs:
        raise UserInputError(f"{path}: no support points after the header")
    return xs, ys
