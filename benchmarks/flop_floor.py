"""The float32 matmul floor of a meta-iteration on this machine: how fast could the LIF network's
layer-2 matmuls run, with no time loop, no elementwise work and no device model around them?

Usage: python benchmarks/flop_floor.py [--recipe R] [--meta-batch B] [--repeats N]

Prints one JSON line:
- `large_gemm_gflop_per_s`: a 2048 × 2048 × 2048 float32 matmul compiled by XLA (the machine's
  practical peak for float32 multiply-adds);
- `all_steps_ms`: the three matmuls of the LIF network's layer 2 at their own shapes, per task and
  set (K samples each), with every time step in one product — forward s·W (steps·K × H1)(H1 × H2),
  the input gradient g·Wᵀ and the weight gradient sᵀ·g — batched over the meta-batch's tasks and
  sets, one call each: what a loop that holds W across steps could do at best with XLA's matmuls;
- `floor_s_per_iteration_*`: the recipe's layer-2 FLOPs per meta-iteration (the count
  benchmarks/meta_train_speed.py uses) at the large matmul's rate, and the sum above.

The gap between the large matmul's rate and the other is what XLA's float32 kernels lose at
the network's 40-wide shapes; a meta-iteration near `floor_s_per_iteration_large_gemm` would need
matmul kernels of its own for these shapes.
"""

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp


def best_time(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default=os.path.join(os.path.dirname(__file__), "..", "recipes", "sine.yaml"))
    parser.add_argument("--meta-batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from pcmmeta.experiment.recipe import load_recipe, validate

    recipe = validate(load_recipe(args.recipe), args.recipe)
    net = recipe["network"]
    if net["kind"] != "lif":
        raise SystemExit(f"{args.recipe}: flop_floor.py measures the LIF network's layer 2 only (network.kind: lif)")
    h1, h2 = net["hidden"]
    steps = net["time_steps"]
    per_set = recipe["task"]["shots"]  # samples per set (support and query each)
    keys = jax.random.split(jax.random.key(0), 5)

    n = 2048
    a = jax.random.normal(keys[0], (n, n))
    b = jax.random.normal(keys[1], (n, n))
    gemm = jax.jit(lambda a, b: a @ b)
    large = 2.0 * n**3 / best_time(gemm, a, b, repeats=args.repeats) / 1e9

    # Per task and set (2B of them), over every time step: spikes s (steps·K × H1), the layer's
    # weights w (H1 × H2), the membranes' cotangent g (steps·K × H2).
    pairs, rows = args.meta_batch * 2, steps * per_set
    spikes = (jax.random.uniform(keys[2], (pairs, rows, h1)) < 0.2).astype(jnp.float32)
    w = jax.random.normal(keys[3], (pairs, h1, h2)) / h1**0.5
    g = jax.random.normal(keys[4], (pairs, rows, h2))
    flops_each = 2.0 * pairs * rows * h1 * h2

    # (a) every step at once: the weights held across steps, one batched product per matmul.
    all_steps = {
        "forward": jax.jit(lambda s, w, g: jnp.einsum("bki,bij->bkj", s, w)),
        "input_gradient": jax.jit(lambda s, w, g: jnp.einsum("bkj,bij->bki", g, w)),
        "weight_gradient": jax.jit(lambda s, w, g: jnp.einsum("bki,bkj->bij", s, g)),
    }
    t_all = {name: best_time(f, spikes, w, g, repeats=args.repeats) for name, f in all_steps.items()}

    flops = 3 * flops_each
    print(json.dumps({
        "recipe": recipe["name"],
        "meta_batch": args.meta_batch,
        "devices": f"{jax.default_backend()} × {len(jax.devices())}",
        "cores": len(os.sched_getaffinity(0)),
        "model_gflop_per_iteration": round(flops / 1e9, 2),
        "large_gemm_gflop_per_s": round(large, 1),
        "all_steps_ms": {k: round(v * 1e3, 1) for k, v in t_all.items()},
        "floor_s_per_iteration_large_gemm": round(flops / 1e9 / large, 4),
        "floor_s_per_iteration_all_steps": round(sum(t_all.values()), 4),
    }))


if __name__ == "__main__":
    main()
