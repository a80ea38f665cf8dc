"""Seeds: whole numbers in 0 … 2⁶⁴−1, and the PRNG key of one.

`jax.random.key(seed)` keeps only the low 32 bits of a seed unless 64-bit mode is on, so seeds
2³² and 0 would silently give the same key, and seeds ≥ 2⁶³ raise `OverflowError`. `seed_key`
gives every seed its own key and the same key as `jax.random.key(seed)` below 2³², so runs made
with small seeds keep their numbers.
"""

from __future__ import annotations

from typing import Any

from pcmmeta.errors import UserInputError, short_repr

#: The largest seed (seeds are unsigned 64-bit integers, as NumPy's and JAX's are).
SEED_MAX = 2**64 - 1


def check_seed(value: Any, where: str) -> int:
    """`value` if it is a whole number in 0 … 2⁶⁴−1, else `UserInputError` naming `where`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise UserInputError(f"{where}: must be a whole number from 0 to 2^64-1 ({SEED_MAX}), got {short_repr(value)}")
    return value


def seed_key(seed: int):
    """The PRNG key of a seed in 0 … 2⁶⁴−1: `key(low 32 bits)`, folded with the high 32 bits
    when there are any."""
    import jax

    check_seed(seed, "seed")
    key = jax.random.key(seed & 0xFFFFFFFF)
    high = seed >> 32
    return jax.random.fold_in(key, high) if high else key
