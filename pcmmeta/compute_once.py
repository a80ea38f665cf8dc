"""`compute_once`: the identity, as an operation XLA does not fuse into its consumers.

XLA:CPU fuses chains of cheap elementwise operations into their consumers, duplicating them
where a consumer reads an element many times. When a small per-device array (the head's
weights, their support gradient) meets a broadcast over time × samples, the whole chain that
made it — programming noise, reads, pulses, drift, the noise hash — was fused into the
broadcast and recomputed for every element (about a sixth of a meta-iteration of
recipes/sine.yaml, docs/speed.md). `jax.lax.optimization_barrier` does not help there: XLA:CPU
removes it before fusion. A matrix product is never fused into elementwise consumers, and the
transpose of a product is a product, so multiplying by the identity matrix materialises the
value once and, under reverse-mode differentiation, its cotangent once too. In float32 at
`Precision.HIGHEST` the product is exact (each output is one element times 1 plus zeros).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree


def _identity_product(a: Array) -> Array:
    if a.ndim == 0 or not jnp.issubdtype(a.dtype, jnp.floating):
        return a
    return jnp.matmul(a, jnp.eye(a.shape[-1], dtype=a.dtype), precision=jax.lax.Precision.HIGHEST)


def compute_once(tree: PyTree) -> PyTree:
    """Every floating-point array of `tree`, unchanged in value (NaN and ±inf excepted: the
    product spreads them along the last axis), computed once where it stands."""
    return jax.tree.map(_identity_product, tree)
