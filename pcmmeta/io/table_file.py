"""CSV files written whole and atomically: a header line, then one line per row (`drift-eval
--csv`, measurement files)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from pcmmeta.io.runs import atomic_write_text


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write `header` and `rows` (cells as `str` writes them) atomically, "\\n" line ends."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(Path(path), text.getvalue())


def write_rows_csv(path: Path, rows: list[dict]) -> None:
    """Write `rows` (dicts with the same keys) as a table: one column per key of the first row,
    numbers as Python writes them (floats round-trip exactly)."""
    columns = list(rows[0])
    write_csv(path, columns, ([row[c] for c in columns] for row in rows))
