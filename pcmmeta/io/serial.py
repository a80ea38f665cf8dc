"""One save/load pair for Equinox files (checkpoints, deployed arrays, policies).

The file holds the leaves of a pytree (`eqx.tree_serialise_leaves`); loading needs a pytree of
the same structure (`like`). A file that does not fit — written by an older pcmmeta, for another
network, or damaged — gives one line naming it, not a traceback.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TypeVar

import equinox as eqx

from pcmmeta.errors import UserInputError
from pcmmeta.io.runs import atomic_write_bytes

T = TypeVar("T")


def eqx_bytes(tree) -> bytes:
    """The pytree's leaves as the bytes of an Equinox file."""
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    return buf.getvalue()


def save_eqx(path: str | Path, tree) -> None:
    """Write the pytree's leaves to `path` atomically."""
    atomic_write_bytes(Path(path), eqx_bytes(tree))


def load_eqx(path: str | Path, like: T, what: str = "file", remedy: str = "") -> T:
    """The pytree stored in `path`, shaped like `like`; `remedy` (what the user can do about a
    damaged file) ends the error message."""
    then = f"; {remedy}" if remedy else ""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserInputError(f"{path}: cannot read the {what}: {err.strerror}{then}") from None
    try:
        return eqx.tree_deserialise_leaves(io.BytesIO(data), like)
    except Exception:  # numpy/equinox raise several kinds for a mismatched or damaged file
        raise UserInputError(
            f"{path}: does not match this run's {what} (damaged — e.g. cut off —, for another network, or written by an older version of pcmmeta){then}"
        ) from None
