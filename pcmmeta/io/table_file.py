"""A report's rows as a CSV file (`drift-eval --csv`): one column per key of the first row,
numbers as Python writes them (floats round-trip exactly)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pcmmeta.io.runs import atomic_write_text


def write_rows_csv(path: Path, rows: list[dict]) -> None:
    """Write `rows` (dicts with the same keys) atomically, a header line first."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())
