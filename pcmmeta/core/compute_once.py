"""`compute_once`: the identity, as an operation XLA does not fuse into its consumers.

XLA:CPU fuses chains of cheap elementwise operations into their consumers, duplicating them
where a consumer reads an element many times. When a small per-device array (the head's
weights, their support gradient) meets a broadcast over time × samples, the whole chain that
made it — programming noise, reads, pulses, drift, the noise hash — was fused into the
broadcast and recomputed for every element (about a sixth of a meta-iteration of
recipes/sine.yaml, docs/speed.md). `jax.lax.optimization_barrier` does not help there: XLA:CPU
removes it before fusion. A matrix product is never fused into elementwise consumers, and the
transpose of a product is a product, so multiplying by an identity matrix (the array seen as
blocks of 8 elements) materialises the value once and, under reverse-mode differentiation, its
cotangent once too. In float32 at `Precision.HIGHEST` the product is exact (each output is one
element times 1 plus zeros).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

#: Width of the identity matrix: each element costs this many multiply-adds (exact ones).
_BLOCK = 8


def _identity_product(a: Array) -> Array:
    if a.ndim == 0 or a.size % _BLOCK or not jnp.issubdtype(a.dtype, jnp.floating):
        return a  # the identity, left to XLA (no shape to block: an odd size, a scalar)
    blocks = a.reshape(-1, _BLOCK)
    eye = jnp.eye(_BLOCK, dtype=a.dtype)
    return jnp.matmul(blocks, eye, precision=jax.lax.Precision.HIGHEST).reshape(a.shape)


def compute_once(tree: PyTree) -> PyTree:
    """Every floating-point array of `tree`, unchanged in value (NaN and ±inf excepted: the
    product spreads them within a block of 8 elements), computed once where it stands; arrays
    whose size is not a multiple of 8 pass through as they are."""
    return jax.tree.map(_identity_product, tree)
