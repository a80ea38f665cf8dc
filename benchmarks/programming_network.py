"""Network-level effect of the programming method: one trained run deployed with each method,
then its held-out metric at 1 h after deployment (drift-eval's `deployed` and `adapted`
conditions), the same tasks and read keys for every method.

Usage: python benchmarks/programming_network.py --run runs/<dir> [--tasks 300] [--hours 1]
       [--seeds 0,1,2] [--policy FILE]
Without --policy the learned method uses the cached policy for the run's device (trained and
cached on first use, as `deploy --method learned` does: uniform targets). A second learned row
uses a policy trained on this run's own conductances (`learn-programming --targets RUN`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

from pcmmeta.core.programming import PROGRAMMING_METHODS, PolicyTraining, learn_policy, make_method
from pcmmeta.experiment.chip import CONDITIONS, deploy, drift_table
from pcmmeta.experiment.learn_programming import trained_conductances
from pcmmeta.experiment.train import load_run
from pcmmeta.io.policy_file import obtain_policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--seeds", default="0,1,2", help="programming seeds (one deployment per seed and method)")
    parser.add_argument("--policy", type=Path, default=None)
    args = parser.parse_args()
    exp, state = load_run(args.run)
    network, device = state.network, exp.meta.device

    def train():
        policy, info, _ = learn_policy(jax.random.key(0), device, 0.5, 100, settings=PolicyTraining())
        return policy, info

    policy, _, path, trained = obtain_policy(device, 0.5, 100, path=args.policy, train=train)
    print(f"policy {path} ({'trained now' if trained else 'loaded'})")
    pool = trained_conductances(network)
    run_policy = learn_policy(jax.random.key(0), device, 0.5, 100, settings=PolicyTraining(), pool=pool)[0]
    metric = exp.eval_family.metric
    conditions = [c for c in CONDITIONS if c[0] in ("deployed", "adapted")]
    print(f"{args.run.name}: held-out {metric} at {args.hours:g} h, {args.tasks} tasks, mean over programming seeds {args.seeds}")
    print(f"{'method':13s} {'RMS µS':>7s} {'within':>6s} {'reads':>6s} {'time µs':>8s}  " + "  ".join(f"{c[0]:>18s}" for c in conditions))
    methods = [(name, make_method(name, 0.5, 100, policy)) for name in PROGRAMMING_METHODS]
    methods.append(("learned (run)", make_method("learned", 0.5, 100, run_policy)))
    for name, method in methods:
        per_seed, rms, within, reads, times = {c[0]: [] for c in conditions}, [], [], [], []
        for seed in (int(s) for s in args.seeds.split(",")):
            array, report, _ = deploy(jax.random.key(seed), network, device, method, 0.5)
            for r in drift_table(exp, network, array, [args.hours], args.tasks, exp.meta.rule.steps, 0, conditions):
                per_seed[r["condition"]].append(r[metric])
            rms.append(report.rms_error_uS)
            within.append(report.fraction_within_tolerance)
            reads.append(report.verify_reads_mean)
            times.append(report.time_us_mean)
        cells = []
        for c in conditions:
            v = np.asarray(per_seed[c[0]])
            cells.append(f"{v.mean():9.4f} ± {v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0:.4f}")
        print(f"{name:13s} {np.mean(rms):7.3f} {100 * np.mean(within):5.1f}% {np.mean(reads):6.2f} {np.mean(times):8.3f}  " + "  ".join(f"{c:>18s}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
