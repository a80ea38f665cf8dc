"""Write-verify and single-shot programming of N random targets on the default device.

Usage: python benchmarks/program_throughput.py [N_DEVICES]
Prints devices/s (compilation excluded), RMS error and pulse statistics; each method twice:
compiled by default and with `xla_cpu_prefer_vector_width=512` (see device_throughput.py).
"""

import itertools
import sys
import time

import jax
import numpy as np

from pcmmeta.device import BUILTIN_DEVICES
from pcmmeta.programming import single_shot, write_verify


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    device = BUILTIN_DEVICES["nandakumar2018"]
    target = jax.random.uniform(jax.random.key(0), (n,), minval=device.g_min, maxval=10.0)
    methods = (("write-verify", lambda k, g: write_verify(k, device, g)), ("single-shot", lambda k, g: single_shot(k, device, g)))
    for (name, fn), (width, options) in itertools.product(methods, (("", None), (" 512", {"xla_cpu_prefer_vector_width": 512}))):
        name = name + width
        compiled = jax.jit(fn, compiler_options=options).lower(jax.random.key(1), target).compile()
        t0 = time.perf_counter()
        result = compiled(jax.random.key(1), target)
        jax.block_until_ready(result.state.g_prog)
        elapsed = time.perf_counter() - t0
        err = np.asarray(result.state.g_prog - target)
        pulses = np.asarray(result.pulses)
        print(
            f"{name:17s} {n:,} devices in {elapsed:.2f} s = {n / elapsed / 1e6:.2f} M devices/s; "
            f"RMS error {np.sqrt(np.mean(err**2)):.3f} µS, within 0.5 µS {np.mean(np.abs(err) <= 0.5):.1%}, "
            f"pulses mean {pulses.mean():.1f} p50 {np.median(pulses):.0f} p99 {np.percentile(pulses, 99):.0f} max {pulses.max()}"
        )


if __name__ == "__main__":
    main()
