"""Throughput of one SET pulse + one read over N devices, jitted, for every built-in device.

Usage: python benchmarks/device_throughput.py [N_DEVICES] [REPEATS] [ROUNDS]
Prints devices/s (the brief's target: ≥ 200 M devices/s for 1 M devices on a 2-core CPU).

Each call takes the state the previous call returned (a simulation loop: the calls cannot
overlap, and the state's buffers are donated and reused); the time per call is the best of
ROUNDS rounds of REPEATS calls (other processes share the machine). Three lines per device:
- `1 device`: the default compilation;
- `1 device, 512-bit`: compiled with `xla_cpu_prefer_vector_width=512` (XLA:CPU emits 256-bit
  vectors by default; the AVX-512 machines we run on do twice the work per instruction);
- `2 devices, 512-bit`: the device axis sharded over two XLA CPU devices (one per core), run
  in a subprocess started with XLA_FLAGS=--xla_force_host_platform_device_count=2.
"""

import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pcmmeta.device import BUILTIN_DEVICES

WIDE = {"xla_cpu_prefer_vector_width": 512}


def time_per_call(device, n: int, repeats: int, rounds: int, options, sharding=None) -> tuple[float, float]:
    """(best seconds per SET pulse + read, seconds of the first call with its compilation)."""
    mask = jnp.ones((n,), bool)
    state = device.initial_state(jax.random.key(0), (n,))
    if sharding is not None:
        mask, state = jax.device_put((mask, state), sharding)

    def write_read(key, state):
        k_set, k_read = jax.random.split(key)
        state = device.set_pulse(k_set, state, mask, 100.0)
        return state, device.read(k_read, state, 200.0)

    step = jax.jit(write_read, donate_argnums=1, compiler_options=options)
    keys = jax.random.split(jax.random.key(1), repeats + 1)
    t0 = time.perf_counter()
    state, read = jax.block_until_ready(step(keys[0], state))
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for k in keys[1:]:
            state, read = step(k, state)
        jax.block_until_ready(read)
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best, first


def report(label: str, name: str, n: int, per_call: float, first: float) -> None:
    print(
        f"{name:26s} {label:18s} {n:,} devices: write+read {per_call * 1e3:6.2f} ms "
        f"-> {n / per_call / 1e6:6.1f} M devices/s (first call incl. compile {first:.2f} s)",
        flush=True,
    )


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--two-devices"]
    n = int(args[0]) if len(args) > 0 else 1_000_000
    repeats = int(args[1]) if len(args) > 1 else 30
    rounds = int(args[2]) if len(args) > 2 else 5
    if "--two-devices" in sys.argv:
        mesh = Mesh(jax.devices()[:2], ("devices",))
        sharding = NamedSharding(mesh, PartitionSpec("devices"))
        for name, device in BUILTIN_DEVICES.items():
            report("2 devices, 512-bit", name, n, *time_per_call(device, n, repeats, rounds, WIDE, sharding))
        return
    for name, device in BUILTIN_DEVICES.items():
        report("1 device", name, n, *time_per_call(device, n, repeats, rounds, None))
        report("1 device, 512-bit", name, n, *time_per_call(device, n, repeats, rounds, WIDE))
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip())
    subprocess.run([sys.executable, __file__, str(n), str(repeats), str(rounds), "--two-devices"], env=env, check=True)


if __name__ == "__main__":
    main()
