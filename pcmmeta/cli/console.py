"""The `pcmmeta` console script: the interrupt policy first, then the command line."""

import io
import os
import sys


def keep_stdout_for_python() -> None:
    """Native libraries write to file descriptor 1 on their own (Gloo's "[Gloo] Rank 0 is
    connected to 1 peer ranks" when `jax.distributed` starts): point descriptor 1 at stderr and
    give Python's `sys.stdout` a descriptor of its own on the real stdout, so that stdout holds
    only what pcmmeta prints (the `--json` output parses)."""
    try:
        sys.stdout.flush()
        real_stdout = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptors to rearrange (an embedded interpreter): leave them
        return
    encoding = sys.stdout.encoding or "utf-8"
    sys.stdout = io.TextIOWrapper(os.fdopen(real_stdout, "wb"), encoding=encoding, line_buffering=True)


def entry() -> None:
    from pcmmeta.runtime import interrupts

    interrupts.install()  # before anything heavy is imported: interrupts are handled from the first instant
    keep_stdout_for_python()
    from pcmmeta.cli import app as cli

    cli.entry()
