import os

# Tests run on the CPU with one device; the sharding test starts its own subprocess.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
