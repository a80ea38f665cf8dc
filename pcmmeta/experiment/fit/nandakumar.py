"""Fit the `nandakumar2018` family to measurement CSVs of any read protocol (see docs/device-model.md, "Fitting").

A (device, pulse) *group* is the reads taken after one programming event. Protocols differ in
how many reads a group has: some read every group at many times, others read each device once
after each pulse and take a retention series only after the last pulse, or only on some devices.
Every read is used; each stage uses the groups that carry its information and says when none do.

Stages, each correcting for the noise of the stage before:
1. per group, weighted Gauss–Newton for the programmed conductance Ĝ_p and the drift exponent
   ν̂ (with their covariance) at a drift onset t0 found by profiling; a group read at fewer than
   4 distinct times keeps ν at the population mean (one read: Ĝ_p is that read, back-drifted);
2. read noise σ(G) = a·G + b (σ ≥ 0 on [0, max G]) by restricted maximum likelihood on the group
   residuals: a read of leverage h carries 1 − h of a degree of freedom (a lone read none);
3. drift-exponent distribution: mean of ν̂, variance = var(ν̂) − mean(se²(ν̂));
4. RESET state: censored (Tobit) likelihood of the back-drifted reads of freshly RESET devices,
   variance minus the read-noise variance;
5. SET increments: one likelihood for all consecutive pulse pairs of a device, with the
   estimation noise of the before/after conductances added to the model variance and the clip at
   g_min / g_max as censoring. Without repeated reads no read-noise estimate exists: the
   increments are fitted with the read noise left in, and their spread is an upper bound.
Groups and pulse pairs come from `grouping`, the refusals and thresholds from `design`, the SET
law from `increments`. Uncertainties: `bootstrap` over devices; its device weights keep every
array's shape, so one compiled estimator (`_estimate`) serves the estimate and every replica,
and a replica starts from the estimate's group fits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr
from jaxtyping import Array, Bool, Float, Int

from pcmmeta.core.devices import AbstractPCMDevice, Nandakumar2018
from pcmmeta.experiment.fit.bootstrap import bootstrap, standard_errors
from pcmmeta.experiment.fit.design import (
    MIN_DRIFT_GROUPS,
    MIN_G_FOR_NOISE_FIT,
    MIN_READ_NOISE_DOF,
    MIN_RESET_READS,
    MIN_TIMES_FOR_FREE_NU,
    NO_REPEATED_READS,
    Design,
    decide,
    numpy_quiet,
    refuse_constant_reads,
)
from pcmmeta.experiment.fit.grouping import Groups, group_reads
from pcmmeta.experiment.fit.increments import (
    INCREMENT_PARAMS,
    SIGMA_FLOOR,
    Effort,
    IncrementData,
    IncrementInputs,
    fit_increments,
    increment_arrays,
    increment_z_scores,
    shrink_to_pulse_population,
)
from pcmmeta.experiment.fit.padding import padded_size
from pcmmeta.experiment.fit.result import FitResult
from pcmmeta.io.measurements import Measurements

READ_PARAMS = ("read_std_slope", "read_std_intercept")
DRIFT_PARAMS = ("drift_t0", "drift_nu_mean", "drift_nu_std")
RESET_PARAMS = ("reset_mean", "reset_std")
FITTED_PARAMS = READ_PARAMS + DRIFT_PARAMS + RESET_PARAMS + INCREMENT_PARAMS


# --------------------------------------------------------------------------- data layout


class FitArrays(eqx.Module):
    """Reads, groups and consecutive pulse pairs as padded arrays (padding has valid = 0).

    The last group slot is never a real group: padded reads point at it.
    """

    read_group: Int[Array, " reads"]
    read_device: Int[Array, " reads"]
    t_s: Float[Array, " reads"]  # s since the group's programming event
    g_uS: Float[Array, " reads"]  # µS
    read_valid: Float[Array, " reads"]
    read_new_time: Float[Array, " reads"]  # 1 on the first read of each distinct (group, t_s)
    group_device: Int[Array, " groups"]
    group_pulse: Int[Array, " groups"]
    group_free_nu: Bool[Array, " groups"]  # read at ≥ MIN_TIMES_FOR_FREE_NU distinct times
    group_valid: Float[Array, " groups"]
    group_last_t: Float[Array, " groups"]  # s: the next pulse follows this read
    pair_before: Int[Array, " pairs"]  # group of pulse k − 1
    pair_after: Int[Array, " pairs"]  # group of pulse k, same device
    pair_valid: Float[Array, " pairs"]
    reset_read: Int[Array, " reset_reads"]  # the reads of pulse-0 groups
    reset_valid: Float[Array, " reset_reads"]
    n_pulse_slots: int = eqx.field(static=True)


def _padded(x, n: int, value, dtype) -> Array:
    return jnp.asarray(np.concatenate([np.asarray(x), np.full(n - len(x), value)]).astype(dtype))


def fit_arrays(groups: Groups) -> FitArrays:
    """The groups as padded arrays; every fit and bootstrap replica reuses them."""
    n_reads, n_groups = groups.g.size, groups.n_groups
    reads, slots = padded_size(n_reads, 4096), padded_size(n_groups + 1, 1024)
    pairs = padded_size(len(groups.pair_before), 1024)
    resets = padded_size(len(groups.reset_reads), 1024)
    return FitArrays(
        read_group=_padded(groups.group, reads, slots - 1, np.int32),
        read_device=_padded(groups.read_device, reads, 0, np.int32),
        t_s=_padded(groups.t, reads, 1.0, np.float32),
        g_uS=_padded(groups.g, reads, 1.0, np.float32),
        read_valid=_padded(np.ones(n_reads), reads, 0.0, np.float32),
        read_new_time=_padded(groups.first_at_time, reads, 0.0, np.float32),
        group_device=_padded(groups.group_device, slots, 0, np.int32),
        group_pulse=_padded(groups.group_pulse, slots, 0, np.int32),
        group_free_nu=_padded(groups.n_times >= MIN_TIMES_FOR_FREE_NU, slots, False, bool),
        group_valid=_padded(np.ones(n_groups), slots, 0.0, np.float32),
        group_last_t=_padded(groups.last_t, slots, 1.0, np.float32),
        pair_before=_padded(groups.pair_before, pairs, slots - 1, np.int32),
        pair_after=_padded(groups.pair_after, pairs, slots - 1, np.int32),
        pair_valid=_padded(np.ones(len(groups.pair_before)), pairs, 0.0, np.float32),
        reset_read=_padded(groups.reset_reads, resets, 0, np.int32),
        reset_valid=_padded(np.ones(len(groups.reset_reads)), resets, 0.0, np.float32),
        n_pulse_slots=padded_size(int(groups.group_pulse.max()) + 1, 64),
    )


# --------------------------------------------------------------------------- stage 1: groups
class GroupFit(eqx.Module):
    g_prog: Float[Array, " groups"]  # Ĝ_p, µS
    nu: Float[Array, " groups"]  # ν̂ (the population value where held)
    c00: Float[Array, " groups"]  # var(Ĝ_p) from read noise, µS²
    c01: Float[Array, " groups"]  # cov(Ĝ_p, ν̂); 0 where ν is held
    c11: Float[Array, " groups"]  # var(ν̂); 0 where ν is held
    mean_log_x: Float[Array, " groups"]  # weighted mean of log(max(t, t0)/t0) of the group's reads
    fitted: Float[Array, " reads"]  # model value at each read, µS
    leverage: Float[Array, " reads"]  # h of each read: E[r²] = σ²(1 − h)


def _read_sigma(a, b, g):
    return jnp.maximum(a * g + b, SIGMA_FLOOR)


def cold_start(d: FitArrays, t0, nu_pop) -> tuple[Float[Array, " groups"], Float[Array, " groups"]]:
    """Starting (Ĝ_p, ν) of every group: the mean of its reads before t0 (else of all), ν = 0."""
    n_groups = d.group_valid.shape[0]
    seg = lambda x: jax.ops.segment_sum(x, d.read_group, num_segments=n_groups)
    pre = d.read_valid * (d.t_s <= t0)
    n_pre, n_all = seg(pre), seg(d.read_valid)
    g = jnp.where(
        n_pre > 0, seg(d.g_uS * pre) / jnp.maximum(n_pre, 1), seg(d.g_uS * d.read_valid) / jnp.maximum(n_all, 1)
    )
    # a strongly typed float32 ν, as the group fit returns it: a weakly typed one would make the
    # estimator's first call compile a program of its own (about 17 s on a 2-core CPU)
    return jnp.maximum(g, 1e-3), jnp.where(d.group_free_nu, 0.0, nu_pop).astype(jnp.float32)


def group_fit(d: FitArrays, t0, read_a, read_b, nu_pop, start: tuple, iterations) -> GroupFit:
    """Weighted Gauss–Newton for (Ĝ_p, ν̂) of every group at once, weights 1/σ_read².

    A group with fewer than `MIN_TIMES_FOR_FREE_NU` distinct read times keeps ν = `nu_pop`
    and fits only Ĝ_p. The rule does not depend on t0, so profiling t0 compares models with
    the same number of parameters. `start`: (Ĝ_p, ν) to start from, `cold_start` or the fit
    at nearby population values (then 3 iterations suffice: bootstrap replicas).
    """
    n_groups = d.group_valid.shape[0]
    seg = lambda x: jax.ops.segment_sum(x, d.read_group, num_segments=n_groups)
    grp, y, valid, free = d.read_group, d.g_uS, d.read_valid, d.group_free_nu
    log_x = jnp.log(jnp.maximum(d.t_s, t0) / t0)
    g, nu = start[0], jnp.where(free, start[1], nu_pop)

    def normal_equations(g, nu):
        decay = jnp.exp(-nu[grp] * log_x)
        f = g[grp] * decay
        w = valid / _read_sigma(read_a, read_b, f) ** 2
        j_g, j_nu, r = decay, -f * log_x, y - f
        a00, a01, a11, b0, b1 = (seg(w * t) for t in (j_g * j_g, j_g * j_nu, j_nu * j_nu, j_g * r, j_nu * r))
        a01, b1 = jnp.where(free, a01, 0.0), jnp.where(free, b1, 0.0)
        # The ridge keeps near-0 µS groups (where ν has no leverage) from a singular system.
        a11 = jnp.where(free, a11 + 1e-9 * a00, 1.0)
        det = a00 * a11 - a01**2
        return decay, f, w, j_g, j_nu, a00, a01, a11, b0, b1, det

    def step(_, carry):
        g, nu = carry
        *_, a00, a01, a11, b0, b1, det = normal_equations(g, nu)
        ok = det > 0
        det = jnp.where(ok, det, 1.0)
        # Bounded steps: groups near 0 µS (reads floored at 0) carry no drift information.
        g = jnp.maximum(g + jnp.where(ok, (a11 * b0 - a01 * b1) / det, 0.0), 1e-3)
        nu = jnp.where(free, jnp.clip(nu + jnp.where(ok, (a00 * b1 - a01 * b0) / det, 0.0), -0.5, 0.5), nu_pop)
        return g, nu

    g, nu = jax.lax.fori_loop(0, iterations, step, (g, nu))
    decay, f, w, j_g, j_nu, a00, a01, a11, _, _, det = normal_equations(g, nu)
    ok = det > 0
    det = jnp.where(ok, det, 1.0)
    c00 = jnp.where(ok, a11 / det, 0.0)
    c01 = jnp.where(ok & free, -a01 / det, 0.0)
    c11 = jnp.where(ok & free, a00 / det, 0.0)
    quad = c00[grp] * j_g**2 + 2 * c01[grp] * j_g * j_nu + c11[grp] * j_nu**2
    leverage = jnp.clip(w * quad, 0.0, 1.0)
    weight_g = seg(w * decay**2)
    mean_log_x = seg(w * decay**2 * log_x) / jnp.where(weight_g > 0, weight_g, 1.0)
    return GroupFit(g, nu, c00, c01, c11, mean_log_x, f, leverage)


def _weighted_ssr(d: FitArrays, w_read, log_t0, read_a, read_b, nu_pop, start, iterations):
    fit = group_fit(d, jnp.exp(log_t0), read_a, read_b, nu_pop, start, iterations)
    return jnp.sum(w_read * ((d.g_uS - fit.fitted) / _read_sigma(read_a, read_b, fit.fitted)) ** 2)


def _parabola_refine(objective, centre, half_width, lo, hi, stages: int = 3, points: int = 3):
    """Minimum of a smooth objective near `centre`: per stage, evaluate `points` equally spaced
    values within ±half_width, take the vertex of the parabola through the best and its two
    neighbours, and shrink the window 4-fold. Near its minimum the weighted residual sum is
    nearly quadratic in log t0, so three stages of three evaluations resolve it well below its
    statistical uncertainty."""
    for _ in range(stages):
        xs = jnp.clip(centre + half_width * jnp.linspace(-1.0, 1.0, points), lo, hi)
        fs = jax.lax.map(objective, xs)
        i = jnp.clip(jnp.argmin(fs), 1, points - 2)
        x0, x1, x2 = xs[i - 1], xs[i], xs[i + 1]
        f0, f1, f2 = fs[i - 1], fs[i], fs[i + 1]
        num = (x1 - x0) ** 2 * (f1 - f2) - (x1 - x2) ** 2 * (f1 - f0)
        den = (x1 - x0) * (f1 - f2) - (x1 - x2) * (f1 - f0)
        vertex = x1 - 0.5 * num / jnp.where(den != 0, den, 1.0)
        convex = (den != 0) & jnp.isfinite(vertex)
        centre = jnp.where(convex, jnp.clip(vertex, x0, x2), xs[jnp.argmin(fs)])
        half_width = half_width / 4
    return centre


def _find_log_t0(d, w_read, read_a, read_b, nu_pop, log_lo, log_hi, around, global_search, start, iterations):
    """Drift onset log t0 minimising the weighted residuals, within the span of read times:
    over a coarse grid of the whole span (`global_search`), else near `around`."""
    objective = lambda v: _weighted_ssr(d, w_read, v, read_a, read_b, nu_pop, start, iterations)

    def coarse_grid():
        grid = jnp.linspace(log_lo, log_hi, 12)
        return grid[jnp.argmin(jax.lax.map(objective, grid))], grid[1] - grid[0]

    centre, half_width = jax.lax.cond(global_search, coarse_grid, lambda: (around, jnp.asarray(0.1, jnp.float32)))
    return _parabola_refine(objective, centre, half_width, log_lo, log_hi)


# --------------------------------------------------------------------------- stage 2: read noise
def _fit_read_noise(fit: GroupFit, d: FitArrays, w_read, a, b, iterations: int):
    """REML read-noise line by Fisher scoring; σ = a·G + b kept ≥ 0 on [0, max fitted G].

    Minimises Σ u·[(1 − h)·log σ² + r²/σ²]: a read of leverage h carries 1 − h of a degree of
    freedom (E[r²] = σ²(1 − h)), so a lone read (h = 1, r = 0) carries none.
    """
    use = w_read * (fit.g_prog[d.read_group] >= MIN_G_FOR_NOISE_FIT)
    f, h, r2 = fit.fitted, fit.leverage, (d.g_uS - fit.fitted) ** 2
    g_hi = jnp.max(jnp.where(use > 0, f, 0.0))

    def step(_, theta):
        a, b = theta
        s = _read_sigma(a, b, f)
        score = use * (2 * (1 - h) / s - 2 * r2 / s**3)
        info = use * 4 * (1 - h) / s**2
        s_a, s_b = jnp.sum(score * f), jnp.sum(score)
        i_aa, i_ab, i_bb = jnp.sum(info * f * f), jnp.sum(info * f), jnp.sum(info)
        det = i_aa * i_bb - i_ab**2
        ok = det > 0
        det = jnp.where(ok, det, 1.0)
        a = a - jnp.where(ok, (i_bb * s_a - i_ab * s_b) / det, 0.0)
        b = jnp.maximum(b - jnp.where(ok, (i_aa * s_b - i_ab * s_a) / det, 0.0), 0.0)
        return jnp.maximum(a, (SIGMA_FLOOR - b) / jnp.maximum(g_hi, 1.0)), b

    return jax.lax.fori_loop(0, iterations, step, (a, b))


# --------------------------------------------------------------------------- stage 3: drift
def _drift_groups(fit: GroupFit, d: FitArrays, t0) -> Bool[Array, " groups"]:
    """Groups whose ν̂ measures drift: own ν, ≥ 2 distinct read times after t0, Ĝ_p ≥ 1 µS."""
    n_after = jax.ops.segment_sum(
        d.read_new_time * d.read_valid * (d.t_s > t0), d.read_group, num_segments=d.group_valid.shape[0]
    )
    return d.group_free_nu & (n_after >= 2) & (fit.g_prog >= MIN_G_FOR_NOISE_FIT) & (d.group_valid > 0)


def _drift_stats(fit: GroupFit, good, w_group):
    """(weighted count, mean ν̂, population std of ν with each ν̂'s estimation noise removed)."""
    w = w_group * good
    n = jnp.sum(w)
    safe_n = jnp.maximum(n, 1e-12)
    mean = jnp.sum(w * fit.nu) / safe_n
    var = jnp.sum(w * (fit.nu - mean) ** 2) / safe_n - jnp.sum(w * fit.c11) / safe_n
    return n, mean, jnp.sqrt(jnp.maximum(var, 0.0))


# --------------------------------------------------------------------------- stage 4: RESET
def _fit_reset(d: FitArrays, w_dev, t0, nu_mean, iterations: int = 30):
    """Mean and total std (µS) of freshly RESET devices from the reads of pulse-0 groups, reads
    floored at 0 censored (Tobit).

    Olsen's parameters (δ = mean/std, γ = 1/std) make the log-likelihood concave: Newton's
    method with step halving converges from the moments.
    """
    g, t = d.g_uS[d.reset_read], d.t_s[d.reset_read]
    rows = w_dev[d.read_device[d.reset_read]] * d.reset_valid
    # Reads before t0 have not drifted; later ones are brought back with the mean ν, which adds
    # the ν spread (≈ log(t/t0)·ν_std relative): used only when too few early reads exist.
    early = rows * (t <= t0)
    rows = jnp.where(jnp.sum(early > 0) >= MIN_RESET_READS, early, rows)
    y = g * (jnp.maximum(t, t0) / t0) ** nu_mean
    censored = g <= 0
    total_w = jnp.maximum(jnp.sum(rows), 1e-12)
    mean = jnp.sum(rows * y) / total_w
    std = jnp.sqrt(jnp.sum(rows * (y - mean) ** 2) / total_w) + 1e-3

    def log_lik(theta):
        delta, gamma = theta[0], jnp.maximum(theta[1], 1e-6)
        per_read = jnp.where(censored, log_ndtr(-delta), jnp.log(gamma) - 0.5 * (gamma * y - delta) ** 2)
        return jnp.sum(rows * per_read) / total_w

    def step(_, theta):
        grad, hess = jax.grad(log_lik)(theta), jax.hessian(log_lik)(theta)
        hess = hess - 1e-9 * jnp.eye(2)
        full = theta - jnp.linalg.solve(hess, grad)
        full = jnp.where(jnp.all(jnp.isfinite(full)), full, theta)
        half = 0.5 * (theta + full)
        return jnp.where(log_lik(full) >= log_lik(theta), full, jnp.where(log_lik(half) >= log_lik(theta), half, theta))

    delta, gamma = jax.lax.fori_loop(0, iterations, step, jnp.stack([mean / std, 1.0 / std]))
    gamma = jnp.maximum(gamma, 1e-6)
    return delta / gamma, 1.0 / gamma


# --------------------------------------------------------------------------- stage 5: SET increments


def _increment_inputs(
    d: FitArrays, fit: GroupFit, w_pair, values: dict, g_min, read_known, reset_known
) -> IncrementInputs:
    """Consecutive (pulse k − 1, pulse k) groups of a device; `values` gives t0 and ν's law.

    A group with its own ν̂ carries the (Ĝ_p, ν̂) covariance; a group whose ν is held at the
    population mean is off by the population's spread: relative error (ν − ν̄)·(log x_last −
    mean log x) at its last read, (ν − ν̄)·mean log x at programming (0 for reads before t0).
    """
    t0, nu_mean, nu_std = values["drift_t0"], values["drift_nu_mean"], values["drift_nu_std"]
    before, after = d.pair_before, d.pair_after
    log_last = jnp.log(jnp.maximum(d.group_last_t[before], t0) / t0)
    decay = jnp.exp(-fit.nu[before] * log_last)
    g_before = fit.g_prog[before] * decay
    held_b, held_a = ~d.group_free_nu[before], ~d.group_free_nu[after]
    j_g, j_nu = decay, -g_before * log_last
    read_part = j_g**2 * fit.c00[before] + 2 * j_g * j_nu * fit.c01[before] + j_nu**2 * fit.c11[before]
    drift_part = jnp.where(held_b, (g_before * (log_last - fit.mean_log_x[before])) ** 2 * nu_std**2, 0.0)
    var_before = read_known * read_part + drift_part
    is_reset = (d.group_pulse[before] == 0) & reset_known
    # After RESET the population estimate beats a group's own: its spread is far below read noise.
    g_before = jnp.where(is_reset, values["reset_mean"] * jnp.exp(-nu_mean * log_last), g_before)
    var_before = jnp.where(is_reset, values["reset_std"] ** 2, var_before)
    # Regression calibration: Ĝ_before carries estimation noise that also enters the increment
    # with the opposite sign, which would tilt the fitted slope. Replace it by its expectation
    # given the population at the same pulse index (shrinkage λ = 1 − noise var / total var).
    # Devices at g_min (a clipped pulse) are a point mass, not part of the Gaussian population
    # the calibration assumes: they keep their own estimate.
    k = d.group_pulse[before]
    cw = w_pair * (g_before > g_min + 3 * jnp.sqrt(var_before)) * ~is_reset
    seg = lambda x: jax.ops.segment_sum(x, k, num_segments=d.n_pulse_slots)
    g_before, var_before = shrink_to_pulse_population(g_before, var_before, cw, k, seg, jnp)
    g_after = fit.g_prog[after]
    var_after = read_known * fit.c00[after] + jnp.where(held_a, (g_after * fit.mean_log_x[after]) ** 2 * nu_std**2, 0.0)
    # Pairs of weight 0 (padding, devices a replica left out) get harmless values: their terms
    # are multiplied by 0, and 0 × NaN in a derivative would still be NaN.
    used = w_pair > 0
    return IncrementInputs(
        jnp.where(used, g_before, 5.0),
        jnp.where(used, g_after, 5.0),
        jnp.where(used, var_before + var_after, 1.0),
        jnp.where(used, d.group_pulse[after].astype(jnp.float32), 1.0),
        w_pair,
    )


# --------------------------------------------------------------------------- the estimator
class Stages(eqx.Module):
    """Which stages the data support (the same for the estimate and every bootstrap replica)."""

    read_noise: Bool[Array, ""]
    drift: Bool[Array, ""]
    reset: Bool[Array, ""]
    increments: Bool[Array, ""]


@eqx.filter_jit
def _estimate(d: FitArrays, w_dev, start: dict, groups: tuple, hessian, stages: Stages, bounds: dict, effort: Effort):
    """Every parameter from one set of device weights (1 each: the data; multinomial counts: a
    bootstrap replica), starting from the population values `start`, the group values
    `groups` (Ĝ_p, ν) and (replicas) the increment likelihood's `hessian` at the estimate.
    Parameters of a stage the data do not support keep `start`'s value.

    Returns the values, the group fit, the increment inputs and the increment Hessian."""
    w_read = w_dev[d.read_device] * d.read_valid
    w_group = w_dev[d.group_device] * d.group_valid
    w_pair = w_dev[d.group_device[d.pair_after]] * d.pair_valid
    a, b = start["read_std_slope"], start["read_std_intercept"]
    log_t0, nu_pop = jnp.log(start["drift_t0"]), start["drift_nu_mean"]
    log_t0 = jax.lax.cond(
        stages.drift,
        lambda: _find_log_t0(
            d,
            w_read,
            a,
            b,
            nu_pop,
            bounds["log_t_lo"],
            bounds["log_t_hi"],
            log_t0,
            effort.global_search,
            groups,
            effort.group_iterations,
        ),
        lambda: log_t0,
    )
    fit = group_fit(d, jnp.exp(log_t0), a, b, nu_pop, groups, effort.group_iterations)
    a, b = jax.lax.cond(
        stages.read_noise, lambda: _fit_read_noise(fit, d, w_read, a, b, effort.read_noise_iterations), lambda: (a, b)
    )
    n_good, nu_mean, _ = _drift_stats(fit, _drift_groups(fit, d, jnp.exp(log_t0)), w_group)
    nu_pop = jnp.where(stages.drift & (n_good >= MIN_DRIFT_GROUPS), nu_mean, nu_pop)
    t0 = jnp.exp(log_t0)
    fit = group_fit(d, t0, a, b, nu_pop, (fit.g_prog, fit.nu), 3)
    n_good, nu_mean, nu_std = _drift_stats(fit, _drift_groups(fit, d, t0), w_group)
    drift_ok = stages.drift & (n_good >= MIN_DRIFT_GROUPS)
    values = dict(start)
    values.update(read_std_slope=a, read_std_intercept=b)
    values["drift_t0"] = jnp.where(drift_ok, t0, start["drift_t0"])
    values["drift_nu_mean"] = jnp.where(drift_ok, nu_mean, start["drift_nu_mean"])
    values["drift_nu_std"] = jnp.where(drift_ok, nu_std, start["drift_nu_std"])
    reset_mean, reset_total = jax.lax.cond(
        stages.reset,
        lambda: _fit_reset(d, w_dev, values["drift_t0"], values["drift_nu_mean"]),
        lambda: (start["reset_mean"], start["reset_std"]),
    )
    read_sd = _read_sigma(a, b, reset_mean)
    reset_std = jnp.where(stages.read_noise, jnp.sqrt(jnp.maximum(reset_total**2 - read_sd**2, 0.0)), reset_total)
    values["reset_mean"] = jnp.where(stages.reset, reset_mean, start["reset_mean"])
    values["reset_std"] = jnp.where(stages.reset, reset_std, start["reset_std"])
    inc = _increment_inputs(
        d, fit, w_pair, values, bounds["g_min"], stages.read_noise.astype(jnp.float32), stages.reset & stages.read_noise
    )
    increments, hessian = jax.lax.cond(
        stages.increments,
        lambda: fit_increments(inc, start, bounds["g_min"], bounds["g_max"], effort, hessian),
        lambda: ({k: start[k] for k in INCREMENT_PARAMS}, hessian),
    )
    values.update(increments)
    values["_n_drift_groups"] = n_good
    return values, fit, inc, hessian


@eqx.filter_jit
def _point_details(d: FitArrays, values: dict, stages: Stages, g_min):
    """Group fit and increment inputs at the fitted values (goodness of fit, plots)."""
    t0, nu = values["drift_t0"], values["drift_nu_mean"]
    fit = group_fit(d, t0, values["read_std_slope"], values["read_std_intercept"], nu, cold_start(d, t0, nu), 8)
    w_pair = d.pair_valid
    inc = _increment_inputs(
        d, fit, w_pair, values, g_min, stages.read_noise.astype(jnp.float32), stages.reset & stages.read_noise
    )
    return fit, inc


# --------------------------------------------------------------------------- what the data support
def assess(groups: Groups, prior: AbstractPCMDevice, where: str = "measurements") -> Design:
    """Which stages the reads support; raises `UserInputError` when none does or when the reads
    are degenerate (all equal), naming what is missing."""
    refuse_constant_reads(groups.g, where)
    free = groups.n_times >= MIN_TIMES_FOR_FREE_NU
    residual_dof = int(np.sum(np.maximum(groups.n_reads - np.where(free, 2, 1), 0)))
    n_reset = int(np.sum(groups.g[groups.reset_reads] > 0))
    verdicts: dict[str, str | None] = {"read_noise": None, "drift": None, "reset": None}
    if residual_dof == 0:
        verdicts["read_noise"] = NO_REPEATED_READS
    elif residual_dof < MIN_READ_NOISE_DOF:
        verdicts["read_noise"] = (
            f"only {residual_dof} repeated reads beyond the fitted conductances (needs {MIN_READ_NOISE_DOF})"
        )
    if int(free.sum()) < MIN_DRIFT_GROUPS:
        verdicts["drift"] = (
            f"fewer than {MIN_DRIFT_GROUPS} (device, pulse) read at ≥ {MIN_TIMES_FOR_FREE_NU} distinct times (a retention series)"
        )
    if n_reset < MIN_RESET_READS:
        verdicts["reset"] = f"fewer than {MIN_RESET_READS} nonzero reads of freshly RESET devices (pulse 0)"
    return decide(verdicts, groups, prior, where)


# --------------------------------------------------------------------------- results
def _statuses(design: Design, drift_groups: float) -> dict[str, str]:
    st, why = design.stages, dict(design.reasons)
    if st["drift"] and drift_groups < MIN_DRIFT_GROUPS:
        why["drift"] = (
            f"fewer than {MIN_DRIFT_GROUPS} groups of ≥ {MIN_G_FOR_NOISE_FIT:g} µS read at ≥ 2 distinct times after t0"
        )
    out = {}
    for stage, names in (
        ("read_noise", READ_PARAMS),
        ("drift", DRIFT_PARAMS),
        ("reset", RESET_PARAMS),
        ("increments", INCREMENT_PARAMS),
    ):
        for name in names:
            out[name] = "fitted" if stage not in why else f"default: {why[stage]}"
    if not st["read_noise"]:
        bound = "upper bound: read noise is left in (no repeated reads to estimate it from)"
        for name in ("set_std_slope", "set_std_intercept", "set_std_history", "reset_std"):
            if out[name] == "fitted":
                out[name] = bound
        for name in ("set_mean_slope", "set_mean_intercept", "set_mean_history", "set_history_decay", "reset_mean"):
            if out[name] == "fitted":
                out[name] = "fitted (no read-noise correction: no repeated reads)"
    out["g_min"] = out["g_max"] = "default: the clip range is a design choice, not fitted"
    return out


def _as_jnp(values: dict) -> dict:
    return {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}


def _weights(counts: np.ndarray, n_slots: int) -> Array:
    """Device weights padded to the estimator's device slots (padding weighs 0)."""
    weights = np.zeros(n_slots, np.float32)
    weights[: len(counts)] = counts
    return jnp.asarray(weights)


def _point_estimate(d: FitArrays, design: Design, prior, bounds: dict, ones: Array):
    """The estimate from all devices (weights `ones`): values, group fit, increment inputs and
    Hessian, and the stages it used. Drift is left out (`design.stages` updated) when too few
    groups measure it, and the rest refitted with the prior's drift."""
    stages_flags = dict(design.stages)
    prior_values = _as_jnp({k: getattr(prior, k) for k in FITTED_PARAMS})
    for _ in range(2):
        stages = Stages(**{k: jnp.asarray(v) for k, v in stages_flags.items()})
        # Two passes: the second profiles t0 with the read noise and ν of the first, which
        # leaves out the stages that do not feed back (RESET, increments).
        first_stages = dataclasses.replace(stages, reset=jnp.asarray(False), increments=jnp.asarray(False))
        cold = cold_start(d, prior_values["drift_t0"], prior.drift_nu_mean)
        no_hessian = jnp.eye(len(INCREMENT_PARAMS), dtype=jnp.float32)
        first, fit, _, _ = _estimate(d, ones, prior_values, cold, no_hessian, first_stages, bounds, Effort.cold())
        first.pop("_n_drift_groups")
        point, fit, inc, hessian = _estimate(
            d, ones, first, (fit.g_prog, fit.nu), no_hessian, stages, bounds, Effort.refine()
        )
        point = {k: float(v) for k, v in point.items()}
        if stages_flags["drift"] and point["_n_drift_groups"] < MIN_DRIFT_GROUPS:
            stages_flags["drift"] = False  # refit with the prior's drift for the back-extrapolation
            continue
        break
    design.stages = stages_flags
    return point, fit, inc, hessian, stages


def fit_device(
    data: Measurements,
    prior: AbstractPCMDevice,
    n_bootstrap: int = 20,
    seed: int = 0,
    name: str = "fitted",
    progress: Callable[[int, int], None] | None = None,
    where: str = "measurements",
) -> FitResult:
    """Fit every parameter the data constrain, then bootstrap over devices for standard errors.

    `progress(done, total)` is called after the estimate and after each replica.
    Raises `UserInputError` (naming `where`) when nothing can be fitted.
    """
    with numpy_quiet():
        return _fit_device(data, prior, n_bootstrap, seed, name, progress, where)


def _fit_device(data, prior, n_bootstrap, seed, name, progress, where) -> FitResult:
    groups = group_reads(data)
    design = assess(groups, prior, where)
    d = fit_arrays(groups)
    n_devices = len(data.device_names)
    n_slots = padded_size(n_devices, 256)
    t_pos = groups.t[groups.t > 0]
    bounds = _as_jnp(
        dict(
            g_min=prior.g_min,
            g_max=prior.g_max,
            log_t_lo=np.log(t_pos.min()) if t_pos.size else 0.0,
            log_t_hi=np.log(t_pos.max()) if t_pos.size else 0.0,
        )
    )
    point, fit, inc, hessian, stages = _point_estimate(d, design, prior, bounds, _weights(np.ones(n_devices), n_slots))
    warm = _as_jnp({k: point[k] for k in FITTED_PARAMS})

    def replica(counts: np.ndarray) -> dict[str, float]:
        out, _, _, _ = _estimate(
            d, _weights(counts, n_slots), warm, (fit.g_prog, fit.nu), hessian, stages, bounds, Effort.replica()
        )
        return {k: float(out[k]) for k in FITTED_PARAMS}

    # One replica per call of the compiled estimator: on CPU a vmapped batch of replicas ran
    # 1.5× slower per replica than this loop (batched scatter-adds), and the loop updates the
    # progress bar after every replica.
    draws = bootstrap(replica, n_devices, n_bootstrap, seed, progress)
    constrained = _statuses(design, point["_n_drift_groups"])
    stderr = standard_errors(draws, [k for k in FITTED_PARAMS if not constrained[k].startswith("default")])
    # Parameters the data do not constrain keep the prior's exact value (not its float32 copy).
    device = dataclasses.replace(
        prior, **{k: point[k] for k in FITTED_PARAMS if not constrained[k].startswith("default")}, name=name
    )
    goodness, notes = _goodness(fit, inc, data, device, design)
    return FitResult(device, stderr, constrained, goodness, n_bootstrap, design.warnings + notes)


def _goodness(fit: GroupFit, inc: IncrementInputs, data: Measurements, device: Nandakumar2018, design: Design):
    """Reads χ²/dof and increment z-scores at the estimate; a note on implausibly quiet reads."""
    n = data.g_uS.size
    fitted, leverage = np.asarray(fit.fitted)[:n], np.asarray(fit.leverage)[:n]
    g_prog = np.asarray(fit.g_prog)[data.group]
    sigma = np.maximum(device.read_std_slope * fitted + device.read_std_intercept, SIGMA_FLOOR)
    use = g_prog >= MIN_G_FOR_NOISE_FIT
    dof = float(np.sum(1 - leverage[use]))
    chi2 = (
        float(np.sum(((data.g_uS - fitted) / sigma)[use] ** 2) / dof)
        if design.stages["read_noise"] and dof > 0
        else None
    )
    n_pairs = int(np.asarray(inc.weight).sum())
    z = np.empty(0)
    if design.stages["increments"]:
        z = increment_z_scores(increment_arrays(inc, n_pairs), device)
    notes = []
    if (
        design.stages["read_noise"]
        and device.read_std_intercept == 0
        and device.read_std_slope * fitted.max() <= 2 * SIGMA_FLOOR
    ):
        notes.append("read noise fitted as ≈ 0 µS: repeated reads are identical (copied or coarsely quantised data?)")
    goodness = {
        "reads_reduced_chi2": chi2,
        "increment_z_mean": float(z.mean()) if z.size else None,
        "increment_z_std": float(z.std()) if z.size else None,
        "n_reads": int(n),
        "n_groups": int(data.n_groups),
        "n_devices": len(data.device_names),
        "n_pulse_pairs": n_pairs,
        "n_repeated_read_dof": int(round(dof)),
    }
    return goodness, notes


# --------------------------------------------------------------------------- numpy views (plots)


@dataclass
class GroupView:
    g_prog: np.ndarray  # (groups,) Ĝ_p, µS
    nu: np.ndarray  # (groups,) ν̂
    fitted: np.ndarray  # (reads,) model value at each read, µS
    dof_factor: np.ndarray  # (reads,) 1/(1 − leverage) of each read (lone reads: 20)
    increments: IncrementData


def fit_groups(data: Measurements, t0: float, read_a: float, read_b: float, nu_pop: float) -> GroupView:
    """Group fits at given population values, as numpy arrays (for plots)."""
    d = fit_arrays(group_reads(data))
    device_values = {"drift_t0": t0, "read_std_slope": read_a, "read_std_intercept": read_b, "drift_nu_mean": nu_pop}
    return _view(d, data, device_values)


def _view(d, data, values, reset=None, device: AbstractPCMDevice | None = None) -> GroupView:
    base = {k: getattr(device or Nandakumar2018(), k) for k in FITTED_PARAMS}
    base.update(values)
    if reset is not None:
        base["reset_mean"], base["reset_std"] = reset
    stages = Stages(jnp.asarray(True), jnp.asarray(True), jnp.asarray(reset is not None), jnp.asarray(True))
    fit, inc = _point_details(d, _as_jnp(base), stages, jnp.asarray((device or Nandakumar2018()).g_min, jnp.float32))
    n, g = data.g_uS.size, data.n_groups
    leverage = np.clip(np.asarray(fit.leverage)[:n], 0.0, 0.95)
    return GroupView(
        np.asarray(fit.g_prog, float)[:g],
        np.asarray(fit.nu, float)[:g],
        np.asarray(fit.fitted, float)[:n],
        1.0 / (1.0 - leverage),
        increment_arrays(inc, int(np.asarray(inc.weight).sum())),
    )


def increment_pairs(
    data: Measurements, groups: GroupView, device: AbstractPCMDevice, reset: tuple[float, float] | None
) -> IncrementData:
    """Consecutive pulse pairs at the device's values (for plots)."""
    values = {k: getattr(device, k) for k in FITTED_PARAMS}
    return _view(fit_arrays(group_reads(data)), data, values, reset, device).increments
