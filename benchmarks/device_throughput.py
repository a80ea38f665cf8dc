"""Throughput of one SET pulse + one read over N devices, jitted, on the default device.

Usage: python benchmarks/device_throughput.py [N_DEVICES] [REPEATS]
Prints devices/s (the brief's target: ≥ 100 M devices/s for 1 M devices on a 2-core CPU).
"""

import sys
import time

import jax
import jax.numpy as jnp

from pcmmeta.device import BUILTIN_DEVICES


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    for name, device in BUILTIN_DEVICES.items():
        state = device.initial_state(jax.random.key(0), (n,))
        mask = jnp.ones((n,), bool)

        @jax.jit
        def write_read(key, state):
            k_set, k_read = jax.random.split(key)
            state = device.set_pulse(k_set, state, mask, 100.0)
            return state, device.read(k_read, state, 200.0)

        keys = jax.random.split(jax.random.key(1), repeats + 1)
        t0 = time.perf_counter()
        jax.block_until_ready(write_read(keys[0], state))
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for k in keys[1:]:
            out = write_read(k, state)
        jax.block_until_ready(out)
        per_call = (time.perf_counter() - t0) / repeats
        print(
            f"{name:28s} {n:,} devices: write+read {per_call * 1e3:7.2f} ms "
            f"-> {n / per_call / 1e6:7.1f} M devices/s (first call incl. compile {compile_s:.2f} s)"
        )


if __name__ == "__main__":
    main()
