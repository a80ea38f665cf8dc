"""Wall time of `fit-device` on a large measurement file, as a user runs it.

Usage: python benchmarks/fit_speed.py [ROWS] [--protocol repeated|ragged] [--bootstrap N] [--keep FILE]
Simulates about ROWS reads (default 1,000,000) of the built-in device with the library's
`simulate_measurements`, writes them as a CSV, then times reading the CSV and fitting with
the default 20 bootstrap resamples (the CLI's path: `read_measurements` then `fit_device`).
Target: 1 M rows in under 60 s on 2 CPU cores (pin with `taskset -c 0,1`).

Measured (2-core shared CPU, load average 1.6, 2026-11-25): repeated protocol 1,000,038 rows:
total 28.0 s wall (read 2.8 s, estimate incl. compilation 15.3 s, 0.48 s per replica), 43 s CPU;
ragged protocol 1,005,350 rows: 41.5 s wall (0.92 s per replica), 67 s CPU. The fit before the
estimator was compiled once for all replicas took 186 s. Under heavier load (others' jobs, load average 5–9) the same run took
60–120 s wall.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from pcmmeta.core.devices import BUILTIN_DEVICES
from pcmmeta.experiment.fit import fit_device
from pcmmeta.io.measurements import read_measurements, simulate_measurements, write_measurements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--protocol", choices=("repeated", "ragged"), default="repeated")
    parser.add_argument("--bootstrap", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="write the CSV here (reused if it exists)")
    args = parser.parse_args()
    device = BUILTIN_DEVICES["nandakumar2018"]
    probe = simulate_measurements(device, jax.random.key(0), 100, protocol=args.protocol)
    n_devices = max(2, round(args.rows / (probe.g_uS.size / 100)))
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "measurements.csv"
        if not path.exists():
            data = simulate_measurements(device, jax.random.key(0), n_devices, protocol=args.protocol)
            write_measurements(data, path)
        start, cpu_start = time.perf_counter(), time.process_time()
        data = read_measurements([path])
        read_s = time.perf_counter() - start
        stamps = []
        result = fit_device(data, device, n_bootstrap=args.bootstrap, progress=lambda done, total: stamps.append(time.perf_counter()))
        total_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    estimate_s = stamps[0] - start - read_s
    per_replica = (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1)
    print(
        f"{data.g_uS.size:,} rows ({len(data.device_names):,} devices, {args.protocol} protocol), "
        f"{args.bootstrap} bootstrap resamples: read {read_s:.1f} s, estimate (incl. compilation) {estimate_s:.1f} s, "
        f"{per_replica:.2f} s per replica, total {total_s:.1f} s wall, {cpu_s:.1f} s CPU "
        f"({jax.default_backend()}, {os.cpu_count()} cores visible, load average {os.getloadavg()[0]:.1f})"
    )
    fitted = {k: round(getattr(result.device, k), 4) for k, s in result.constrained.items() if s == "fitted"}
    print("fitted:", fitted)
    assert all(np.isfinite(list(fitted.values())))


if __name__ == "__main__":
    main()
