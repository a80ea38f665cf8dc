import gc
import os
import tempfile

import pytest

from pcmmeta.runtime.compile_options import set_process_flags

# Tests run on the CPU with one device; the sharding test starts its own subprocess.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("PCMMETA_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "pcmmeta-glyphs"))
# One persistent compilation cache for this test run, in a folder of its own made by the first
# process that loads this file (xdist's workers inherit it from the controlling process), so a
# run never reads programs compiled by an earlier version of the code: many tests compile the
# same programs (the device fit's estimator, a tiny recipe's training step, a programming method
# per seed), and reading one back takes a fraction of compiling it. A folder the user named in
# JAX_COMPILATION_CACHE_DIR is used as it is, and kept.
_MADE_COMPILE_CACHE = not os.environ.get("JAX_COMPILATION_CACHE_DIR")
if _MADE_COMPILE_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="pcmmeta-test-compile-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# The `pcmmeta` command's own XLA flags (no LLVM loop unrolling: faster compilation), so that the
# tests compile what the command compiles and share the cache with the commands they start.
set_process_flags()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Free every compiled program after each test module. Each XLA:CPU executable holds memory
    mappings; the whole suite in one process compiles thousands of programs and crossed the
    kernel's limit of 65,530 mappings per process (vm.max_map_count), which made a later
    compilation segfault (measured: ~15,000 mappings two minutes into the suite)."""
    yield
    import jax

    jax.clear_caches()
    gc.collect()


def pytest_sessionfinish(session):
    """The compilation cache this run made goes with the run (the process that made it removes
    it: xdist's workers end before it does, and inherited it)."""
    if _MADE_COMPILE_CACHE and not hasattr(session.config, "workerinput"):
        import shutil

        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
