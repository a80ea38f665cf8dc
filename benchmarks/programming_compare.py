"""Single-shot vs write-verify (plain and its two stronger variants) vs learned programming on the
same targets, per device.

Usage: python benchmarks/programming_compare.py [--devices N] [--run RUN] [--only NAMES] [--targets full,reach,run]
       [--curve-tolerances 0.3,0.8] [--plot-dir DIR] [--json]

For each device (the default, `nandakumar2018-simplified`, and one fitted by `fit-device` from
examples/sample-measurements-SIMULATED.csv): trains a policy (`train_policy`: planned on the
device model, calibrated on 200,000 uniform targets to write-verify's precision, seed 0; cost
model defaults: SET 50 ns, RESET 50 ns, verify read 200 ns), then programs N targets drawn from
each distribution — uniform over [g_min, g_max] (a stress test: partly above what a SET reaches), uniform over [g_min,
the top of the mean trajectory] (the targets the device can reach on average), and, with --run
on the run's device (added to the three when it is another), the conductances of that trained
run (drawn with replacement) — with the
three methods, the same key for each. On the run's targets a second learned row uses a policy
calibrated on those targets (`learn-programming --targets RUN`). Prints, per method: RMS and max
error, fraction within tolerance (± s.e.), pulses mean/p50/p99, verify reads, RESETs, time (and
its split into SET pulses, RESETs and reads) and energy per device, simulation devices/s; then
the variants' and learned / write-verify ratios of time and verify reads, the strongest write-verify
(the fastest variant as precise as plain write-verify) and learned / that ratios, whether the error is equal or better
within standard errors, and the time ratio for other verify-read durations (the same counts
re-priced; the policy was planned for 200 ns). Also programs at the --curve-tolerances (write-
verify and a policy trained for each) for the error-vs-time figure.
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
import jax.numpy as jnp
import numpy as np

from pcmmeta.core.devices import BUILTIN_DEVICES, AbstractPCMDevice
from pcmmeta.core.programming import (
    PolicyTraining,
    ProgrammingCost,
    SingleShot,
    WriteVerify,
    WriteVerifyBurst,
    WriteVerifySetOnFlat,
    counts_time,
    device_fingerprint,
    make_method,
    train_policy,
)
from pcmmeta.core.programming.compare import compare_methods

ROOT = Path(__file__).resolve().parent.parent


def fitted_example_device() -> AbstractPCMDevice:
    from pcmmeta.experiment.fit import fit_device
    from pcmmeta.io.measurements import read_measurements

    data = read_measurements([ROOT / "examples" / "sample-measurements-SIMULATED.csv"])
    device = fit_device(data, BUILTIN_DEVICES["nandakumar2018"], n_bootstrap=0, name="fitted-SIMULATED").device
    with tempfile.TemporaryDirectory() as tmp:  # the device as a user would have it: through its file
        from pcmmeta.io.device_file import load_device, save_device

        save_device(device, Path(tmp) / "fitted.yaml")
        return load_device(Path(tmp) / "fitted.yaml")


def reach(device: AbstractPCMDevice) -> float:
    return float(np.max(np.asarray(device.mean_trajectory())))


def run_targets(run: Path):
    """A trained run's device and conductances (every layer), as deploy programs them."""
    from pcmmeta.experiment.train import load_run

    exp, state = load_run(run)
    return exp.meta.device, jnp.concatenate([state.network.layers[n].ravel() for n in state.network.layer_names])


def print_figures(figures, cost: ProgrammingCost) -> None:
    print(f"{'method':15s} {'RMS µS':>14s} {'max':>6s} {'within %':>14s} {'pulses m/p50/p99':>17s} {'reads':>6s} {'RESETs':>6s} {'time µs':>8s} {'= SET + RESET + read':>22s} {'pJ':>7s} {'Mdev/s':>7s}")
    for f in figures:
        split = (f.set_pulses_mean * cost.set_s * 1e6, (f.resets_mean + 1) * cost.reset_s * 1e6, f.verify_reads_mean * cost.read_s * 1e6)
        print(
            f"{f.method:15s} {f.rms_error_uS:7.4f}±{f.sem_rms_error_uS:.4f} {f.max_error_uS:6.2f} "
            f"{100 * f.fraction_within_tolerance:7.2f}±{100 * f.sem_fraction_within_tolerance:.2f} "
            f"{f.pulses_mean:6.2f}/{f.pulses_p50:3.0f}/{f.pulses_p99:4.0f} {f.verify_reads_mean:6.2f} {f.resets_mean:6.3f} "
            f"{f.time_us_mean:8.3f} {split[0]:6.3f} + {split[1]:5.3f} + {split[2]:5.3f} {f.energy_pj_mean:7.1f} {f.devices_per_s / 1e6:7.2f}"
        )


def versus(wv, ln) -> dict:
    """A method / a write-verify: time and read ratios, and whether the error is equal or better."""
    rms_se = float(np.hypot(wv.sem_rms_error_uS, ln.sem_rms_error_uS))
    frac_se = float(np.hypot(wv.sem_fraction_within_tolerance, ln.sem_fraction_within_tolerance))
    equal = (ln.rms_error_uS <= wv.rms_error_uS + rms_se) and (ln.fraction_within_tolerance >= wv.fraction_within_tolerance - frac_se)
    row = {"time_ratio": ln.time_us_mean / wv.time_us_mean, "reads_ratio": ln.verify_reads_mean / wv.verify_reads_mean, "equal_error": equal}
    print(
        f"{ln.method} / {wv.method}: time {row['time_ratio']:.3f}, verify reads {row['reads_ratio']:.3f}, energy {ln.energy_pj_mean / wv.energy_pj_mean:.3f}; "
        f"error equal or better within s.e.: {'yes' if equal else 'NO'} "
        f"(ΔRMS {ln.rms_error_uS - wv.rms_error_uS:+.4f} ± {rms_se:.4f} µS, Δwithin {100 * (ln.fraction_within_tolerance - wv.fraction_within_tolerance):+.2f} ± {100 * frac_se:.2f} %)"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=PolicyTraining().iterations, help="calibration steps per policy")
    parser.add_argument("--tolerance", type=float, default=0.5)
    parser.add_argument("--curve-tolerances", default="0.3,0.8", help="extra tolerances for the error-vs-time curve ('' for none)")
    parser.add_argument("--only", default="", help="comma-separated device names to run (default: all three, and --run's device)")
    parser.add_argument("--run", type=Path, default=None, help="a trained run: its conductances are a third target distribution (on its device)")
    parser.add_argument("--targets", default="full,reach,run", help="target distributions to program: full, reach, run (with --run)")
    parser.add_argument("--plot-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cost = ProgrammingCost()
    settings = PolicyTraining(iterations=args.iterations)
    devices = [BUILTIN_DEVICES["nandakumar2018"], BUILTIN_DEVICES["nandakumar2018-simplified"], fitted_example_device()]
    chosen = args.targets.split(",")
    unknown = [t for t in chosen if t not in ("full", "reach", "run")] + (["run (needs --run)"] if "run" in chosen and args.run is None and args.targets != "full,reach,run" else [])
    if unknown:
        print(f"programming_compare.py: --targets: unknown or unavailable: {', '.join(unknown)} (known: full, reach, run)", file=sys.stderr)
        sys.exit(2)
    run_device, pool = run_targets(args.run) if args.run is not None else (None, None)
    if run_device is not None and all(device_fingerprint(d) != device_fingerprint(run_device) for d in devices):
        devices.append(run_device)  # a run on another device (joshi2020, a fitted one): its own rows
    if args.only:
        devices = [d for d in devices if d.name in args.only.split(",")]
    curve_tols = [float(t) for t in args.curve_tolerances.split(",") if t.strip()]
    out = []
    for device in devices:
        t0 = time.perf_counter()
        policies = {tol: train_policy(jax.random.key(0), device, tol, 100, cost, settings)[0] for tol in [args.tolerance, *curve_tols]}
        print(f"\n=== {device.name}: {len(policies)} policies trained in {time.perf_counter() - t0:.0f} s ({args.iterations} calibration steps each)", flush=True)
        distributions = [
            ("full", "uniform [g_min, g_max]", jax.random.uniform(jax.random.key(11), (args.devices,), minval=device.g_min, maxval=device.g_max)),
            ("reach", f"uniform [g_min, mean-trajectory top {reach(device):.2f}]", jax.random.uniform(jax.random.key(11), (args.devices,), minval=device.g_min, maxval=reach(device))),
        ]
        run_policy = None
        if "run" in chosen and pool is not None and device_fingerprint(run_device) == device_fingerprint(device):
            distributions.append(("run", f"the conductances of {args.run.name} ({pool.size:,})", jax.random.choice(jax.random.key(11), pool, (args.devices,))))
            t0 = time.perf_counter()
            run_policy = train_policy(jax.random.key(0), device, args.tolerance, 100, cost, settings, pool=pool)[0]
            print(f"policy calibrated on the run's conductances in {time.perf_counter() - t0:.0f} s", flush=True)
        distributions = [d for d in distributions if d[0] in chosen]
        for short, label, target in distributions:
            methods = [
                SingleShot(), WriteVerify(args.tolerance, 100), WriteVerifySetOnFlat(args.tolerance, 100), WriteVerifyBurst(args.tolerance, 100),
                make_method("learned", args.tolerance, 100, policies[args.tolerance]),
            ]
            figures, results = compare_methods(jax.random.key(12), device, target, methods, args.tolerance, cost)
            if short == "run":
                extra, extra_results = compare_methods(jax.random.key(12), device, target, [make_method("learned", args.tolerance, 100, run_policy)], args.tolerance, cost)
                figures.append(dataclasses.replace(extra[0], method="learned (run)"))
                results["learned (run)"] = extra_results["learned"]
            by = {f.method: f for f in figures}
            wv = by["write-verify"]
            print(f"\n{device.name}, {args.devices:,} targets {label}, tolerance {args.tolerance} µS")
            print_figures(figures, cost)
            ratios = {f.method: versus(wv, f) for f in figures if f.method.startswith("learned") or f.method.startswith("write-verify-")}
            # the strongest baseline: the fastest write-verify variant as precise as plain write-verify
            precise = [by[m] for m in ("write-verify", "write-verify-set-on-flat", "write-verify-burst") if m == "write-verify" or ratios[m]["equal_error"]]
            best = min(precise, key=lambda f: f.time_us_mean)
            print(f"strongest write-verify as precise as plain write-verify: {best.method}")
            for f in figures:
                if f.method.startswith("learned") and best.method != "write-verify":
                    ratios[f"{f.method} vs {best.method}"] = versus(best, f)
            resweep = {}
            for read_ns in (50, 100, 200, 500, 1000):
                c = dataclasses.replace(cost, read_s=read_ns * 1e-9)

                def t_us(r, c=c):
                    return float(np.mean(np.asarray(counts_time(c, r)))) * 1e6

                resweep[read_ns] = t_us(results["learned"]) / t_us(results["write-verify"])
            print("time ratio if a verify read took " + ", ".join(f"{k} ns: {v:.3f}" for k, v in resweep.items()) + " (counts of the 200-ns plan re-priced)")
            ln = by["learned"]
            curves = {"write-verify": [(wv.time_us_mean, wv.rms_error_uS, args.tolerance)], "learned": [(ln.time_us_mean, ln.rms_error_uS, args.tolerance)]}
            for tol in curve_tols if short == "full" else []:
                extra, _ = compare_methods(jax.random.key(12), device, target, [WriteVerify(tol, 100), make_method("learned", tol, 100, policies[tol])], tol, cost)
                for f in extra:
                    curves[f.method].append((f.time_us_mean, f.rms_error_uS, tol))
                    print(f"  tolerance {tol}: {f.method:13s} RMS {f.rms_error_uS:.4f} within {100 * f.fraction_within_tolerance:.2f}% reads {f.verify_reads_mean:.2f} time {f.time_us_mean:.3f} µs")
            if args.plot_dir is not None:
                from pcmmeta.io.plots import plot_programming_comparison

                args.plot_dir.mkdir(parents=True, exist_ok=True)
                plot_programming_comparison(figures, results, target, args.plot_dir / f"programming-{device.name}-{short}.png", f"{device.name}: {args.devices:,} targets {label}", curves)
            out.append({"device": device.name, "targets": label, "figures": [dataclasses.asdict(f) for f in figures], "ratios": ratios,
                        "time_ratio_by_read_ns": resweep, "curves": curves})
            sys.stdout.flush()
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
