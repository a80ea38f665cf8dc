"""512-bit vectors only where they help: CPU programs over device arrays, on AVX-512 CPUs."""

import jax
import jax.numpy as jnp
import numpy as np

from pcmmeta.device import BUILTIN_DEVICES, DEFAULT_DEVICE
from pcmmeta.programming import WriteVerify
from pcmmeta.vector_width import WIDE_VECTORS, cpu_has_avx512, device_array_options


def test_avx512_is_read_from_the_cpu_flags():
    assert cpu_has_avx512("processor : 0\nflags\t\t: fpu sse avx2 avx512f avx512dq\n")
    assert not cpu_has_avx512("processor : 0\nflags\t\t: fpu sse avx2 fma\n")
    assert not cpu_has_avx512("model name : avx512f in a name only\nflags : fpu avx2\n")


def test_options_match_the_machine_and_give_the_same_numbers():
    options = device_array_options()
    assert options == (WIDE_VECTORS if jax.default_backend() == "cpu" and cpu_has_avx512() else {})
    device = BUILTIN_DEVICES[DEFAULT_DEVICE]
    target = jnp.linspace(device.g_min, device.g_max, 4096)
    method = WriteVerify()
    program = lambda k, g: method.program(k, device, g).state.g_prog  # noqa: E731
    plain = jax.jit(program)(jax.random.key(3), target)
    wide = jax.jit(program, compiler_options=WIDE_VECTORS)(jax.random.key(3), target)
    # vector width changes instruction selection, not the simulation (float tolerance)
    np.testing.assert_allclose(np.asarray(wide), np.asarray(plain), rtol=1e-5, atol=1e-5)
