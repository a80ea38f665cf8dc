"""Held-out query MSE of every mode after the same training recipe (default: the 15-minute one).

Usage: python benchmarks/quality.py [--recipe recipes/sine-15min.yaml] [--modes pcm,ideal,quantized,no-adapt]
                                     [--runs-dir runs-quality]
Trains one run per mode (each its own run directory, resumable with `pcmmeta meta-train --resume
--run DIR`), then prints wall time, MSE before/after the inner update over all time steps and at
the last step, and the zero predictor, one JSON line per mode.
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
    for mode in args.modes.split(","):
        recipe = load_recipe(args.recipe)
        recipe["mode"] = mode
        recipe["name"] = f"{recipe['name']}-{mode}"
        run_dir = start_run(recipe, Path(args.runs_dir))
        t0 = time.perf_counter()
        outcome = train(recipe, run_dir)
        ev = outcome.evaluation.to_json()
        print(json.dumps({"mode": mode, "run_dir": str(run_dir), "wall_s": round(time.perf_counter() - t0),
                          "iterations": recipe["train"]["iterations"], "meta_batch": recipe["train"]["meta_batch"], **ev}), flush=True)


if __name__ == "__main__":
    main()
