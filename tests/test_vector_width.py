"""512-bit vectors only where they help: CPU programs over device arrays, on AVX-512 CPUs."""

import jax
import jax.numpy as jnp
import numpy as np

from pcmmeta.device import BUILTIN_DEVICES, DEFAULT_DEVICE
from pcmmeta.vector_width import WIDE_VECTORS, cpu_has_avx512, device_array_options


def test_avx512_is_read_from_the_cpu_flags():
    assert cpu_has_avx512("processor : 0\nflags\t\t: fpu sse avx2 avx512f avx512dq\n")
    assert not cpu_has_avx512("processor : 0\nflags\t\t: fpu sse avx2 fma\n")
    assert not cpu_has_avx512("model name : avx512f in a name only\nflags : fpu avx2\n")


def test_options_match_the_machine_and_give_the_same_numbers():
    options = device_array_options()
    assert options == (WIDE_VECTORS if jax.default_backend() == "cpu" and cpu_has_avx512() else {})
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
