"""Reading a user's CSV text: UTF-8 (a byte-order mark allowed), one record a line, no control
characters, finite numbers; every refusal one line naming the file and line."""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from collections.abc import Iterator
from pathlib import Path

from pcmmeta.errors import UserInputError
from pcmmeta.io.runs import read_user_file


def parse_number(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserInputError(f"{path}:{line}: column '{column}' is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise UserInputError(f"{path}:{line}: column '{column}' must be finite, got {text!r}")
    return value


def read_csv_text(path: Path, max_bytes: int) -> str:
    """The text of a CSV the user gave; one line for a missing, unreadable or oversized file, a
    folder, or bytes that are not UTF-8 (replacing them would turn a damaged number into a
    silently different one)."""
    data = read_user_file(path, max_bytes)
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        at = bom + err.start  # the offset in the file, byte-order mark included
        line = data[:at].count(b"\n") + 1
        raise UserInputError(f"{path}:{line}: not UTF-8 text (byte {at})") from None


#: Control characters other than tab have no place in a text CSV: a NUL in a device id would
#: silently make a new device, and they mark a binary or damaged file.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def csv_records(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of each non-blank CSV record, the line being where the record starts.

    Refused, naming that line: a record the csv module cannot read (a field beyond its size
    limit), a record over several lines (an unclosed quote swallows the rest of the file into
    one field), and control characters."""
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise UserInputError(f"{path}:{start}: not readable as CSV: {err}") from None
        if reader.line_num > start:
            raise UserInputError(
                f"{path}:{start}: a quoted field runs on to line {reader.line_num} (an unclosed quote?)"
            )
        control = _CONTROL.search("".join(row))
        if control is not None:
            raise UserInputError(
                f"{path}:{start}: control character \\x{ord(control.group()):02x} in a field (a binary or damaged file?)"
            )
        if any(cell.strip() for cell in row):
            yield start, row


def check_width(path: Path, line: int, row: list[str], header: list[str]) -> None:
    """Every row has the header's fields: a row with more or fewer is shifted or merged, and
    its numbers would land in the wrong columns."""
    if len(row) != len(header):
        raise UserInputError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
