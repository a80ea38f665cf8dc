import os

# Tests run on the CPU with one device; the sharding test starts its own subprocess.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("PCMMETA_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "pcmmeta-glyphs"))
