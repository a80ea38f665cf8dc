import os

# Tests run on the CPU with one device; the sharding test starts its own subprocess.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("PCMMETA_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "pcmmeta-glyphs"))


import gc

import pytest


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
