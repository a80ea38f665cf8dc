"""Speed of one meta-iteration (MAML) of a recipe (default: recipes/sine.yaml) at given meta-batches.

Usage: python benchmarks/meta_train_speed.py [META_BATCH ...] [--iterations N] [--recipe R]
           [--tasks-per-chip G ...] [--chunk-tasks C] [--warm]
Prints compile time, s/iteration, iterations/s, tasks/s (and per CPU core), samples (images, points) through the
body per second, peak resident memory of the process; for the LIF network also the model FLOPs
per iteration (the layer-2 matmuls, forward and backward) and their fraction of a peak that you pass as
--peak-gflops (default: 2 cores × 32 FLOP/cycle × 2.5 GHz = 160 GFLOP/s, a typical AVX2-FMA
figure; give your machine's).
Run each meta-batch in a fresh process (the script re-executes itself) so peak memory and
compile time are per configuration. Set XLA_FLAGS=--xla_force_host_platform_device_count=2
to split the meta-batch over two CPU devices (one per core).
The children run with the XLA flags the `pcmmeta` command sets for itself
(`pcmmeta.runtime.compile_options.PROCESS_XLA_FLAGS`, added to any XLA_FLAGS of yours); --xla-defaults
leaves them out (what a notebook gets unless it sets XLA_FLAGS). The JSON says which ran.
--warm runs every configuration twice with a fresh persistent compilation cache (what the
`pcmmeta` command uses, `pcmmeta.runtime.compile_cache`): a cold start, then a warm one that reads the
compiled step back; both lines are printed ("start": "cold" / "warm").
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(meta_batch: int, iterations: int, recipe_path: str, peak_gflops: float, tasks_per_chip: int, chunk_tasks: int | None) -> dict:
    import jax

    from pcmmeta.experiment.recipe import load_recipe, validate
    from pcmmeta.experiment.train import build_experiment, init_state, make_optimizer, make_train_step

    recipe = load_recipe(recipe_path)
    recipe["train"]["meta_batch"] = meta_batch
    recipe["maml"]["tasks_per_chip"] = tasks_per_chip
    if chunk_tasks is not None:
        recipe["train"]["chunk_tasks"] = chunk_tasks
    recipe = validate(recipe, f"{recipe_path} with meta-batch {meta_batch}, tasks per chip {tasks_per_chip}")
    exp = build_experiment(recipe)
    opt = make_optimizer(exp.train)
    state = init_state(exp, opt)
    step = make_train_step(exp, opt, meta_batch)
    t0 = time.perf_counter()
    state, loss, _ = step(state, exp.family)
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(iterations):
        state, loss, _ = step(state, exp.family)
    jax.block_until_ready(loss)
    per_it = (time.perf_counter() - t0) / iterations
    sample = exp.family.sample(jax.random.key(0), 1)
    samples = meta_batch * (sample.y_support.shape[1] + sample.y_query.shape[1])  # inputs through the body per iteration
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "recipe": recipe["name"],
        "meta_batch": meta_batch,
        "tasks_per_chip": tasks_per_chip,
        "chunk_tasks": recipe["train"]["chunk_tasks"],
        "devices": len(jax.devices()),
        "compile_plus_first_step_s": round(compile_s, 2),
        "s_per_iteration": round(per_it, 4),
        "iterations_per_s": round(1 / per_it, 2),
        "tasks_per_s": round(meta_batch / per_it, 1),
        "tasks_per_s_per_core": round(meta_batch / per_it / len(os.sched_getaffinity(0)), 1) if jax.default_backend() == "cpu" else None,
        "samples_per_s": round(samples / per_it, 1),
        "peak_rss_MB": round(peak_mb),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    if recipe["network"]["kind"] == "lif":
        # The model's own count: the layer-2 matmul per time step, forward (2·N·H1·H2) and
        # backward (two more), N = tasks × 2K samples. (XLA's cost analysis counts a loop body
        # once, not once per trip, so it undercounts the scans.)
        t = recipe["network"]
        h1, h2 = t["hidden"]
        flops = 6.0 * samples * t["time_steps"] * h1 * h2
        out.update({
            "model_gflop_per_iteration": round(flops / 1e9, 2),
            "achieved_gflop_per_s": round(flops / per_it / 1e9, 1),
            "fraction_of_peak": round(flops / per_it / (peak_gflops * 1e9), 4),
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("meta_batch", nargs="*", type=int, default=[256, 32])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--recipe", default=os.path.join(os.path.dirname(__file__), "..", "recipes", "sine.yaml"))
    parser.add_argument("--peak-gflops", type=float, default=160.0)
    parser.add_argument("--tasks-per-chip", type=int, nargs="*", default=[1])
    parser.add_argument("--chunk-tasks", type=int, default=None, help="override train.chunk_tasks")
    parser.add_argument("--warm", action="store_true", help="cold then warm start with a persistent compilation cache")
    parser.add_argument("--xla-defaults", action="store_true", help="without the XLA flags the pcmmeta command sets")
    parser.add_argument("--compile-cache", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        if args.compile_cache:
            from pcmmeta.runtime.compile_cache import enable_compile_cache

            enable_compile_cache(Path(args.compile_cache))
        print(json.dumps(measure(args.meta_batch[0], args.iterations, args.recipe, args.peak_gflops, args.tasks_per_chip[0], args.chunk_tasks)))
        return
    from pcmmeta.runtime.compile_options import set_process_flags

    base_env = dict(os.environ)
    if not args.xla_defaults:
        set_process_flags(base_env)
    for mb in args.meta_batch:
        for g in args.tasks_per_chip:
            extra = [] if args.chunk_tasks is None else ["--chunk-tasks", str(args.chunk_tasks)]
            command = [sys.executable, __file__, str(mb), "--iterations", str(args.iterations), "--recipe", args.recipe,
                       "--peak-gflops", str(args.peak_gflops), "--tasks-per-chip", str(g), *extra, "--child"]
            if not args.warm:
                out = subprocess.run(command, capture_output=True, text=True, check=True, env=base_env)
                print(out.stdout.strip().splitlines()[-1], flush=True)
                continue
            # the children use only the fresh folder, not a cache the environment names
            env = {k: v for k, v in base_env.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))}
            with tempfile.TemporaryDirectory() as cache:
                for start in ("cold", "warm"):
                    out = subprocess.run([*command, "--compile-cache", cache], capture_output=True, text=True, check=True, env=env)
                    line = json.loads(out.stdout.strip().splitlines()[-1])
                    print(json.dumps({"start": start, **line}), flush=True)


if __name__ == "__main__":
    main()
