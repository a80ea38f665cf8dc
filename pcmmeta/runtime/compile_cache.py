"""JAX's persistent compilation cache for the `pcmmeta` process.

Compiling the meta-training step takes seconds (about 5–9 s for the sine recipe on a 2-core
CPU), every time a command starts; with the compiled programs kept on disk a later start with
the same shapes reads them back instead (compile + first step about 2 s, and a lower memory
peak: the compiler's own memory is not needed). docs/speed.md has the measurements.

The `pcmmeta` command enables it at start-up (`enable_compile_cache`); a library user calls the
function (or sets JAX's own `JAX_COMPILATION_CACHE_DIR`). `PCMMETA_COMPILE_CACHE=off` turns it
off; `PCMMETA_COMPILE_CACHE=DIR` puts it elsewhere (read once, when the cache is enabled). Entries are a few hundred kB to a few MB
per compiled program; the folder may be deleted at any time (JAX's size limit is not set: it
needs the `filelock` package).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from pcmmeta.runtime.cache_dir import default_cache_dir

#: Programs that compile faster than this (s) are not worth a disk entry.
MIN_COMPILE_S = 0.3


def compile_cache_dir() -> Path | None:
    """Where the cache lives: `$PCMMETA_COMPILE_CACHE`, else `<pcmmeta cache>/jax`; None when
    `PCMMETA_COMPILE_CACHE` is `off` (or 0, false, no)."""
    env = os.environ.get("PCMMETA_COMPILE_CACHE", "").strip()
    if env.lower() in ("off", "0", "false", "no"):
        return None
    return Path(env) if env else default_cache_dir() / "jax"


def enable_compile_cache(path: Path | None = None) -> Path | None:
    """Point JAX's persistent compilation cache at `path` (default `compile_cache_dir()`) unless
    JAX_COMPILATION_CACHE_DIR already names one; returns the folder in use, or None. A folder
    that cannot be created leaves the cache off: compiling again is slower, never wrong.

    Before JAX is imported this only sets JAX's environment variables (the command's start-up
    stays free of JAX until a command needs it); afterwards it updates `jax.config`."""
    import sys

    # A cache entry that cannot be written or read (a full disk, a file-size limit, a damaged
    # file) only means compiling again; JAX's warning would break a command's one-line error.
    warnings.filterwarnings(
        "ignore", message="Error (writing|reading) persistent compilation cache entry", category=UserWarning
    )
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    path = path if path is not None else compile_cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    settings = {
        "jax_compilation_cache_dir": str(path),
        "jax_persistent_cache_min_compile_time_secs": MIN_COMPILE_S,
    }
    if "jax" in sys.modules:
        import jax

        # a flag with a context manager is read as an attribute (config.read refuses it)
        user_dir = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]
        if user_dir:  # the user's own folder wins
            return Path(user_dir)
        for name, value in settings.items():
            if not os.environ.get(name.upper()):  # nor may a user's JAX_* setting be overwritten
                jax.config.update(name, value)
    else:
        for name, value in settings.items():
            os.environ.setdefault(name.upper(), str(value))  # a user's own JAX_* setting wins
    return path
