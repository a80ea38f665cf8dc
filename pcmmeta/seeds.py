"""Seeds: whole numbers in 0 … 2⁶⁴−1, and the PRNG key of one.

`jax.random.key(seed)` keeps only the low 32 bits of a seed unless 64-bit mode is on, so seeds
2³² and 0 would silently give the same key, and seeds ≥ 2⁶³ raise `OverflowError`. `seed_key`
gives every seed its own key: `jax.random.key(seed, impl=KEY_IMPL)` below 2³², folded with the
high 32 bits above.

Keys are JAX's `unsafe_rbg` keys, not the default threefry ones. The device noise does not
draw from keys (`pcmmeta.noise` hashes their bits), so what keys cost is `split` and `fold_in`:
threefry's are 20 unrolled rounds of mixing that XLA:CPU compiles into kernels at every call
site — 63 of the 220 compiled kernels of a meta-training step, a fifth of its compile time.
`unsafe_rbg` derives keys with XLA's own `RngBitGenerator` (Philox on CPU and GPU), one
operation: the step compiles 194 kernels (docs/speed.md). Its "unsafe" is the quality of derived
keys against adversarial use (a split's children are spaced outputs of the parent's stream, and
`fold_in` xors in a function of the data); pcmmeta never draws from a key it has split. The
numbers are reproducible per seed on a given backend; they changed with this choice
(docs/device-model.md).
"""

from __future__ import annotations

from typing import Any

from .errors import UserInputError, short_repr

#: The PRNG implementation of every key `seed_key` makes (see above).
KEY_IMPL = "unsafe_rbg"

#: The largest seed (seeds are unsigned 64-bit integers, as NumPy's and JAX's are).
SEED_MAX = 2**64 - 1


def check_seed(value: Any, where: str) -> int:
    """`value` if it is a whole number in 0 … 2⁶⁴−1, else `UserInputError` naming `where`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise UserInputError(f"{where}: must be a whole number from 0 to 2^64-1 ({SEED_MAX}), got {short_repr(value)}")
    return value


def seed_key(seed: int):
    """The PRNG key of a seed in 0 … 2⁶⁴−1: `key(low 32 bits, impl=KEY_IMPL)`, folded with the
    high 32 bits when there are any."""
    import jax

    check_seed(seed, "seed")
    key = jax.random.key(seed & 0xFFFFFFFF, impl=KEY_IMPL)
    high = seed >> 32
    return jax.random.fold_in(key, high) if high else key
