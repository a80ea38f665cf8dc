"""Write-verify and single-shot programming of N random targets on the default device.

Usage: python benchmarks/program_throughput.py [N_DEVICES] [ROUNDS]
Prints devices/s (compilation excluded; the median of ROUNDS runs, default 3), RMS error and
pulse statistics; each method three times: compiled by default, with 512-bit vectors
(`xla_cpu_prefer_vector_width=512`) and with `pcmmeta.runtime.compile_options.device_array_options()`,
as `deploy` compiles it (512-bit vectors on AVX-512 CPUs, copy insertion by region analysis;
see device_throughput.py; on a GPU only the default). A method's compilations run in turn, round by round (the machine's
speed drifts; a slow spell then hits each of them), each round with another key; the errors and pulses printed are the last round's.
"""

import sys
import time

import jax
import numpy as np

from pcmmeta.core.devices import BUILTIN_DEVICES
from pcmmeta.core.programming import single_shot, write_verify
from pcmmeta.runtime.compile_options import WIDE_VECTORS, device_array_options


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    device = BUILTIN_DEVICES["nandakumar2018"]
    target = jax.random.uniform(jax.random.key(0), (n,), minval=device.g_min, maxval=10.0)
    methods = (("write-verify", lambda k, g: write_verify(k, device, g)), ("single-shot", lambda k, g: single_shot(k, device, g)))
    # the compiler options are XLA:CPU's; on a GPU the default compilation is pcmmeta's
    compilations = (("", {}), (" 512-bit", WIDE_VECTORS), (" pcmmeta", device_array_options())) if jax.default_backend() == "cpu" else (("", {}),)
    for name, fn in methods:
        compiled = {label: jax.jit(fn, compiler_options=options).lower(jax.random.key(1), target).compile() for label, options in compilations}
        seconds, results = {label: [] for label in compiled}, {}
        for r in range(rounds):
            for label, program in compiled.items():
                t0 = time.perf_counter()
                results[label] = program(jax.random.key(1 + r), target)
                jax.block_until_ready(results[label].state.g_prog)
                seconds[label].append(time.perf_counter() - t0)
        for label in compiled:
            result = results[label]  # the last round's (key 1 + ROUNDS − 1)
            elapsed = float(np.median(seconds[label]))
            err = np.asarray(result.state.g_prog - target)
            pulses = np.asarray(result.pulses)
            print(
                f"{name + label:21s} {n:,} devices in {elapsed:.2f} s = {n / elapsed / 1e6:.2f} M devices/s "
                f"(runs: {' '.join(f'{s:.2f}' for s in seconds[label])}); "
                f"RMS error {np.sqrt(np.mean(err**2)):.3f} µS, within 0.5 µS {np.mean(np.abs(err) <= 0.5):.1%}, "
                f"pulses mean {pulses.mean():.1f} p50 {np.median(pulses):.0f} p99 {np.percentile(pulses, 99):.0f} max {pulses.max()}",
                flush=True,
            )


if __name__ == "__main__":
    main()
