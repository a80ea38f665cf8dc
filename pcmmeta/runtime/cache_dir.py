"""The folder pcmmeta caches things in (glyph images, programming policies, compiled programs)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """`$PCMMETA_CACHE`, else `~/.cache/pcmmeta`."""
    env = os.environ.get("PCMMETA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "pcmmeta"
