"""`fit-device` and `simulate-measurements` as services: measurement CSVs in, a device file out,
and the reverse.

- `prior_device`: the device whose values stand for what the data cannot constrain (a named or
  filed device, else the family's built-in one).
- `fit_device_files`: read the CSVs, fit the prior's family (`pcmmeta.experiment.fit`), write
  the device YAML and the figure; returns a `DeviceFit`.
- `simulate_measurement_file`: a device model's synthetic measurements in fit-device's CSV
  format, refused before the work when they would not fit in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from pcmmeta.core.devices import DEFAULT_FAMILY, FAMILIES, FAMILY_DEVICES, AbstractPCMDevice
from pcmmeta.core.seeds import seed_key
from pcmmeta.errors import UserInputError, safe_text
from pcmmeta.experiment.fit import FitResult, fit_device
from pcmmeta.experiment.memory import refuse_if_too_large
from pcmmeta.io.device_file import load_device, save_device
from pcmmeta.io.measurements import (
    Measurements,
    read_measurements,
    simulate_measurements,
    simulation_bytes,
    write_measurements,
)


def prior_device(family: str | None, prior: str | None) -> AbstractPCMDevice:
    """fit-device's prior: `prior` (a built-in name or a device YAML), else the built-in device
    of `family` (default nandakumar2018); a prior of another family than `family` is refused."""
    if family is not None and family not in FAMILIES:
        raise UserInputError(f"--family: one of {', '.join(FAMILIES)}, got {safe_text(family, 80)!r}")
    device = load_device(prior if prior is not None else FAMILY_DEVICES[family or DEFAULT_FAMILY])
    if family is not None and device.family != family:
        raise UserInputError(
            f"--prior {safe_text(prior or '', 80)} is a {device.family} device, not {family}: give a {family} prior or leave --prior out"
        )
    return device


@dataclasses.dataclass
class DeviceFit:
    """A fit and where it went. `measurements`: what was read (for a caller's own figure)."""

    result: FitResult
    device_file: Path
    files: list[Path]
    measurements: Measurements

    def to_json(self) -> dict:
        """fit-device's report: the fit's (`FitResult.to_json`) and the files."""
        report = self.result.to_json()
        report.update(
            device_file=str(self.device_file),
            ignored_columns=self.measurements.ignored_columns,
            files=[str(p) for p in self.files],
        )
        return report


def fit_device_files(
    data: Sequence[Path],
    out: Path,
    prior: AbstractPCMDevice,
    *,
    name: str | None = None,
    bootstrap: int = 20,
    seed: int = 0,
    plot: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    measurements: Measurements | None = None,
) -> DeviceFit:
    """Fit `prior`'s family to the measurement CSVs `data` (`measurements`: their
    `read_measurements`, if read already) (bootstrap over devices for the standard errors),
    write the device YAML `out` (named `name`, default `out`'s stem) and, if given, the figure
    `plot` of data and fitted model. What the reader dropped comes first in the result's
    warnings."""
    if measurements is None:
        measurements = read_measurements(data)
    result = fit_device(
        measurements,
        prior,
        n_bootstrap=bootstrap,
        seed=seed,
        name=name or out.stem,
        progress=progress,
        where=", ".join(str(p) for p in data),
    )
    result.warnings[:0] = measurements.notes
    save_device(result.device, out)
    if plot is not None:
        from pcmmeta.experiment.fit.figure import plot_device_fit  # matplotlib only when a figure is asked for

        plot_device_fit(measurements, result, plot)
    return DeviceFit(result, out, list(data), measurements)


@dataclasses.dataclass
class SimulatedMeasurements:
    """What `simulate_measurement_file` wrote."""

    path: Path
    reads: int
    devices: int
    device_name: str


def simulate_measurement_file(
    out: Path,
    device: AbstractPCMDevice,
    *,
    devices: int = 200,
    pulses: int = 20,
    read_times: Sequence[float] = (2.0, 10.0, 30.0),
    drift_read_times: Sequence[float] = (100.0, 1000.0, 10000.0),
    drift_every: int = 5,
    protocol: str = "repeated",
    retention_fraction: float = 0.25,
    seed: int = 0,
) -> SimulatedMeasurements:
    """Simulate `devices` devices of the model (a RESET, then `pulses` SET pulses, read at
    `read_times` after every event and at `drift_read_times` after some; `protocol` as
    `io.measurements.simulate_measurements`) and write them as fit-device's CSV `out`."""
    n_times = len(read_times) + len(drift_read_times)
    refuse_if_too_large(
        simulation_bytes(devices, pulses, n_times),
        f"--devices {devices}, --pulses {pulses}",
        f"simulating {devices:,} devices × {pulses + 1:,} events × {n_times} read times",
        "reduce --devices or --pulses",
    )
    data = simulate_measurements(
        device,
        seed_key(seed),
        devices,
        pulses,
        list(read_times),
        list(drift_read_times),
        drift_every,
        protocol,
        retention_fraction,
    )
    write_measurements(data, out)
    return SimulatedMeasurements(out, int(data.g_uS.size), devices, device.name)
