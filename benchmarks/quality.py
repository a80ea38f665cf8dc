"""Held-out quality of every mode after the same training recipe (default: the 15-minute sinusoid one).

Usage: python benchmarks/quality.py [--recipe recipes/sine-15min.yaml] [--modes pcm,ideal,quantized,no-adapt]
                                     [--runs-dir runs-quality]
       python benchmarks/quality.py --recipe recipes/glyphs-5way-5shot.yaml   # classification
Trains one run per mode (each its own run directory, resumable with `pcmmeta meta-train --resume
--run DIR`), one after the other, and prints per mode one JSON line (wall time, the family's
metrics before adaptation and after each inner step with s.e., baselines), then a summary table
of the primary metric per inner step.
"""

import argparse
import json
import time
from pathlib import Path

from pcmmeta.recipe import load_recipe
from pcmmeta.train import start_run, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default=str(Path(__file__).parent.parent / "recipes" / "sine-15min.yaml"))
    parser.add_argument("--modes", default="pcm,ideal,quantized,no-adapt")
    parser.add_argument("--runs-dir", default="runs-quality")
    args = parser.parse_args()
    summary = []
    for mode in args.modes.split(","):
        recipe = load_recipe(args.recipe)
        recipe["mode"] = mode
        recipe["name"] = f"{recipe['name']}-{mode}"
        run_dir = start_run(recipe, Path(args.runs_dir))
        t0 = time.perf_counter()
        outcome = train(recipe, run_dir)
        ev = outcome.evaluation.to_json()
        wall = round(time.perf_counter() - t0)
        print(json.dumps({"mode": mode, "run_dir": str(run_dir), "wall_s": wall, "iterations": recipe["train"]["iterations"],
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
