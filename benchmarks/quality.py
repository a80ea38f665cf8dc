"""Held-out quality of every mode after the same training recipe (default: the 15-minute sinusoid one).

Usage: python benchmarks/quality.py [--recipe recipes/sine-15min.yaml] [--modes pcm,ideal,quantized,no-adapt]
                                     [--runs-dir runs-quality] [--pulses 1,2] [--iterations N]
       python benchmarks/quality.py --recipe recipes/glyphs-5way-5shot.yaml   # classification
Trains one run per mode (each its own run directory, resumable with `pcmmeta meta-train --resume
--run DIR`), one after the other, and prints per mode one JSON line (wall time, the family's
metrics before adaptation and after each inner step with s.e., baselines), then a summary table
of the primary metric per inner step. `--pulses 1,2` trains every mode once per number of pulse
rounds (`inner.steps`) and prints them side by side.
"""

import argparse
import json
import time
from pathlib import Path

from pcmmeta.experiment.recipe import load_recipe, validate
from pcmmeta.experiment.train import start_run, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default=str(Path(__file__).parent.parent / "recipes" / "sine-15min.yaml"))
    parser.add_argument("--modes", default="pcm,ideal,quantized,no-adapt")
    parser.add_argument("--runs-dir", default="runs-quality")
    parser.add_argument("--pulses", default=None, help="pulse rounds (inner.steps) to train, e.g. 1,2; default: the recipe's")
    parser.add_argument("--iterations", type=int, default=None, help="override train.iterations")
    args = parser.parse_args()
    summary = []
    rounds = [None] if args.pulses is None else [int(p) for p in args.pulses.split(",")]
    for mode, steps in [(m, r) for m in args.modes.split(",") for r in rounds]:
        recipe = load_recipe(args.recipe)
        recipe["mode"] = mode
        recipe["name"] = f"{recipe['name']}-{mode}"
        if steps is not None:
            recipe["inner"]["steps"] = steps
            recipe["name"] += f"-{steps}rounds"
            mode = f"{mode} ×{steps}"
        if args.iterations is not None:
            recipe["train"]["iterations"] = args.iterations
        recipe = validate(recipe, f"{args.recipe} with the flags' overrides")
        run_dir = start_run(recipe, Path(args.runs_dir))
        t0 = time.perf_counter()
        outcome = train(recipe, run_dir)
        ev = outcome.evaluation.to_json()
        wall = round(time.perf_counter() - t0)
        print(json.dumps({"mode": recipe["mode"], "pulse_rounds": recipe["inner"].get("steps"), "run_dir": str(run_dir), "wall_s": wall, "iterations": recipe["train"]["iterations"],
                          "meta_batch": recipe["train"]["meta_batch"], **ev}), flush=True)
        summary.append((mode, wall, ev))
    metric = summary[0][2]["metric"]
    print(f"\n{metric} on {summary[0][2]['n_tasks']} held-out tasks (mean ± s.e.), before adaptation → after each inner step")
    for mode, wall, ev in summary:
        steps = " → ".join(
            f"{m:.4f}" + (f"±{s:.4f}" if s is not None else "") for m, s in zip(ev[f"{metric}_per_step"], ev[f"sem_{metric}_per_step"])
        )
        print(f"{mode:>10} ({wall:5d} s): {steps}")
    baselines = {k: v for k, v in summary[0][2].items() if k in ("mse_zero", "chance", "pixel_nn_accuracy")}
    print("baselines:", json.dumps(baselines))


if __name__ == "__main__":
    main()
