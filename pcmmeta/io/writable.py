"""Whether an output can be written, found before the work that produces it: a command that
would fail at its last step (a read-only or immutable folder or file) fails at its first, and
leaves nothing behind. Light on purpose: the CLI checks its flags with it before JAX loads."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from pcmmeta.errors import OutputError


def check_writable(path: Path, flag: str | None = None) -> None:
    """`OutputError` naming `path` (and the flag that gave it) when a file cannot be written
    there: its folder refuses a new file (outputs are written beside it and renamed into
    place), or the file exists and refuses to be replaced (immutable). The probe file is
    removed at once; an existing file is opened for append, which changes no byte."""
    path = Path(path)
    given = f"{flag} " if flag else ""
    try:
        _probe(path.parent, f".{path.name}.")
        if path.is_file():
            try:
                with open(path, "ab"):
                    pass
            except PermissionError as err:
                # a read-only file (EACCES) in a writable folder is replaced by the rename all
                # outputs are written with; an immutable one (EPERM) refuses even that
                if err.errno != errno.EACCES:
                    raise
    except OSError as err:
        raise OutputError(f"{given}{path}: cannot write: {err.strerror}; nothing was done") from None


def check_folder_writable(folder: Path) -> None:
    """`OutputError` naming `folder` when a new file cannot be made there (a run directory a
    command writes its results into): found before the work, not after it."""
    try:
        _probe(Path(folder), ".pcmmeta-")
    except OSError as err:
        raise OutputError(f"{folder}: cannot write there: {err.strerror}; nothing was done") from None


def _probe(folder: Path, prefix: str) -> None:
    """Make and remove a file in `folder` (`OSError` if it cannot be made), then give the folder
    back its modification time: the probe leaves no trace, not even a newer folder."""
    before = os.stat(folder)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".probe")
    os.close(fd)
    os.unlink(probe)
    try:
        os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))
    except OSError:
        pass  # a folder we may write into but not re-date: the probe's only trace
