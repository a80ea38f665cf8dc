"""How the objective's penalty weights trade programming time against precision.

Usage: python benchmarks/policy_weights.py [--pairs 0.5:2.0,0.3:1.2,0.2:0.8] [--iterations 300] [--devices 200000]

For each (error_weight, miss_weight) pair: trains a policy on the default device (uniform
targets, seed 0, cost-model defaults) and programs N targets uniform over [g_min, g_max] and over
[g_min, 10 µS] with write-verify and the policy (the same key), printing RMS error, fraction
within the tolerance, SET pulses, RESETs, verify reads and time per device. The default weights
of `PolicyTraining` are the pair that lands at better error than write-verify with the least time.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from pcmmeta.device import BUILTIN_DEVICES
from pcmmeta.programming import PolicyTraining, ProgrammingCost, counts_time, learned_program, train_policy, write_verify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="0.5:2.0,0.3:1.2,0.2:0.8")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--devices", type=int, default=200_000)
    args = parser.parse_args()
    device, cost = BUILTIN_DEVICES["nandakumar2018"], ProgrammingCost()
    for pair in args.pairs.split(","):
        ew, mw = (float(v) for v in pair.split(":"))
        policy, history = train_policy(jax.random.key(0), device, cost=cost, settings=PolicyTraining(iterations=args.iterations, error_weight=ew, miss_weight=mw))
        print(f"\nerror_weight {ew}, miss_weight {mw}: objective over the last 20 iterations {np.mean(history[-20:]):.3f}")
        for hi in (device.g_max, 10.0):
            target = jax.random.uniform(jax.random.key(5), (args.devices,), minval=device.g_min, maxval=hi)
            for name, fn in (("write-verify", lambda k, g: write_verify(k, device, g)), ("learned", lambda k, g: learned_program(k, device, g, policy))):
                r = jax.jit(fn)(jax.random.key(9), target)
                err = np.asarray(r.state.g_prog - target)
                print(
                    f"  targets ≤ {hi:g} µS {name:13s} RMS {np.sqrt(np.mean(err**2)):.3f} within {np.mean(np.abs(err) <= 0.5):.4f} "
                    f"SET {np.asarray(r.set_pulses).mean():.2f} RESET {np.asarray(r.resets).mean():.2f} reads {np.asarray(r.reads).mean():.2f} "
                    f"time {np.asarray(counts_time(cost, r)).mean() * 1e6:.3f} µs"
                )


if __name__ == "__main__":
    main()
