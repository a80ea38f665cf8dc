"""What a LIF-style time loop pays for storing its per-step state (the residuals of a backward pass).

Usage: python benchmarks/scan_stores.py [SAMPLES] [NEURONS] [STEPS]
Runs the same 100-step membrane update (leak, constant input, threshold, soft reset, a filtered
trace) over a (samples × neurons) state — by default one chunk of recipes/sine.yaml's meta-batch,
640 × 40 — and prints ns per element and step when the loop stores nothing, stores the membrane
(float32) per step as `lax.scan` outputs, stores the spike as a bool, writes into a carried
buffer of all steps, or into a small cyclic buffer (4–50 steps) that stays in cache.
"""

import sys
import time

import jax
import jax.numpy as jnp

_ARGS = [int(a) for a in sys.argv[1:4]]
SAMPLES, NEURONS, STEPS = _ARGS + [640, 40, 100][len(_ARGS):]


def membrane_step(carry, current):
    v, z = carry
    m = 0.9 * v + current
    s = (m > 1.0).astype(m.dtype)
    return (m - s, 0.95 * z + 0.05 * s), m


def no_store(c):
    return jax.lax.scan(lambda cr, _: (membrane_step(cr, c)[0], None), (jnp.zeros_like(c),) * 2, None, length=STEPS, unroll=4)[0]


def store_float(c):
    return jax.lax.scan(lambda cr, _: membrane_step(cr, c), (jnp.zeros_like(c),) * 2, None, length=STEPS, unroll=4)


def store_bool(c):
    def step(cr, _):
        cr, m = membrane_step(cr, c)
        return cr, m > 1.0

    return jax.lax.scan(step, (jnp.zeros_like(c),) * 2, None, length=STEPS, unroll=4)


def cyclic_buffer(k):
    def run(c):
        def step(cr, t):
            v, z, buffer = cr
            (v, z), m = membrane_step((v, z), c)
            return (v, z, jax.lax.dynamic_update_index_in_dim(buffer, m, t % k, 0)), None

        init = (jnp.zeros_like(c), jnp.zeros_like(c), jnp.zeros((k,) + c.shape, c.dtype))
        return jax.lax.scan(step, init, jnp.arange(STEPS), unroll=4)[0]

    return run


def ns_per_element_step(fn, c, repeats=20, rounds=5) -> float:
    fn = jax.jit(fn)
    jax.block_until_ready(fn(c))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = fn(c)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best / (c.size * STEPS) * 1e9


def main() -> None:
    c = jax.random.normal(jax.random.key(0), (SAMPLES, NEURONS))
    cases = [("no store", no_store), ("store float32 (scan outputs)", store_float), ("store bool (scan outputs)", store_bool)]
    cases += [(f"cyclic buffer of {k} steps", cyclic_buffer(k)) for k in (4, 8, 20, 50)]
    cases += [(f"buffer of all {STEPS} steps", cyclic_buffer(STEPS))]
    print(f"state {SAMPLES} × {NEURONS}, {STEPS} steps, best of 5 rounds of 20 calls")
    for label, fn in cases:
        print(f"{label:32s} {ns_per_element_step(fn, c):6.3f} ns per element and step")


if __name__ == "__main__":
    main()
