"""How the price of precision trades programming time against precision (the learned policy's frontier).

Usage: python benchmarks/programming_price.py [--prices 0.6,1,1.6,2.4,4,8] [--devices 200000]
       [--device nandakumar2018] [--run RUN] [--error-share 0.25]

For each price (µs of programming time that one device outside tolerance is worth; the squared
error, in tolerances², costs `--error-share` of it) plans the policy on the device model
(`plan_policy`, default grid) and programs N targets — uniform over [g_min, g_max], or a
trained run's conductances with --run — with it and with write-verify (the same key). Prints
the time and verify-read ratios, RMS error and fraction within tolerance of each, and where the
frontier crosses write-verify's precision: the price `train_policy` calibrates to.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from pcmmeta.core.devices import BUILTIN_DEVICES
from pcmmeta.core.programming import (
    ProgrammingCost,
    counts_time,
    learned_program,
    make_grid,
    plan_policy,
    transition_kernels,
    write_verify,
)
from pcmmeta.experiment.learn_programming import trained_conductances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prices", default="0.6,1,1.6,2.4,4,8")
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--device", default="nandakumar2018")
    parser.add_argument("--tolerance", type=float, default=0.5)
    parser.add_argument("--error-share", type=float, default=0.25, help="weight of the squared error (tolerances²) relative to a miss")
    parser.add_argument("--run", type=Path, default=None, help="a trained run: program its conductances instead of uniform targets")
    args = parser.parse_args()
    device, cost, tol = BUILTIN_DEVICES[args.device], ProgrammingCost(), args.tolerance
    if args.run:

        from pcmmeta.experiment.train import load_run

        exp, state = load_run(args.run)
        device = exp.meta.device
        target = jax.random.choice(jax.random.key(11), trained_conductances(state.network), (args.devices,))
    else:
        target = jax.random.uniform(jax.random.key(11), (args.devices,), minval=device.g_min, maxval=device.g_max)
    key = jax.random.key(12)

    def figures(r):
        err = np.asarray(r.state.g_prog - target)
        return float(np.mean(np.asarray(counts_time(cost, r)))) * 1e6, float(np.mean(r.reads)), float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err) <= tol))

    wv = figures(jax.jit(lambda k, g: write_verify(k, device, g, tol))(key, target))
    print(f"{device.name}, {args.devices:,} targets, tolerance {tol} µS; write-verify: time {wv[0]:.3f} µs, reads {wv[1]:.2f}, RMS {wv[2]:.4f} µS, within {100 * wv[3]:.2f}%")
    grid = make_grid(device)
    kernels = transition_kernels(device, grid)
    run = jax.jit(lambda k, g, p: learned_program(k, device, g, p))
    value = None
    print(f"{'price µs':>9s} {'time ratio':>10s} {'reads ratio':>11s} {'RMS µS':>7s} {'within %':>8s}  as precise as write-verify")
    for price in (float(p) for p in args.prices.split(",")):
        t0 = time.perf_counter()
        plan = plan_policy(device, grid, kernels, tol, cost, price, args.error_share, value=value)
        value = plan.value
        ln = figures(run(key, target, plan.policy))
        ok = ln[2] <= wv[2] and ln[3] >= wv[3]
        print(f"{price:9.2f} {ln[0] / wv[0]:10.3f} {ln[1] / wv[1]:11.3f} {ln[2]:7.4f} {100 * ln[3]:8.2f}  {'yes' if ok else 'no'}  ({plan.sweeps} sweeps, {time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
