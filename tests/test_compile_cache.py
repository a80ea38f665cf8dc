"""The command's persistent compilation cache: where it goes, off when asked, programs reused."""

import os
import subprocess
import sys

from pcmmeta.runtime.compile_cache import compile_cache_dir

PROBE = """
from pcmmeta.runtime.compile_cache import enable_compile_cache
print(enable_compile_cache())
import jax, jax.numpy as jnp
hits = []
jax.monitoring.register_event_listener(lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None)
print(jax.config.jax_compilation_cache_dir)
f = jax.jit(lambda x: jnp.sum(jnp.sin(jnp.outer(x, x)) @ x))
f(jnp.ones(64)).block_until_ready()
print(len(hits))
"""


def _probe(env_extra: dict, tmp_path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env.update(env_extra)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # cache even this small program
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    return out.stdout.split()


def test_compiled_programs_are_written_to_the_cache_folder_and_found_again(tmp_path):
    folder = tmp_path / "cache"
    first = _probe({"PCMMETA_COMPILE_CACHE": str(folder)}, tmp_path)
    assert first[0] == str(folder) and first[1] == str(folder)
    assert first[2] == "0"  # nothing to read yet
    entries = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert entries  # the jitted program was stored
    second = _probe({"PCMMETA_COMPILE_CACHE": str(folder)}, tmp_path)
    assert second[1] == str(folder) and int(second[2]) >= 1  # read back from the folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == entries  # not compiled and written again


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch):
    out = _probe({"PCMMETA_COMPILE_CACHE": "off"}, tmp_path)
    assert out[:3] == ["None", "None", "0"]
    monkeypatch.setenv("PCMMETA_COMPILE_CACHE", "off")
    assert compile_cache_dir() is None
    monkeypatch.delenv("PCMMETA_COMPILE_CACHE")
    monkeypatch.setenv("PCMMETA_CACHE", str(tmp_path))
    assert compile_cache_dir() == tmp_path / "jax"


def test_enabling_after_jax_is_imported_sets_jax_config(tmp_path):
    """A notebook imports JAX first: the cache folder is then set through `jax.config`, and a
    folder the user set already wins."""
    code = (
        "import jax, sys\nfrom pathlib import Path\n"
        "from pcmmeta.runtime.compile_cache import enable_compile_cache\n"
        f"print(enable_compile_cache(Path({str(tmp_path / 'mine')!r})))\n"
        "print(jax.config.jax_compilation_cache_dir)\n"
        f"print(enable_compile_cache(Path({str(tmp_path / 'other')!r})))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    first, config, second = out.split()
    assert first == config == str(tmp_path / "mine")
    assert second == first  # the folder already set wins
