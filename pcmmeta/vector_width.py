"""Compiler options for programs that are elementwise work over large device arrays.

XLA:CPU emits 256-bit vectors by default. On a CPU with AVX-512 the device model's elementwise
kernels (noise, drift, SET law) run about twice as fast with 512-bit vectors: one SET pulse +
one read over 1 M devices 10.7 → 5.8 ms, write-verify of 1 M devices 3.2 → 2.7 s
(benchmarks/device_throughput.py, program_throughput.py, docs/speed.md). Meta-training is not
helped (0.51 → 0.58 s per meta-iteration, within noise or worse), so only the programming
simulations (deploy, the comparison, the learned policy's calibration) ask for it, per
program (`jax.jit(..., compiler_options=device_array_options())`), never process-wide.
"""

from __future__ import annotations

import functools
from pathlib import Path

WIDE_VECTORS = {"xla_cpu_prefer_vector_width": 512}


def cpu_has_avx512(cpuinfo: str | None = None) -> bool:
    """Whether the CPU reports the AVX-512 foundation (`avx512f` in /proc/cpuinfo's flags)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return any(line.startswith("flags") and " avx512f" in f" {line.split(':', 1)[-1]}" for line in cpuinfo.splitlines())


@functools.cache
def _wide_vectors_help() -> bool:
    import jax

    return jax.default_backend() == "cpu" and cpu_has_avx512()


def device_array_options() -> dict:
    """A fresh dict: `WIDE_VECTORS` when JAX computes on a CPU with AVX-512, else empty."""
    return dict(WIDE_VECTORS) if _wide_vectors_help() else {}
