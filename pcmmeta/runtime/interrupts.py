"""One interrupt policy for every command: SIGINT and SIGTERM end it within a second, with one
line saying what was kept, exit code 130 (SIGINT) or 143 (SIGTERM), no traceback.

A signal normally ends the process at once — through `os._exit`, after printing the line and
running the command's cleanup: no interpreter teardown, so no Python finaliser can run while an
XLA worker thread is still executing a computation (a crash seen as exit −11 when `deploy` was
interrupted and Python exited normally). All output files are written to a temporary name and
renamed, so stopping at any instant leaves no half-written file.

After `set_deferred(True)` (the training loop, between compiled steps) a first signal only sets a flag
that the loop checks after every iteration, so it can save a checkpoint first; a second signal
ends the process at once.

The handlers are process state by nature; the CLI installs them once (`install`). Library users
(notebooks) never see them: there, Ctrl-C raises `KeyboardInterrupt` as usual.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}

_state: dict[str, Any] = {"describe": lambda: "nothing written", "deferred": False, "requested": None}
_temporaries: set[str] = set()  # temporary files being written: removed before an immediate exit


def track(path: str) -> None:
    """A temporary file to remove if the process is ended while it exists."""
    _temporaries.add(str(path))


def untrack(path: str) -> None:
    _temporaries.discard(str(path))


def _say(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:  # a closed stderr must not stop the exit
        pass


def _handler(signum, frame) -> None:
    if _state["deferred"] and _state["requested"] is None:
        _state["requested"] = signum
        return
    try:
        what = _state["describe"]()
    except BaseException as err:  # the cleanup itself failed: say so, exit anyway
        what = f"cleanup failed: {err}"
    for path in list(_temporaries):
        try:
            os.unlink(path)
        except OSError:
            pass
    name = "interrupted" if signum == signal.SIGINT else "terminated"
    _say(f"{name}; {what}")
    os._exit(EXIT_CODES.get(signum, 128 + signum))


def install() -> None:
    """SIGINT/SIGTERM → the policy above; SIGXFSZ ignored, so a file-size limit surfaces as an
    `OSError` (EFBIG) on the write, which the CLI reports in one line, instead of killing us."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        # an inherited SIG_IGN stays (a background job of a script must not be stopped by Ctrl-C)
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _handler)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def on_interrupt(describe: Callable[[], str]) -> None:
    """What an interrupt from now on does and says: `describe` cleans up if needed and returns
    what was kept (e.g. "nothing written")."""
    _state["describe"] = describe


def set_deferred(on: bool) -> None:
    """From now on, a first signal only sets a flag (`requested`) — the caller checks it at its
    next safe point — or (off) ends the process at once."""
    _state["deferred"] = on


def requested() -> int | None:
    """The signal received while deferred, if any."""
    return _state["requested"]
