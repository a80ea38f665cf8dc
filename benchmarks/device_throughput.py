"""Throughput of one SET pulse + one read over N devices, jitted, for every built-in device.

Usage: python benchmarks/device_throughput.py [N_DEVICES] [REPEATS] [ROUNDS]
Prints devices/s (target: ≥ 200 M devices/s for 1 M devices on a 2-core CPU).

Each call takes the state the previous call returned (a simulation loop: the calls cannot
overlap, and the state's buffers are donated and reused); the time per call is the best of
ROUNDS rounds of REPEATS calls (other processes share the machine), the rounds of a device's
compilations taken in turn. Lines per device:
- `1 device`: the default compilation;
- `1 device, 512-bit`: compiled with `xla_cpu_prefer_vector_width=512` (XLA:CPU emits 256-bit
  vectors by default; the AVX-512 machines we run on do twice the work per instruction);
- `1 device, pcmmeta`: compiled with `pcmmeta.runtime.compile_options.device_array_options()`, what the
  programming simulations use: 512-bit vectors where the CPU has AVX-512, and copy insertion by
  region analysis (without it XLA copies every donated state array before overwriting it). Its
  state and read are checked to be bitwise those of the 512-bit line (or of the default one);
- `2 devices, pcmmeta`: the device axis sharded over two XLA CPU devices (one per core), run
  in a subprocess started with XLA_FLAGS=--xla_force_host_platform_device_count=2.
On a GPU only the first line is printed (the options and the CPU devices are XLA:CPU's).
"""

import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pcmmeta.core.devices import BUILTIN_DEVICES
from pcmmeta.runtime.compile_options import NO_DONATION_COPIES, WIDE_VECTORS, device_array_options


class SimulationLoop:
    """One compiled SET pulse + read over n devices, and the state it carries from call to call."""

    def __init__(self, device, n: int, options, sharding=None):
        mask = jnp.ones((n,), bool)
        self.state = device.initial_state(jax.random.key(0), (n,))
        if sharding is not None:
            mask, self.state = jax.device_put((mask, self.state), sharding)

        def write_read(key, state):
            k_set, k_read = jax.random.split(key)
            state = device.set_pulse(k_set, state, mask, 100.0)
            return state, device.read(k_read, state, 200.0)

        self.step = jax.jit(write_read, donate_argnums=1, compiler_options=options)
        t0 = time.perf_counter()
        self.state, read = jax.block_until_ready(self.step(jax.random.key(1), self.state))
        self.first_s = time.perf_counter() - t0  # with the compilation
        # for the bitwise check of the compiler options, which are XLA:CPU's (on a GPU at
        # 100 M devices the copy would be gigabytes, for nothing)
        on_cpu = jax.default_backend() == "cpu"
        self.first_outputs = [np.asarray(a) for a in jax.tree.leaves((self.state, read))] if on_cpu else []
        self.best_s = float("inf")

    def time_round(self, keys) -> None:
        """Run len(keys) calls back to back; keep the best time per call seen so far."""
        t0 = time.perf_counter()
        for k in keys:
            self.state, read = self.step(k, self.state)
        jax.block_until_ready(read)
        self.best_s = min(self.best_s, (time.perf_counter() - t0) / len(keys))


def time_side_by_side(loops: list[SimulationLoop], repeats: int, rounds: int) -> None:
    """Rounds taken in turn by every loop (the machine's speed drifts; a slow spell then hits
    each of them, not one)."""
    for r in range(rounds):
        keys = jax.random.split(jax.random.fold_in(jax.random.key(2), r), repeats)
        for loop in loops:
            loop.time_round(keys)


def report(label: str, name: str, n: int, loop: SimulationLoop) -> None:
    print(
        f"{name:26s} {label:18s} {n:,} devices: write+read {loop.best_s * 1e3:6.2f} ms "
        f"-> {n / loop.best_s / 1e6:6.1f} M devices/s (first call incl. compile {loop.first_s:.2f} s)",
        flush=True,
    )


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--two-devices"]
    n = int(args[0]) if len(args) > 0 else 1_000_000
    repeats = int(args[1]) if len(args) > 1 else 30
    rounds = int(args[2]) if len(args) > 2 else 5
    ours = device_array_options()
    if "--two-devices" in sys.argv:
        mesh = Mesh(jax.devices()[:2], ("devices",))
        sharding = NamedSharding(mesh, PartitionSpec("devices"))
        for name, device in BUILTIN_DEVICES.items():
            loop = SimulationLoop(device, n, ours, sharding)
            time_side_by_side([loop], repeats, rounds)
            report("2 devices, pcmmeta", name, n, loop)
        return
    on_cpu = jax.default_backend() == "cpu"
    print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}); pcmmeta's options here: {ours}", flush=True)
    for name, device in BUILTIN_DEVICES.items():
        # the compiler options are XLA:CPU's; elsewhere the default compilation is pcmmeta's
        labelled = {"1 device": {}, "1 device, 512-bit": WIDE_VECTORS, "1 device, pcmmeta": ours} if on_cpu else {"1 device": {}}
        loops = {label: SimulationLoop(device, n, options) for label, options in labelled.items()}
        time_side_by_side(list(loops.values()), repeats, rounds)
        for label, loop in loops.items():
            report(label, name, n, loop)
        # region analysis only removes copies: the same bits as the line without it
        if not on_cpu:
            continue
        same_as = loops["1 device, 512-bit" if WIDE_VECTORS.items() <= ours.items() else "1 device"]
        if not all(np.array_equal(a, b) for a, b in zip(loops["1 device, pcmmeta"].first_outputs, same_as.first_outputs)):
            sys.exit(f"{name}: {NO_DONATION_COPIES} changed the results")
    if not on_cpu:
        return
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip())
    subprocess.run([sys.executable, __file__, str(n), str(repeats), str(rounds), "--two-devices"], env=env, check=True)


if __name__ == "__main__":
    main()
