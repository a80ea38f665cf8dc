"""Where a cold start of meta-training spends its time and memory, stage by stage.

Usage: python benchmarks/cold_start.py [--recipe R] [--meta-batch B] [--xla-defaults]

Runs one fresh process (no compilation cache) that builds the experiment, traces and lowers the
training step, compiles it and runs it once, and prints one JSON line with, after each stage,
its wall time and the process's memory from /proc/self/status: resident (`rss_MB`), of which
anonymous (`anon_MB`: heap, the compiler's and the program's buffers) and file-backed
(`file_MB`: the pages of JAX's and XLA's libraries touched so far), and the peak resident size
(`peak_MB`). It also prints XLA's own split of the step's compilation, read from XLA:CPU's log
(`TF_CPP_VMODULE=cpu_compiler=2`): HLO passes, then kernel emission and LLVM's code generation
(`emit_and_llvm_s`), the second of which `llvm_s` approximates (from the last LLVM verifier line,
after the kernels are emitted, to "Compilation finished"; LLVM work that overlaps the emission is
not in it). The verbose log itself costs a little time in every stage.

Like benchmarks/meta_train_speed.py, the process runs with the XLA flags the `pcmmeta` command
sets for itself (`pcmmeta.runtime.compile_options.PROCESS_XLA_FLAGS`) unless --xla-defaults.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime


def memory() -> dict:
    fields = {"VmRSS": "rss_MB", "RssAnon": "anon_MB", "RssFile": "file_MB", "VmHWM": "peak_MB"}
    out = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in fields:
                out[fields[key]] = int(value.split()[0]) // 1024
    return out


def child(recipe_path: str, meta_batch: int) -> None:
    stages = []
    t0 = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        stages.append({"stage": name, "s": round(now - t0, 2), **memory()})
        t0 = time.perf_counter()

    import jax

    from pcmmeta.experiment.recipe import load_recipe, validate
    from pcmmeta.experiment.train import build_experiment, init_state, make_optimizer, make_train_step

    stage("import")
    recipe = load_recipe(recipe_path)
    recipe["train"]["meta_batch"] = meta_batch
    recipe = validate(recipe, f"{recipe_path} with meta-batch {meta_batch}")
    exp = build_experiment(recipe)
    opt = make_optimizer(exp.train)
    state = init_state(exp, opt)
    stage("build experiment")
    step = make_train_step(exp, opt, meta_batch)
    lowered = step.lower(state, exp.family)
    stage("trace and lower the step")
    compiled = lowered.compile()
    stage("compile the step")
    jax.block_until_ready(compiled(state, exp.family))
    stage("first step")
    print(json.dumps({"stages": stages}))


def _log_time(line: str) -> datetime:
    """The time stamp of a glog line ("I1205 06:14:22.986561 15522 file.cc:12] ...")."""
    return datetime.strptime(line.split()[1], "%H:%M:%S.%f")


def xla_split(log: str, program: str = "jit_step") -> dict:
    """XLA:CPU's timings of one program from its verbose log; {} where the log lacks a line."""
    lines = log.splitlines()
    passes = next((l for l in lines if f"Running HLO passes on [{program}]" in l), "")
    start = next((i for i, l in enumerate(lines) if l.rstrip().endswith(f"Compiling: {program}")), None)
    end = next((i for i in range(start, len(lines)) if "Compilation finished" in lines[i]), None) if start is not None else None
    timer = re.search(r"\((\d+) us\)", passes)  # "time: 736 ms (736053 us)"
    if timer is None or end is None:
        return {}
    split = {"hlo_passes_s": round(int(timer.group(1)) / 1e6, 2),
             "emit_and_llvm_s": round((_log_time(lines[end]) - _log_time(lines[start])).total_seconds(), 2)}
    verifier = [i for i in range(start, end) if "LLVM verifier" in lines[i]]
    if verifier:
        split["llvm_s"] = round((_log_time(lines[end]) - _log_time(lines[verifier[-1]])).total_seconds(), 2)
    return split


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default=os.path.join(os.path.dirname(__file__), "..", "recipes", "sine.yaml"))
    parser.add_argument("--meta-batch", type=int, default=256)
    parser.add_argument("--xla-defaults", action="store_true", help="without the XLA flags the pcmmeta command sets")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.recipe, args.meta_batch)
        return
    from pcmmeta.runtime.compile_options import set_process_flags

    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))}
    if not args.xla_defaults:
        set_process_flags(env)
    env.update({"TF_CPP_MIN_LOG_LEVEL": "0", "TF_CPP_VMODULE": "cpu_compiler=2"})
    command = [sys.executable, __file__, "--recipe", args.recipe, "--meta-batch", str(args.meta_batch), "--child"]
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(out.stderr[-4000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({"meta_batch": args.meta_batch, "xla_flags": env.get("XLA_FLAGS", ""), **result, "xla_step_compile": xla_split(out.stderr)}))


if __name__ == "__main__":
    main()
