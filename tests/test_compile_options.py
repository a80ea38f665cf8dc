"""Compiler options for device-array programs: only where they help, and never a different number."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pcmmeta.core.devices import BUILTIN_DEVICES, DEFAULT_DEVICE
from pcmmeta.runtime.compile_options import (
    NO_DONATION_COPIES,
    PROCESS_XLA_FLAGS,
    WIDE_VECTORS,
    compiler_accepts,
    cpu_has_avx512,
    device_array_options,
    set_process_flags,
    with_process_flags,
)


def test_avx512_is_read_from_the_cpu_flags():
    assert cpu_has_avx512("processor : 0\nflags\t\t: fpu sse avx2 avx512f avx512dq\n")
    assert not cpu_has_avx512("processor : 0\nflags\t\t: fpu sse avx2 fma\n")
    assert not cpu_has_avx512("model name : avx512f in a name only\nflags : fpu avx2\n")


@pytest.mark.parametrize(
    "backend, avx512, known, expected",
    [
        ("cpu", False, True, NO_DONATION_COPIES),
        ("cpu", True, True, {**NO_DONATION_COPIES, **WIDE_VECTORS}),
        ("cpu", True, False, {}),  # an older jaxlib that knows neither option
        ("gpu", True, True, {}),
    ],
)
def test_options_follow_the_backend_the_cpu_and_the_compiler(monkeypatch, backend, avx512, known, expected):
    from pcmmeta.runtime import compile_options as C

    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    monkeypatch.setattr(C, "cpu_has_avx512", lambda: avx512)
    monkeypatch.setattr(C, "compiler_accepts", lambda options: known)
    C._cpu_options.cache_clear()
    try:
        assert device_array_options() == expected
    finally:
        C._cpu_options.cache_clear()


def test_options_give_the_same_numbers():
    options = device_array_options()
    options["changed"] = 1
    assert "changed" not in device_array_options()  # every caller gets its own dict
    device = BUILTIN_DEVICES[DEFAULT_DEVICE]
    state = device.programmed_state(jax.random.key(2), jnp.linspace(device.g_min, device.g_max, 4096), 0.0)
    mask = jnp.ones(state.shape, bool)

    def pulse_and_read(key, state):  # the kernels a programming loop repeats
        k_set, k_read = jax.random.split(key)
        after = device.set_pulse(k_set, state, mask, 100.0)
        return after.g_prog, device.read(k_read, after, 200.0)

    plain = jax.jit(pulse_and_read)(jax.random.key(3), state)
    wide = jax.jit(pulse_and_read, compiler_options=WIDE_VECTORS)(jax.random.key(3), state)
    # vector width changes instruction selection, not the model (float tolerance)
    for a, b in zip(plain, wide):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)


def test_an_unknown_compiler_option_is_refused_not_raised():
    assert compiler_accepts(tuple(WIDE_VECTORS.items()))
    assert not compiler_accepts((("xla_cpu_no_such_option_anywhere", True),))


def test_region_analysis_removes_the_donated_states_copies_and_changes_no_bit():
    """A donated SET + read compiled with NO_DONATION_COPIES has no copies of the state's arrays
    (the default compilation has some) and returns bitwise the same state and read."""
    if jax.default_backend() != "cpu":
        pytest.skip("an XLA:CPU option")
    if not compiler_accepts(tuple(NO_DONATION_COPIES.items())):
        pytest.skip("this jaxlib has no copy insertion by region analysis")
    device = BUILTIN_DEVICES[DEFAULT_DEVICE]
    n = 4096
    mask = jnp.arange(n) % 3 > 0

    def pulse_and_read(key, state):
        k_set, k_read = jax.random.split(key)
        state = device.set_pulse(k_set, state, mask, 100.0)
        return state, device.read(k_read, state, 200.0)

    def fresh():
        return device.programmed_state(jax.random.key(2), jnp.linspace(device.g_min, device.g_max, n), 0.0)

    def copies(options):
        text = jax.jit(pulse_and_read, donate_argnums=1, compiler_options=options).lower(jax.random.key(3), fresh()).compile().as_text()
        return sum(1 for line in text.splitlines() if " copy(" in line and f"[{n}]" in line)

    assert copies({}) > 0  # what the option is for: if XLA stops making them, this test says so
    assert copies(NO_DONATION_COPIES) == 0
    plain = jax.jit(pulse_and_read, donate_argnums=1)(jax.random.key(3), fresh())
    region = jax.jit(pulse_and_read, donate_argnums=1, compiler_options=NO_DONATION_COPIES)(jax.random.key(3), fresh())
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(region)):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))


def test_process_flags_are_added_to_the_users_unless_they_name_them():
    ours = " ".join(PROCESS_XLA_FLAGS)
    assert with_process_flags("") == ours
    assert with_process_flags("--xla_force_host_platform_device_count=2") == f"--xla_force_host_platform_device_count=2 {ours}"
    # XLA merges several --xla_backend_extra_options into one map: an unrelated one keeps ours
    other = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000"
    assert with_process_flags(other) == f"{other} {ours}"
    named = "--xla_backend_extra_options=xla_cpu_disable_loop_unrolling"
    assert with_process_flags(named) == named  # the user has named it: theirs alone
    assert with_process_flags(with_process_flags("")) == ours
    assert with_process_flags("/etc/xla_flags.txt") == "/etc/xla_flags.txt"  # a file of flags, for XLA


def test_process_flags_can_be_turned_off():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    set_process_flags(environ)
    assert environ["XLA_FLAGS"].endswith(" ".join(PROCESS_XLA_FLAGS))
    environ = {"PCMMETA_XLA_FLAGS": "off"}
    set_process_flags(environ)
    assert "XLA_FLAGS" not in environ


# The console entry with its command line replaced by a probe that prints XLA_FLAGS and computes.
# XLA aborts the process on a flag it does not know, so the second probe, whose process flag is
# unknown, shows that the flags are in place before JAX's backend starts. (Unknown names inside
# --xla_backend_extra_options are ignored by XLA: the first probe shows that XLA takes the flag,
# not that it still knows the option.)
PROBE = """
import os
import pcmmeta.cli.app as cli
import pcmmeta.runtime.compile_options as compile_options
if os.environ.get("PROBE_FLAG"):
    compile_options.PROCESS_XLA_FLAGS = (os.environ["PROBE_FLAG"],)
def probe():
    import jax.numpy as jnp
    print(os.environ["XLA_FLAGS"])
    print(float(jnp.arange(4.0).sum()))
cli.main = probe
from pcmmeta.cli.console import entry
entry()
"""


def _run_probe(tmp_path, **extra_env):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PCMMETA_XLA_FLAGS")}
    env.update(PCMMETA_COMPILE_CACHE="off", **extra_env)
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)


def test_the_pcmmeta_process_sets_its_flags_before_xla_starts(tmp_path):
    out = _run_probe(tmp_path)
    assert out.returncode == 0, out.stderr
    flags, total = out.stdout.split("\n")[:2]
    assert flags == " ".join(PROCESS_XLA_FLAGS)
    assert total == "6.0"
    unknown = _run_probe(tmp_path, PROBE_FLAG="--xla_pcmmeta_probe_no_such_flag=1")
    assert unknown.returncode != 0 and "xla_pcmmeta_probe_no_such_flag" in unknown.stderr
