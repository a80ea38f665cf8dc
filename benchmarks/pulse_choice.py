"""Which pulses to give: per-weight thresholds against a plan, on a trained LIF run, noise-free.

Usage: python benchmarks/pulse_choice.py RUN_DIR [--tasks 200] [--threshold T] [--split validation|test]

Takes the run's meta-trained network as programmed (no programming noise, no drift, no read
noise) and, for held-out sinusoid tasks (the validation split unless `--split test`), gives the output layer one round of pulses whose every
increment is the device model's mean, chosen three ways:
- `threshold`: `blind-pulse`'s rule, each weight alone — G⁺ where ∂L/∂w < −T, G⁻ where > T
  (T: `--threshold`, else the run's `inner.pulse_threshold`, else 0.3);
- `planned`: `planned-pulse`'s greedy plan on the support loss (`inner.planned_pulse.plan_pulses`);
- `planned on the query set`: the same plan made on the query set itself — what no rule that
  sees only the support set can beat by much (an oracle, not a rule).
A device's SET count, which the increment depends on, is taken as the count that reaches its
conductance on the mean trajectory (as offline programming sets it). Prints the held-out query MSE (all time steps) before and after each. The gap between the first
two is what choosing the pulses together buys on features trained for the threshold rule.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pcmmeta.core.crossbar import pair_weights
from pcmmeta.core.inner.planned_pulse import plan_pulses, pulse_sizes
from pcmmeta.core.modes import PCM
from pcmmeta.experiment.train import held_out_tasks, load_run, split_family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--split", choices=("validation", "test"), default="validation",
                        help="held-out split (default validation: what choices are made on; test only for reported figures)")
    args = parser.parse_args()

    exp, state = load_run(args.run_dir)
    net, dev, family = state.network, exp.meta.device, split_family(exp, args.split)
    if net.kind != "lif" or "out" not in net.layers:
        raise SystemExit(f"{args.run_dir}: a LIF run is needed (network.kind: lif), got {net.kind}")
    threshold = args.threshold if args.threshold is not None else getattr(exp.meta.rule, "pulse_threshold", 0.3)
    tasks, _ = held_out_tasks(exp, args.tasks, split=args.split)
    body = {n: pair_weights(net.layers[n], dev, net.scales[n]) for n in net.body}
    g = net.layers["out"]
    w0 = pair_weights(g, dev, net.scales["out"])
    step, _ = pulse_sizes(PCM(), dev, g, dev.pulses_to_reach(g) + 1, net.scales["out"])  # means only: noise-free
    zeros = jnp.zeros_like(w0)

    def loss(w, z, y):
        return jnp.mean((z @ w - y) ** 2)

    def after(choice):
        return w0 + jnp.where(choice > 0, step[0], 0.0) - jnp.where(choice < 0, step[1], 0.0)

    def by_threshold(z, y):
        grad = jax.grad(loss)(w0, z, y)
        return after(jnp.where(grad < -threshold, 1.0, jnp.where(grad > threshold, -1.0, 0.0)))

    def by_plan(z, y):
        grad = jax.grad(loss)(w0, z, y)
        hessian = jax.hessian(loss)(w0, z, y)
        return after(plan_pulses(grad, hessian, step[0], step[1], zeros, zeros, 3 * w0.size))

    @jax.jit
    def one_task(x_s, y_s, x_q, y_q):
        z_s, z_q = net.features(body, family.encode(x_s)), net.features(body, family.encode(x_q))
        return jnp.stack([loss(w0, z_q, y_q), loss(by_threshold(z_s, y_s), z_q, y_q), loss(by_plan(z_s, y_s), z_q, y_q),
                          loss(by_plan(z_q, y_q), z_q, y_q)])

    mse = np.array([one_task(*t) for t in zip(tasks.x_support, tasks.y_support, tasks.x_query, tasks.y_query)])
    mean, sem = mse.mean(0), mse.std(0, ddof=1) / np.sqrt(len(mse))
    print(f"{args.run_dir.name}: {args.tasks} held-out tasks, rule trained with: {exp.meta.rule.name}; mean increments, no noise")
    for name, m, s in zip(("before", f"threshold {threshold:g}", "planned", "planned on the query set"), mean, sem):
        print(f"  {name:<26} {m:.3f} ± {s:.3f}")


if __name__ == "__main__":
    main()
