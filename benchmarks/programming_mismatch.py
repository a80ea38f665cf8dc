"""The learned programming policy when its device model is wrong.

Usage: python benchmarks/programming_mismatch.py [--devices 200000] [--measured 500] [--batch 50000] [--json]

The policy is planned on a device model, but it programs the devices that exist. Here the true
device is `nandakumar2018`; the policy is planned on
- the true device (the best case);
- a device fitted by `fit-device` to `simulate-measurements` output of the true device
  (`--measured` devices, 20 pulses each, the repeated protocol: what a lab would do);
- the true device with every SET-law parameter in µS (mean and spread: slope, intercept,
  history) and the read noise scaled by 0.8 and by 1.2 (±20 %),
each calibrated on its own model (`train_policy`, `--batch` targets, seed 0), then every policy
programs the same `--devices` targets, uniform over the true device's reachable range [g_min, top
of its mean trajectory], on the true device, with the same key; plain write-verify and the
strongest write-verify variant run on the true device too. Prints per row: time ratio against
plain write-verify, verify-read ratio, RMS error and fraction within tolerance (± s.e. over
devices), and the fraction of devices that ended at the pulse budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import jax
import numpy as np

from pcmmeta.core.devices import BUILTIN_DEVICES, AbstractPCMDevice
from pcmmeta.core.programming import (
    PolicyTraining,
    ProgrammingCost,
    WriteVerify,
    WriteVerifyBurst,
    WriteVerifySetOnFlat,
    make_method,
    train_policy,
)
from pcmmeta.core.programming.compare import compare_methods
from pcmmeta.experiment.fit import fit_device
from pcmmeta.io.measurements import simulate_measurements

#: µS parameters of the SET law and the read noise (`nandakumar2018`), scaled together.
SCALED = ("set_mean_intercept", "set_mean_history", "set_std_intercept", "set_std_history", "read_std_intercept")
SLOPES = ("set_std_slope", "read_std_slope")


def scaled(device: AbstractPCMDevice, factor: float) -> AbstractPCMDevice:
    """The device with its SET spread, mean increment and read noise scaled by `factor`."""
    changes = {k: getattr(device, k) * factor for k in SCALED + SLOPES}
    return dataclasses.replace(device, name=f"{device.name}×{factor:g}", **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--measured", type=int, default=500, help="devices in the simulated measurement the fit sees")
    parser.add_argument("--batch", type=int, default=50_000, help="calibration targets per policy")
    parser.add_argument("--tolerance", type=float, default=0.5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    true = BUILTIN_DEVICES["nandakumar2018"]
    data = simulate_measurements(true, jax.random.key(7), args.measured)
    fitted = fit_device(data, true, n_bootstrap=0, name="fitted").device
    models = {"true device": true, f"fitted to {args.measured} simulated devices": fitted, "SET law and read noise ×0.8": scaled(true, 0.8), "SET law and read noise ×1.2": scaled(true, 1.2)}
    cost = ProgrammingCost()
    settings = PolicyTraining(batch=args.batch)
    top = float(np.max(np.asarray(true.mean_trajectory())))
    target = jax.random.uniform(jax.random.key(11), (args.devices,), minval=true.g_min, maxval=top)
    methods = [WriteVerify(args.tolerance, 100), WriteVerifySetOnFlat(args.tolerance, 100), WriteVerifyBurst(args.tolerance, 100)]
    figures, _ = compare_methods(jax.random.key(12), true, target, methods, args.tolerance, cost)
    rows = {f.method: f for f in figures}
    for label, model in models.items():
        policy = train_policy(jax.random.key(0), model, args.tolerance, 100, cost, settings)[0]
        f, _ = compare_methods(jax.random.key(12), true, target, [make_method("learned", args.tolerance, 100, policy)], args.tolerance, cost)
        rows[f"learned, planned on {label}"] = f[0]
        print(f"planned on {label}: done", flush=True)
    wv = rows["write-verify"]
    out = []
    print(f"\n{args.devices:,} targets uniform over [{true.g_min}, {top:.2f}] µS on nandakumar2018, tolerance {args.tolerance} µS")
    print(f"{'method':<56} {'time ratio':>10} {'reads ratio':>11} {'RMS µS':>14} {'within %':>14} {'at budget %':>11}")
    for name, f in rows.items():
        row = {
            "method": name, "time_ratio": f.time_us_mean / wv.time_us_mean, "reads_ratio": f.verify_reads_mean / wv.verify_reads_mean,
            "rms_error_uS": f.rms_error_uS, "sem_rms_error_uS": f.sem_rms_error_uS, "within": f.fraction_within_tolerance,
            "sem_within": f.sem_fraction_within_tolerance, "at_budget": f.devices_at_budget / args.devices,
        }
        out.append(row)
        print(f"{name:<56} {row['time_ratio']:10.3f} {row['reads_ratio']:11.3f} {f.rms_error_uS:7.4f}±{f.sem_rms_error_uS:.4f} "
              f"{100 * f.fraction_within_tolerance:7.2f}±{100 * f.sem_fraction_within_tolerance:.2f} {100 * row['at_budget']:11.3f}")
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
