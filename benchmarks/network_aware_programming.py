"""Network-aware programming against write-verify on trained runs: total device time, chip time
(row-parallel) and the held-out test metric at 1 h and 720 h, deployed and adapted, over 3
programming seeds (`deploy --compare`'s service), and where the network-aware method's time goes.

Usage: python benchmarks/network_aware_programming.py RUN [RUN …] [--budget 0.1] [--tasks 200]
       [--seeds 3] [--all-methods] [--one-tier]
Each RUN is a trained run directory (it is not modified: nothing is deployed into it). Without
--all-methods the comparison is write-verify, write-verify-burst, single-shot and network-aware
(the learned policy needs a policy trained for the run's device; `deploy --compare` runs it).
--one-tier adds the network-aware method with one verification tolerance (the loose tier equal
to the tight one) beside the default two tiers.
The aim (docs/programming.md): ≤ 0.1× write-verify's total device time with the adapted metric
at 1 h and at 720 h within the s.e. of write-verify's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pcmmeta.core.programming import ProgrammingCost, SingleShot, WriteVerify, WriteVerifyBurst, counts_time
from pcmmeta.experiment.programming_comparison import compare_programming, plan_network_aware_for
from pcmmeta.experiment.train import load_run


def where_time_goes(exp, network, method, cost: ProgrammingCost) -> list[str]:
    """Per layer: devices, verified devices and share of the network-aware method's total time."""
    names = network.layer_names
    chosen = method.conductances({n: network.layers[n] for n in names}, exp.meta.device)
    flat = jnp.concatenate([chosen[n].ravel() for n in names])
    result = jax.jit(lambda k: method.program(k, exp.meta.device, flat))(jax.random.key(0))
    per_device = np.asarray(counts_time(cost, result), np.float64)
    checked = np.asarray(result.reads) > 0
    loose = np.zeros(flat.size, bool)
    loose[np.asarray(method.order)] = np.asarray(method.loose)
    loose &= checked
    total, lines, start = per_device.sum(), [], 0
    for n in names:
        size = int(network.layers[n].size)
        part = slice(start, start + size)
        role = "head" if n in network.head else "body"
        lines.append(
            f"  {n} ({role}): {size:,} devices, {int(checked[part].sum()):,} verified "
            f"({int(loose[part].sum()):,} to the loose tolerance), "
            f"{100 * per_device[part].sum() / total:.1f}% of the time"
        )
        start += size
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--budget", type=float, default=0.1, help="fraction of write-verify's expected total time")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--all-methods", action="store_true")
    parser.add_argument("--one-tier", action="store_true", help="also the network-aware method with one tolerance")
    args = parser.parse_args()
    cost = ProgrammingCost()
    for run in args.runs:
        t0 = time.perf_counter()
        exp, state = load_run(run)
        network = state.network
        method, plan = plan_network_aware_for(exp, network, args.budget, cost=cost)
        methods = [WriteVerify(), WriteVerifyBurst(), SingleShot(), method]
        labels = ["write-verify", "write-verify-burst", "single-shot", "network-aware"]
        if args.one_tier:
            one_tier, _ = plan_network_aware_for(exp, network, args.budget, cost=cost, loose_tolerance=0.5)
            methods.insert(3, one_tier)
            labels.insert(3, "network-aware, one tier")
        if args.all_methods:
            from pcmmeta.core.programming import PROGRAMMING_METHODS, make_method
            from pcmmeta.io.policy_file import obtain_policy

            policy = obtain_policy(exp.meta.device, 0.5, 100, cost, None, False)[0]
            methods = [make_method(name, 0.5, 100, policy) for name in PROGRAMMING_METHODS] + [method]
            labels = [m.name for m in methods]
        comparisons = compare_programming(exp, network, methods, range(args.seeds), (1.0, 720.0), args.tasks)
        metric = exp.family.metric
        wv = comparisons[0]
        print(
            f"\n{run.name} ({network.n_devices():,} devices, {exp.meta.device.name}; held-out {metric}, "
            f"{args.tasks} test tasks, {args.seeds} programming seeds; {time.perf_counter() - t0:.0f} s)"
        )
        print(
            f"  network-aware plan: budget {plan.budget_fraction:g} × write-verify's expected "
            f"{plan.write_verify_expected_s * 1e3:.4g} ms; blind programming {plan.blind_s * 1e3:.4g} ms; "
            f"mean sensitivity per layer {', '.join(f'{n} {v:.3g}' for n, v in plan.sensitivity_per_layer.items())}"
        )
        header = f"  {'method':26s} {'time ×wv':>9s} {'chip ×wv':>9s} {'RMS µS':>7s}"
        for condition in ("deployed", "adapted"):
            for h in ("1", "720"):
                header += f" {condition + ' ' + h + ' h':>18s}"
        print(header)
        for label, c in zip(labels, comparisons):
            line = (
                f"  {label:26s} {c.programming_time_s / wv.programming_time_s:9.3f} "
                f"{c.chip_time_s / wv.chip_time_s:9.3f} {c.figures.rms_error_uS:7.3f}"
            )
            for condition in ("deployed", "adapted"):
                for h in ("1", "720"):
                    point = c.metric[condition][h]
                    line += f" {point['mean']:9.4f} ± {point['sem']:.4f}"
            print(line)
        na = comparisons[-1]
        within = [
            abs(na.metric["adapted"][h]["mean"] - wv.metric["adapted"][h]["mean"]) <= wv.metric["adapted"][h]["sem"]
            for h in ("1", "720")
        ]
        better = [
            (na.metric["adapted"][h]["mean"] - wv.metric["adapted"][h]["mean"]) * (1 if metric == "accuracy" else -1)
            >= 0
            for h in ("1", "720")
        ]
        ratio = na.programming_time_s / wv.programming_time_s
        print(
            f"  aim: time ratio {ratio:.3f} ({'≤' if ratio <= 0.1 else '>'} 0.1); adapted 1 h / 720 h within "
            f"write-verify's s.e. or better: {['yes' if w or b else 'no' for w, b in zip(within, better)]}"
        )
        print("  where the network-aware method's time goes:")
        print("\n".join(where_time_goes(exp, network, method, cost)))


if __name__ == "__main__":
    main()
