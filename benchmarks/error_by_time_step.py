"""Where in time a trained LIF run's held-out query error lies, before and after adaptation.

Usage: python benchmarks/error_by_time_step.py RUN_DIR [--tasks 200] [--split validation|test]

The sinusoid family scores the readout at every one of the network's time steps, and the
readout's traces start at zero, so the first steps cannot match any target: this prints the
mean squared error per time step (the run's validation tasks by default, a chip per task,
the run's mode), averaged over the whole run and over windows of steps, and the share of the
all-step MSE that the first 10 steps carry. One JSON line per stage (before, after each step).
"""

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pcmmeta.core import maml
from pcmmeta.experiment.train import held_out_tasks, load_run, split_family


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--split", choices=("validation", "test"), default="validation",
                        help="held-out split (default validation: what choices are made on; test only for reported figures)")
    args = parser.parse_args()
    exp, state = load_run(Path(args.run_dir))
    if exp.recipe["network"]["kind"] != "lif":
        raise SystemExit(f"{args.run_dir}: needs a LIF run (its readout is scored at every time step)")
    net = state.network
    tasks, key = held_out_tasks(exp, args.tasks, split=args.split)  # the run's own held-out tasks of that split
    chips = maml.program_chips(net, key, args.tasks, exp.meta)
    features, adaptations = maml.adapt_chips(net, chips, tasks, split_family(exp, args.split), exp.meta)
    for step, weights in enumerate(adaptations.weights):
        prediction = jax.vmap(net.head_output)(weights, features)  # tasks × time × points
        per_step = np.asarray(jnp.mean((prediction - tasks.y_query[:, None, :]) ** 2, axis=(0, 2)), np.float64)
        t = len(per_step)
        print(json.dumps({
            "stage": "before adaptation" if step == 0 else f"after step {step}",
            "mse_all_steps": round(float(per_step.mean()), 4),
            "mse_steps_0_9": round(float(per_step[:10].mean()), 4),
            "mse_steps_10_29": round(float(per_step[10:30].mean()), 4),
            f"mse_steps_30_{t - 1}": round(float(per_step[30:].mean()), 4),
            "mse_last_step": round(float(per_step[-1]), 4),
            "share_of_first_10_steps": round(float(per_step[:10].sum() / per_step.sum()), 3),
        }), flush=True)


if __name__ == "__main__":
    main()
