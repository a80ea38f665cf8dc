"""Robot arm: held-out quality of one on-chip e-prop update, per mode, on one recipe.

Trains the recipe once per mode (`pcm`, `quantized` with 4-bit pulses, `ideal`, `no-adapt`)
from the same seed, then evaluates on the recipe's held-out trajectories: the loss and the
Cartesian RMS error (link lengths) before and after the update, SET pulses per update and the
share of the head's devices they touch. Also reports a zero-velocity arm (the baseline) and the
wall-clock training time.

    python benchmarks/arm_quality.py --recipe recipes/arm-quick.yaml [--modes pcm,no-adapt] [--iterations N] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from pcmmeta.experiment.recipe import load_recipe
from pcmmeta.experiment.train import build_experiment, held_out_results, train


def evaluate_arm(exp, network, n_tasks: int) -> dict:
    r, tasks = held_out_results(exp, network, n_tasks)
    head_devices = sum(int(network.layers[n].size) for n in network.head)
    sem = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v)))
    loss, rms = r.metrics["loss"], r.metrics["rms_position_links"]
    return {
        "loss_before": float(loss[:, 0].mean()), "loss_after": float(loss[:, -1].mean()),
        "sem_loss_after": sem(loss[:, -1]),
        "rms_links_before": float(rms[:, 0].mean()), "rms_links_after": float(rms[:, -1].mean()),
        "pulses_per_update": float(r.pulses.mean()),
        "devices_touched_fraction": float(r.devices_pulsed.mean() / head_devices),
        "head_devices": head_devices,
        "loss_zero_velocity": exp.eval_family.baselines(tasks)["loss_zero"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/arm-quick.yaml")
    parser.add_argument("--modes", default="pcm,quantized,ideal,no-adapt")
    parser.add_argument("--iterations", type=int, default=None, help="override train.iterations")
    parser.add_argument("--tasks", type=int, default=200, help="held-out trajectories")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for mode in args.modes.split(","):
        recipe = load_recipe(args.recipe)
        recipe["mode"] = mode
        recipe["maml"]["quantized_bits"] = 4  # 1/16-range pulses, as Ortner's 4-bit model
        if args.iterations:
            recipe["train"]["iterations"] = args.iterations
        exp = build_experiment(recipe)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            outcome = train(recipe, Path(tmp), evaluate_at_end=False, experiment=exp)
            seconds = time.perf_counter() - t0
        row = {"mode": mode, "iterations": recipe["train"]["iterations"], "train_s": seconds, **evaluate_arm(exp, outcome.state.network, args.tasks)}
        rows.append(row)
        if not args.json:
            print(
                f"{mode:9s} loss {row['loss_before']:.4f} → {row['loss_after']:.4f} ± {row['sem_loss_after']:.4f}  "
                f"RMS {row['rms_links_before']:.3f} → {row['rms_links_after']:.3f} links  "
                f"pulses {row['pulses_per_update']:.0f} ({100 * row['devices_touched_fraction']:.1f}% of {row['head_devices']} head devices)  "
                f"zero-velocity {row['loss_zero_velocity']:.4f}  train {seconds:.0f} s",
                flush=True,
            )
    if args.json:
        print(json.dumps({"recipe": args.recipe, "tasks": args.tasks, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
