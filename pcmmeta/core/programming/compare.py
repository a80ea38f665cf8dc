"""Program the same targets with several methods and report what each costs and how well it lands."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.programming.base import AbstractProgrammingMethod, ProgramResult
from pcmmeta.core.programming.cost import ProgrammingCost, counts_energy, counts_time
from pcmmeta.runtime.compile_options import device_array_options


@dataclasses.dataclass
class MethodFigures:
    """One method on one set of targets. Errors in µS, time in µs and energy in pJ per device."""

    method: str
    n_devices: int
    tolerance_uS: float
    rms_error_uS: float
    sem_rms_error_uS: float  # delta method on the mean squared error
    max_error_uS: float
    fraction_within_tolerance: float
    sem_fraction_within_tolerance: float
    pulses_mean: float  # SET + RESET after the initial RESET
    pulses_p50: float
    pulses_p99: float
    set_pulses_mean: float
    resets_mean: float
    verify_reads_mean: float
    time_us_mean: float  # per device, with the cost model (initial RESET included)
    sem_time_us: float
    energy_pj_mean: float
    devices_per_s: float  # wall-clock speed of the simulation (compilation excluded)
    devices_at_budget: int


def figures_of(
    method: str,
    result: ProgramResult,
    target: np.ndarray,
    tolerance: float,
    cost: ProgrammingCost,
    seconds: float,
    budget: int | None,
) -> MethodFigures:
    err = np.asarray(result.state.g_prog, np.float64) - np.asarray(target, np.float64)
    n = err.size
    sq = err**2
    rms = float(np.sqrt(sq.mean()))
    within = np.abs(err) <= tolerance
    pulses = np.asarray(result.pulses)
    time_us = np.asarray(counts_time(cost, result), np.float64) * 1e6
    ddof = 1 if n > 1 else 0  # standard errors of a single device are 0, not NaN
    return MethodFigures(
        method=method,
        n_devices=int(n),
        tolerance_uS=float(tolerance),
        rms_error_uS=rms,
        sem_rms_error_uS=float(sq.std(ddof=ddof) / np.sqrt(n) / (2 * rms)) if rms > 0 else 0.0,
        max_error_uS=float(np.abs(err).max()),
        fraction_within_tolerance=float(within.mean()),
        sem_fraction_within_tolerance=float(within.std(ddof=ddof) / np.sqrt(n)),
        pulses_mean=float(pulses.mean()),
        pulses_p50=float(np.percentile(pulses, 50)),
        pulses_p99=float(np.percentile(pulses, 99)),
        set_pulses_mean=float(np.asarray(result.set_pulses).mean()),
        resets_mean=float(np.asarray(result.resets).mean()),
        verify_reads_mean=float(np.asarray(result.reads).mean()),
        time_us_mean=float(time_us.mean()),
        sem_time_us=float(time_us.std(ddof=ddof) / np.sqrt(n)),
        energy_pj_mean=float(np.asarray(counts_energy(cost, result)).mean()),
        devices_per_s=float(n / seconds),
        devices_at_budget=int(np.sum(pulses >= budget)) if budget is not None else 0,
    )


def devices_of(result: ProgramResult, start: int, stop: int) -> ProgramResult:
    """The devices `start:stop` of a flat result (a layer of a deployed network)."""
    pick = lambda a: a[start:stop]  # noqa: E731
    return ProgramResult(
        jax.tree.map(pick, result.state),
        pick(result.set_pulses),
        pick(result.resets),
        pick(result.reads),
        pick(result.converged),
        result.t_end,
    )


def run_method(
    key: PRNGKeyArray, device: AbstractPCMDevice, method: AbstractProgrammingMethod, target: Float[Array, " n"]
) -> tuple[ProgramResult, float]:
    """Program `target` with `method`; the result and the wall-clock seconds (compilation excluded)."""
    compiled = (
        jax.jit(lambda k, g: method.program(k, device, g), compiler_options=device_array_options())
        .lower(key, target)
        .compile()
    )
    t0 = time.perf_counter()
    result = compiled(key, target)
    jax.block_until_ready(result)
    return result, time.perf_counter() - t0


def compare_methods(
    key: PRNGKeyArray,
    device: AbstractPCMDevice,
    target: Float[Array, " n"],
    methods: list[AbstractProgrammingMethod],
    tolerance: float,
    cost: ProgrammingCost = ProgrammingCost(),
) -> tuple[list[MethodFigures], dict[str, ProgramResult]]:
    """Every method on the same targets with the same key (the same RESET states and noise stream)."""
    figures, results = [], {}
    for method in methods:
        result, seconds = run_method(key, device, method, target)
        figures.append(figures_of(method.name, result, np.asarray(target), tolerance, cost, seconds, method.budget))
        results[method.name] = result
    return figures, results
