"""Single-shot vs write-verify vs learned programming on the same targets, per device.

Usage: python benchmarks/programming_compare.py [--devices N] [--iterations I] [--plot-dir DIR] [--json]

For each device (the default, `nandakumar2018-simplified`, and one fitted by `fit-device` from
examples/sample-measurements-SIMULATED.csv): trains a policy (evolution strategies, uniform
targets, seed 0; cost model defaults: SET 50 ns, RESET 50 ns, verify read 200 ns), then programs N
targets drawn from two distributions — uniform over [g_min, g_max] (what the issue asks for) and
uniform over [g_min, the top of the mean trajectory] (the targets the device can reach on
average) — with the three methods, the same key for each. Prints, per method: RMS and max error,
fraction within tolerance (± s.e.), pulses mean/p50/p99, verify reads, RESETs, time and energy
per device, simulation devices/s; then learned / write-verify ratios of time and verify reads,
whether the error is equal or better within standard errors, and the time ratio for other verify
read durations (the same counts re-priced; the policy was trained for 200 ns). Also programs at
tolerances 0.3 and 0.8 µS (write-verify and a policy trained for each) for the error-vs-time
figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from pcmmeta.device import BUILTIN_DEVICES, PCMDevice
from pcmmeta.programming import (
    PolicyTraining,
    ProgrammingCost,
    SingleShot,
    WriteVerify,
    counts_time,
    make_method,
    train_policy,
)
from pcmmeta.programming.compare import compare_methods

ROOT = Path(__file__).resolve().parent.parent


def fitted_example_device() -> PCMDevice:
    from pcmmeta.fit import fit_device
    from pcmmeta.measurements import read_measurements

    data = read_measurements([ROOT / "examples" / "sample-measurements-SIMULATED.csv"])
    device = fit_device(data, BUILTIN_DEVICES["nandakumar2018"], n_bootstrap=0, name="fitted-SIMULATED").device
    with tempfile.TemporaryDirectory() as tmp:  # the device as a user would have it: through its file
        from pcmmeta.device import load_device

        device.save(Path(tmp) / "fitted.yaml")
        return load_device(Path(tmp) / "fitted.yaml")


def reach(device: PCMDevice) -> float:
    return float(np.max(np.asarray(device.mean_trajectory())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--tolerance", type=float, default=0.5)
    parser.add_argument("--curve-tolerances", default="0.3,0.8", help="extra tolerances for the error-vs-time curve ('' for none)")
    parser.add_argument("--only", default="", help="comma-separated device names to run (default: all three)")
    parser.add_argument("--plot-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cost = ProgrammingCost()
    devices = [BUILTIN_DEVICES["nandakumar2018"], BUILTIN_DEVICES["nandakumar2018-simplified"], fitted_example_device()]
    if args.only:
        devices = [d for d in devices if d.name in args.only.split(",")]
    curve_tols = [float(t) for t in args.curve_tolerances.split(",") if t.strip()]
    out = []
    for device in devices:
        t0 = time.perf_counter()
        policies = {}
        for tol in [args.tolerance, *curve_tols]:
            policies[tol] = train_policy(jax.random.key(0), device, tol, 100, cost, PolicyTraining(iterations=args.iterations))[0]
        print(f"\n=== {device.name}: policies trained in {time.perf_counter() - t0:.0f} s ({args.iterations} ES iterations each)", flush=True)
        for label, hi in (("uniform [g_min, g_max]", device.g_max), (f"uniform [g_min, mean-trajectory top {reach(device):.2f}]", reach(device))):
            target = jax.random.uniform(jax.random.key(11), (args.devices,), minval=device.g_min, maxval=hi)
            methods = [SingleShot(), WriteVerify(args.tolerance, 100), make_method("learned", args.tolerance, 100, policies[args.tolerance])]
            figures, results = compare_methods(jax.random.key(12), device, target, methods, args.tolerance, cost)
            by = {f.method: f for f in figures}
            wv, ln = by["write-verify"], by["learned"]
            print(f"\n{device.name}, {args.devices:,} targets {label}, tolerance {args.tolerance} µS")
            print(f"{'method':13s} {'RMS µS':>14s} {'max':>6s} {'within %':>14s} {'pulses m/p50/p99':>17s} {'reads':>6s} {'RESETs':>6s} {'time µs':>8s} {'pJ':>7s} {'Mdev/s':>7s}")
            for f in figures:
                print(
                    f"{f.method:13s} {f.rms_error_uS:7.4f}±{f.sem_rms_error_uS:.4f} {f.max_error_uS:6.2f} "
                    f"{100 * f.fraction_within_tolerance:7.2f}±{100 * f.sem_fraction_within_tolerance:.2f} "
                    f"{f.pulses_mean:6.2f}/{f.pulses_p50:3.0f}/{f.pulses_p99:4.0f} {f.verify_reads_mean:6.2f} {f.resets_mean:6.2f} "
                    f"{f.time_us_mean:8.3f} {f.energy_pj_mean:7.1f} {f.devices_per_s / 1e6:7.2f}"
                )
            rms_se = float(np.hypot(wv.sem_rms_error_uS, ln.sem_rms_error_uS))
            frac_se = float(np.hypot(wv.sem_fraction_within_tolerance, ln.sem_fraction_within_tolerance))
            equal_error = (ln.rms_error_uS <= wv.rms_error_uS + rms_se) and (ln.fraction_within_tolerance >= wv.fraction_within_tolerance - frac_se)
            ratio_time, ratio_reads = ln.time_us_mean / wv.time_us_mean, ln.verify_reads_mean / wv.verify_reads_mean
            print(
                f"learned / write-verify: time {ratio_time:.3f}, verify reads {ratio_reads:.3f}, energy {ln.energy_pj_mean / wv.energy_pj_mean:.3f}; "
                f"error equal or better within s.e.: {'yes' if equal_error else 'NO'} "
                f"(ΔRMS {ln.rms_error_uS - wv.rms_error_uS:+.4f} ± {rms_se:.4f} µS, Δwithin {100 * (ln.fraction_within_tolerance - wv.fraction_within_tolerance):+.2f} ± {100 * frac_se:.2f} %)"
            )
            resweep = {}
            for read_ns in (50, 100, 200, 500, 1000):
                c = dataclasses.replace(cost, read_s=read_ns * 1e-9)

                def t_us(r):
                    return float(np.mean(np.asarray(counts_time(c, r)))) * 1e6

                resweep[read_ns] = t_us(results["learned"]) / t_us(results["write-verify"])
            print("time ratio if a verify read took " + ", ".join(f"{k} ns: {v:.3f}" for k, v in resweep.items()))
            curves = {"write-verify": [(wv.time_us_mean, wv.rms_error_uS, args.tolerance)], "learned": [(ln.time_us_mean, ln.rms_error_uS, args.tolerance)]}
            for tol in curve_tols:
                extra, _ = compare_methods(jax.random.key(12), device, target, [WriteVerify(tol, 100), make_method("learned", tol, 100, policies[tol])], tol, cost)
                for f in extra:
                    curves[f.method].append((f.time_us_mean, f.rms_error_uS, tol))
                    print(f"  tolerance {tol}: {f.method:13s} RMS {f.rms_error_uS:.4f} within {100 * f.fraction_within_tolerance:.2f}% reads {f.verify_reads_mean:.2f} time {f.time_us_mean:.3f} µs")
            if args.plot_dir is not None:
                from pcmmeta.plots import plot_programming_comparison

                args.plot_dir.mkdir(parents=True, exist_ok=True)
                name = f"programming-{device.name}-{'full' if hi == device.g_max else 'reach'}.png"
                plot_programming_comparison(figures, results, target, args.plot_dir / name, f"{device.name}: {args.devices:,} targets {label}", curves)
            out.append({"device": device.name, "targets": label, "figures": [dataclasses.asdict(f) for f in figures],
                        "time_ratio": ratio_time, "reads_ratio": ratio_reads, "equal_error": equal_error, "time_ratio_by_read_ns": resweep, "curves": curves})
            sys.stdout.flush()
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
