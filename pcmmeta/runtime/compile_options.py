"""XLA compiler options: per program for the device arrays' elementwise work, and one XLA flag
for the whole `pcmmeta` process.

Two XLA:CPU options speed up the device model's kernels (noise, drift, SET law) without
changing a number (benchmarks/device_throughput.py, docs/speed.md):

- **512-bit vectors** (`WIDE_VECTORS`). XLA:CPU emits 256-bit vectors by default; on a CPU with
  AVX-512 the kernels run about twice as fast with 512-bit ones: one SET pulse + one read over
  1 M devices 10.7 → 5.8 ms, write-verify of 1 M devices 1.5 → 1.0 s. Float tolerance: the
  instruction selection changes, not the model.
- **Copy insertion by region analysis** (`NO_DONATION_COPIES`). A program that takes the device
  state donated and returns the new state in the same buffers (a simulation loop driven from
  Python: `jax.jit(step, donate_argnums=...)`) gets, by default, a copy of every state array
  before it is overwritten: six copies of 1 M floats per SET + read. With this option XLA proves
  them unneeded: 5.6 → 4.8 ms for that step (with 512-bit vectors). Bitwise the same results;
  no effect on write-verify's while loop, whose body already updates in place.

Meta-training is not helped by either (0.51 → 0.58 s per meta-iteration with 512-bit vectors;
within noise with region analysis), so only the programming simulations (deploy, the
comparison, the learned policy's calibration) ask for them, per program
(`jax.jit(..., compiler_options=device_array_options())`), never process-wide.

One option is process-wide, for the `pcmmeta` command only (`PROCESS_XLA_FLAGS`, added to the
user's XLA_FLAGS by `pcmmeta.cli.app.entry` before JAX starts its backend): **no LLVM loop unrolling
in XLA:CPU's kernels**. XLA's kernels are vectorised loops already; unrolling them again mostly
costs LLVM time. Compiling the meta-training step of recipes/sine.yaml (meta-batch 256) takes
~0.7 s less (LLVM 2.1–2.3 → 1.4–1.5 s, the whole step 4.0–4.7 → 3.3–3.8 s), at the same speed
per meta-iteration, device operation and write-verify, and with the same numbers to float
rounding (docs/speed.md, "LLVM loop unrolling"). It is an XLA backend "extra option": XLA reads
those only from XLA_FLAGS, not per program, and merges every `--xla_backend_extra_options` it is
given into one map, in which the option is on whenever its name is present (whatever its value).
So a notebook user who wants it sets XLA_FLAGS before importing JAX, and `PCMMETA_XLA_FLAGS=off`
keeps the command from adding it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import MutableMapping
from pathlib import Path

WIDE_VECTORS = {"xla_cpu_prefer_vector_width": 512}
NO_DONATION_COPIES = {"xla_cpu_copy_insertion_use_region_analysis": True}

#: XLA_FLAGS the `pcmmeta` process adds to the user's (see the module's docstring).
PROCESS_XLA_FLAGS = ("--xla_backend_extra_options=xla_cpu_disable_loop_unrolling=true",)

#: Set to "off" to keep the `pcmmeta` command from adding `PROCESS_XLA_FLAGS`.
OPT_OUT_VARIABLE = "PCMMETA_XLA_FLAGS"


def _named(flag: str) -> str:
    """What the user's flags must mention for `flag` to stay out: a backend option's own name
    (XLA merges several `--xla_backend_extra_options` into one map), else the flag's name."""
    name, _, value = flag.partition("=")
    return value.partition("=")[0] if name == "--xla_backend_extra_options" else name


def with_process_flags(xla_flags: str) -> str:
    """`xla_flags` (the user's XLA_FLAGS) with those of `PROCESS_XLA_FLAGS` that it does not
    already name added. A value that is not flags (XLA reads one that does not start with "-" as
    the path of a file of flags) is returned as it is."""
    if xla_flags.strip() and not xla_flags.lstrip().startswith("-"):
        return xla_flags
    flags = xla_flags.split()
    return " ".join([*flags, *(flag for flag in PROCESS_XLA_FLAGS if _named(flag) not in xla_flags)])


def set_process_flags(environ: MutableMapping[str, str] = os.environ) -> None:
    """Add `PROCESS_XLA_FLAGS` to XLA_FLAGS, unless `PCMMETA_XLA_FLAGS=off`. Effective only before
    JAX's backend starts (XLA reads the flags once, at its first computation); the `pcmmeta`
    command calls it first."""
    if environ.get(OPT_OUT_VARIABLE, "").strip().lower() == "off":
        return
    flags = with_process_flags(environ.get("XLA_FLAGS", ""))
    if flags:
        environ["XLA_FLAGS"] = flags


def cpu_has_avx512(cpuinfo: str | None = None) -> bool:
    """Whether the CPU reports the AVX-512 foundation (`avx512f` in /proc/cpuinfo's flags)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return any(line.startswith("flags") and " avx512f" in f" {line.split(':', 1)[-1]}" for line in cpuinfo.splitlines())


@functools.cache
def compiler_accepts(options: tuple[tuple[str, object], ...]) -> bool:
    """Whether this jaxlib's compiler knows these options (an unknown one fails the compilation;
    jax ≥ 0.4.35 is allowed, and XLA adds and removes options between versions)."""
    import jax
    import jax.numpy as jnp

    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(jnp.zeros((), jnp.float32)).compile()
    except Exception:  # XLA reports an unknown option as INVALID_ARGUMENT, raised as several types
        return False
    return True


@functools.cache
def _cpu_options() -> tuple[tuple[str, object], ...]:
    import jax

    if jax.default_backend() != "cpu":
        return ()
    options: dict[str, object] = {}
    for wanted, applies in ((NO_DONATION_COPIES, True), (WIDE_VECTORS, cpu_has_avx512())):
        if applies and compiler_accepts(tuple(wanted.items())):
            options.update(wanted)
    return tuple(options.items())


def device_array_options() -> dict:
    """A fresh dict of compiler options for a program over device arrays: on a CPU,
    `NO_DONATION_COPIES`, and `WIDE_VECTORS` where the CPU has AVX-512 (each only if this
    jaxlib knows it); on other backends, none."""
    return dict(_cpu_options())
