"""Fit the `joshi2020` family (aihwkit's PCM model, `pcmmeta/core/devices/joshi.py`) to measurement
CSVs of any read protocol. docs/device-model.md, "Fitting the joshi2020 family".

A (device, pulse) *group* is the reads taken after one programming event; the model of its
reads is G(t) = G_p·exp(−ν·x) with x = ln((t + t0)/t0), plus 1/f noise of relative std
Q_s(G_p)·sqrt(L(t)), L(t) = ln((t + t0 + t_r)/(2 t_r)). Stages, each using the groups that carry
its information:

1. per group, (Ĝ_p, ν̂) by Gauss–Newton in µS with weights 1/(G(t)²·L(t)) (a quasi-likelihood
   for noise of variance (G·Q_s)²·L), started from a regression of the log reads. A group read
   at ≥ 4 distinct times, every read > 0, has its own ν̂; the others hold ν at the law's mean
   μ_ν(Ĝ_p). The drift onset t0 is profiled on the deviance of the quiet groups (a grid over
   the span of read times, then parabolic refinement);
2. read noise: Q_s(G) = q·(G/g_max)^(−e) by restricted maximum likelihood on the residuals in µS,
   E[r²] = (f·Q_s)²·L(t)·(1 − h) (h: a read's leverage; held groups add the ν spread);
3. drift-exponent law: ν̂ ~ N(μ_ν(Ĝ_p), σ_ν(Ĝ_p)² + se²(ν̂)) by maximum likelihood over the 8
   coefficients (slope, intercept and clips of μ_ν and of σ_ν); a coefficient is fitted only when
   enough groups lie where it acts (its linear part or its clip), otherwise it keeps the prior's;
4. RESET (programming to g_min): σ_p(g_min), hence c0, from the mean of the pulse-0 reads, whose
   expectation under the fitted read and drift laws is a one-dimensional integral;
5. SET increments: the nandakumar2018 family's increment likelihood (the joshi2020 family borrows
   its SET law) on consecutive pulse pairs, with each conductance's estimation variance and
   regression calibration as there.

The programming-noise slope and curvature (c1, c2) need write-verify targets, which a SET-pulse
protocol does not have: they keep the prior's values. Groups and pulse pairs come from
`grouping`, the refusals and thresholds from `design`; uncertainties: `bootstrap` over devices.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize
from scipy.special import ndtr

from pcmmeta.core.devices import Joshi2020
from pcmmeta.core.devices.joshi import (
    capped_power_law,
    clipped_log_law,
    log_relative_g,
    log_time_factor_law,
    nu_mean_law,
    nu_std_law,
    read_noise_amplitude_law,
)
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
    Effort,
    IncrementInputs,
    fit_increments,
    increment_arrays,
    increment_z_scores,
    shrink_to_pulse_population,
)
from pcmmeta.experiment.fit.padding import padded_size
from pcmmeta.experiment.fit.result import FitResult
from pcmmeta.io.measurements import Measurements

#: Groups whose reads are noisier than this (relative std) are left out of profiling t0.
MAX_T0_RELATIVE_NOISE = 0.1
#: A coefficient of the ν law is fitted only with this many groups where it acts.
MIN_REGION_GROUPS = 20
#: … and a slope only over this span of ln(G) (a factor 1.6 in G).
MIN_LOG_G_SPAN = 0.5

READ_PARAMS = ("read_noise_q", "read_noise_exponent")
NU_MEAN_PARAMS = ("nu_mean_slope", "nu_mean_intercept", "nu_mean_min", "nu_mean_max")
NU_STD_PARAMS = ("nu_std_slope", "nu_std_intercept", "nu_std_min", "nu_std_max")
DRIFT_PARAMS = ("drift_t0",) + NU_MEAN_PARAMS + NU_STD_PARAMS
FITTED_PARAMS = READ_PARAMS + DRIFT_PARAMS + ("prog_noise_c0",) + INCREMENT_PARAMS
_FIXED = {
    "g_min": "default: the clip range is a design choice, not fitted",
    "g_max": "default: the clip range is a design choice, not fitted",
    "t_read": "default: the read's duration is a property of the read circuit (it trades off against read_noise_q)",
    "read_noise_q_max": "default: the cap acts below ≈ 0.2 µS, where reads are floored at 0",
    "prog_noise_c1": "default: needs write-verify targets (programming to known conductances); a SET-pulse protocol has none",
    "prog_noise_c2": "default: needs write-verify targets (programming to known conductances); a SET-pulse protocol has none",
}


# --------------------------------------------------------------------------- the laws
# The device's own laws (pcmmeta/core/devices/joshi.py) run here on NumPy arrays (float64): `xp=np`.
def _x(t, t0):
    """Drift's log time x = ln((t + t0)/t0): G(t) = G_p·exp(−ν·x)."""
    return np.log1p(t / t0)


# --------------------------------------------------------------------------- stage 1: groups
@dataclass
class GroupFit:
    g_prog: np.ndarray  # (groups,) Ĝ_p, µS (0 for a group without a positive read)
    g_level: np.ndarray  # (groups,) weighted geometric mean of the positive reads, µS (t0-free)
    nu: np.ndarray  # (groups,) ν̂ (the law's mean where held)
    free: np.ndarray  # (groups,) own ν
    w_sum: np.ndarray  # (groups,) Σ 1/L over the positive reads
    x_mean: np.ndarray  # (groups,) weighted mean of x
    sxx: np.ndarray  # (groups,) Σ (x − x̄)²/L: var(ν̂) = Q_s²/sxx
    x: np.ndarray  # (reads,)
    time_factor: np.ndarray  # (reads,) L(t)
    fitted: np.ndarray  # (reads,) model value, µS
    rel_residual: np.ndarray  # (reads,) g/f − 1 (0 for a read at 0 µS)
    leverage: np.ndarray  # (reads,)


def group_fit(p: Groups, dev: Joshi2020, t0: float, passes: int = 3) -> GroupFit:
    """Every group's (Ĝ_p, ν̂) at drift onset t0 with `dev`'s ν law (for the groups that hold
    ν). A weighted regression of the log reads starts it; Gauss–Newton steps in µS finish it:
    the reads' variance is (f·Q_s)²·L(t), so each step regresses the relative residuals
    g/f − 1 on (1, −x) with weights 1/L (a quasi-likelihood: unbiased where E[g] = f, unlike
    the log reads, whose mean falls by s²/2 with the noise). The noise's time factor L(t) keeps
    `dev.drift_t0`: profiling t0 compares fits of the mean under one noise model (letting L
    move with t0 would trade the drift's shape for the noise level)."""
    x = _x(p.t, t0)
    time_factor = log_time_factor_law(dev, p.t, np)
    pos = p.g > 0
    w = pos / time_factor
    y = np.log(np.where(pos, p.g, 1.0))
    free = (p.n_times >= MIN_TIMES_FOR_FREE_NU) & p.all_positive
    w_sum, sx, sxx_raw = p.seg(w), p.seg(w * x), p.seg(w * x * x)
    safe_w = np.where(w_sum > 0, w_sum, 1.0)
    x_mean = sx / safe_w
    sxx = np.maximum(sxx_raw - sx * x_mean, 0.0)
    free &= sxx > 0
    safe_sxx = np.where(sxx > 0, sxx, 1.0)
    has_reads = w_sum > 0
    sy, sxy = p.seg(w * y), p.seg(w * x * y)
    g_level = np.where(has_reads, np.exp(sy / safe_w), 0.0)
    nu = np.where(free, -(sxy - sx * sy / safe_w) / safe_sxx, nu_mean_law(dev, g_level, np))
    log_g = (sy + nu * sx) / safe_w

    def relative_residual(log_g, nu):
        f = np.exp(log_g[p.group] - nu[p.group] * x)
        return f, np.where(pos, p.g / f - 1.0, 0.0)

    for _ in range(passes):
        _, e = relative_residual(log_g, nu)
        se, sxe = p.seg(w * e), p.seg(w * x * e)
        d_nu = np.where(free, -(sxe - sx * se / safe_w) / safe_sxx, 0.0)
        log_g = log_g + (se + d_nu * sx) / safe_w
        nu = np.where(free, nu + d_nu, nu_mean_law(dev, np.exp(log_g), np))
    f, e = relative_residual(log_g, nu)
    g_prog = np.where(has_reads, np.exp(log_g), 0.0)
    fitted = np.where(has_reads[p.group], f, 0.0)
    dx = x - x_mean[p.group]
    leverage = np.where(free[p.group], w * (1 / safe_w[p.group] + dx**2 / safe_sxx[p.group]), w / safe_w[p.group])
    return GroupFit(g_prog, g_level, nu, free, w_sum, x_mean, sxx, x, time_factor, fitted, e, leverage)


def drift_groups(fit: GroupFit) -> np.ndarray:
    """Groups whose ν̂ measures drift: own ν, Ĝ_p ≥ 1 µS."""
    return fit.free & (fit.g_prog >= MIN_G_FOR_NOISE_FIT)


def _profile_objective(p: Groups, dev: Joshi2020, log_t0: float, w_group: np.ndarray) -> float:
    """Deviance of the drift groups' reads at drift onset t0, their (Ĝ_p, ν̂) profiled, weights
    1/(Q_s²·L) of the current noise model. Only groups whose reads are quiet (relative noise ≤
    `MAX_T0_RELATIVE_NOISE`) enter: with six reads of 30% noise, the small-sample bias of a
    group's (Ĝ_p, ν̂) bends the profile towards a larger t0 (+30% in simulations). Groups and weights
    are chosen by each group's mean read level, not by Ĝ_p: Ĝ_p moves with t0 and would
    rescale the weights (a bias towards the t0 that lowers them)."""
    fit = group_fit(p, dev, math.exp(log_t0))
    var = read_noise_amplitude_law(dev, fit.g_level, np)[p.group] ** 2 * fit.time_factor
    quiet = np.bincount(p.group, var > MAX_T0_RELATIVE_NOISE**2, minlength=p.n_groups) == 0
    good = fit.free & (fit.g_level >= MIN_G_FOR_NOISE_FIT) & quiet
    use = (good * w_group)[p.group] * (p.g > 0)
    # The quasi-likelihood deviance of a variance ∝ f² (gamma): its minimum over (Ĝ_p, ν̂) is
    # where the Gauss–Newton steps stop, so the profile is consistent (a sum of squared relative
    # residuals is not minimised there and drifts t0 upwards).
    ratio = np.where(use > 0, 1.0 + fit.rel_residual, 1.0)
    deviance = 2 * (ratio - 1 - np.log(ratio))
    return float(np.sum(use * deviance / var))


def find_t0(
    p: Groups, dev: Joshi2020, w_group: np.ndarray, log_lo: float, log_hi: float, around: float | None
) -> tuple[float, bool]:
    """Drift onset t0 minimising the profile over [e^log_lo, e^log_hi] (a 16-point grid, or near
    `around`), refined by parabolas; `inside` is false when the minimum sits on the span's edge
    (the data do not pin t0 down)."""
    objective = lambda v: _profile_objective(p, dev, v, w_group)
    if around is None:
        grid = np.linspace(log_lo, log_hi, 16)
        values = [objective(v) for v in grid]
        best = int(np.argmin(values))
        if best in (0, len(grid) - 1):
            return float(np.exp(grid[best])), False
        centre, half = grid[best], grid[1] - grid[0]
    else:
        centre, half = around, 0.15
    for _ in range(4):
        xs = np.clip(centre + half * np.array([-1.0, 0.0, 1.0]), log_lo, log_hi)
        fs = np.array([objective(v) for v in xs])
        den = (xs[1] - xs[0]) * (fs[1] - fs[2]) - (xs[1] - xs[2]) * (fs[1] - fs[0])
        num = (xs[1] - xs[0]) ** 2 * (fs[1] - fs[2]) - (xs[1] - xs[2]) ** 2 * (fs[1] - fs[0])
        vertex = xs[1] - 0.5 * num / den if den != 0 else np.nan
        centre = float(np.clip(vertex, xs[0], xs[2])) if np.isfinite(vertex) and den > 0 else float(xs[np.argmin(fs)])
        half /= 3
    return float(np.exp(centre)), True


# --------------------------------------------------------------------------- stage 2: read noise
@dataclass
class NoiseData:
    r2: np.ndarray  # squared residual, µS²
    base: np.ndarray  # f²·L: E[r²] = Q_s²·base·(1 − h) + extra
    extra: np.ndarray  # ν-spread variance of held groups, µS²
    dof: np.ndarray  # 1 − h
    g_prog: np.ndarray  # Ĝ_p of the read's group, µS
    log_g: np.ndarray  # ln(Ĝ_p/g_max) of the read's group
    weight: np.ndarray  # bootstrap multiplicity


def noise_data(p: Groups, dev: Joshi2020, fit: GroupFit, w_read: np.ndarray) -> NoiseData:
    """Residuals of groups ≥ 1 µS read at least twice, every read > 0."""
    gp = fit.g_prog[p.group]
    use = (gp >= MIN_G_FOR_NOISE_FIT) & p.all_positive[p.group] & (p.n_reads[p.group] >= 2)
    f = fit.fitted[use]
    dx = (fit.x - fit.x_mean[p.group])[use]
    held = ~fit.free[p.group][use]
    extra = np.where(held, (f * nu_std_law(dev, gp[use], np) * dx) ** 2, 0.0)
    return NoiseData(
        (p.g[use] - f) ** 2,
        f**2 * fit.time_factor[use],
        extra,
        np.clip(1 - fit.leverage[use], 0.0, 1.0),
        gp[use],
        log_relative_g(dev, gp[use], np),
        w_read[use],
    )


def fit_read_noise(nd: NoiseData, dev: Joshi2020, fit_exponent: bool) -> tuple[float, float]:
    """(q, e) of Q_s = q·g^(−e) by REML: Σ u·[(1 − h)·ln V + r²/V], V = Q_s²·f²·L + extra/(1 − h)."""
    cap = dev.read_noise_q_max
    dof = np.maximum(nd.dof, 1e-3)
    x = np.abs(nd.g_prog) / dev.g_max

    def nll(theta):
        log_q, e = theta if fit_exponent else (theta[0], dev.read_noise_exponent)
        q = capped_power_law(math.exp(log_q), e, cap, x, np)  # the device's law at (q, e)
        v = q**2 * nd.base + nd.extra / dof
        return float(np.sum(nd.weight * (nd.dof * np.log(v) + nd.r2 / v)) / max(np.sum(nd.weight * nd.dof), 1e-12))

    start = [math.log(max(dev.read_noise_q, 1e-6))] + ([dev.read_noise_exponent] if fit_exponent else [])
    res = optimize.minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-10, "maxiter": 2000})
    return float(math.exp(res.x[0])), float(res.x[1]) if fit_exponent else dev.read_noise_exponent


# --------------------------------------------------------------------------- stage 3: ν law
def _nu_nll(theta, log_g, nu_hat, se2, weight):
    mu = clipped_log_law(theta[0], theta[1], theta[2], theta[3], log_g, np)
    sd = clipped_log_law(theta[4], theta[5], max(theta[6], 0.0), max(theta[7], 0.0), log_g, np)
    var = sd**2 + se2 + 1e-12
    return float(np.sum(weight * (np.log(var) + (nu_hat - mu) ** 2 / var)) / max(np.sum(weight), 1e-12))


def fit_nu_law(log_g, nu_hat, se2, weight, start: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Maximum-likelihood coefficients (NU_MEAN_PARAMS + NU_STD_PARAMS order); those not `free`
    stay at `start`. Nelder–Mead in units of 0.01 (the laws are piecewise linear: no gradient
    at the clips), polished by a restart."""
    if not free.any():
        return start.copy()
    scale = 0.01

    def objective(z):
        theta = start.copy()
        theta[free] = z * scale
        return _nu_nll(theta, log_g, nu_hat, se2, weight)

    z = start[free] / scale
    for _ in range(3):
        res = optimize.minimize(
            objective,
            z,
            method="Nelder-Mead",
            options={"xatol": 1e-4, "fatol": 1e-9, "maxiter": 6000, "adaptive": True},
        )
        z = res.x
    out = start.copy()
    out[free] = z * scale
    return out


def nu_law_support(log_g, se2, theta) -> dict[str, str | None]:
    """Which ν-law coefficients the drift groups support at coefficients `theta`: a slope and
    intercept where the groups on the linear part are worth ≥ MIN_REGION_GROUPS exact ν's over
    a span of ln g ≥ MIN_LOG_G_SPAN; a clip where the groups beyond it are, over such a span. A
    group is worth w = σ²/(σ² + se²) of an exact ν for the mean law and w² for the spread law
    (at low G a ν̂ is far noisier than the spread it would measure). Returns a reason per
    unsupported coefficient (None: supported)."""
    sd = clipped_log_law(theta[4], theta[5], max(theta[6], 0.0), max(theta[7], 0.0), log_g, np)
    worth = sd**2 / (sd**2 + se2 + 1e-12)
    reasons: dict[str, str | None] = {}
    for names, offset, what, w in ((NU_MEAN_PARAMS, 0, "mean", worth), (NU_STD_PARAMS, 4, "std", worth**2)):
        slope, intercept, low, high = theta[offset : offset + 4]
        value = slope * log_g + intercept
        low_side, high_side = value <= low, value >= high
        regions = (
            (names[:2], ~low_side & ~high_side, "follows its log-linear law"),
            (names[2:3], low_side, "sits at its lower clip"),
            (names[3:], high_side, "sits at its upper clip"),
        )
        for keys, where, label in regions:
            n_eff = float(np.sum(w[where]))
            span = float(np.ptp(log_g[where])) if where.sum() >= 2 else 0.0
            ok = n_eff >= MIN_REGION_GROUPS and span >= MIN_LOG_G_SPAN
            for key in keys:
                reasons[key] = (
                    None
                    if ok
                    else (
                        f"default: the drift groups where ν's {what} {label} are worth {n_eff:.0f} exact ν's over "
                        f"ln G spanning {span:.2f}; needs {MIN_REGION_GROUPS} over ≥ {MIN_LOG_G_SPAN}"
                    )
                )
    return reasons


# --------------------------------------------------------------------------- stage 4: RESET
_XI = np.linspace(0.0, 8.0, 801)[1:]  # half-normal grid for the programmed RESET conductance
_XI_W = np.exp(-0.5 * _XI**2) / math.sqrt(2 * math.pi) * (_XI[1] - _XI[0])
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(24)
_GH_W = _GH_W / _GH_W.sum()


def _reset_mean_read(dev: Joshi2020, sigma0: float, t: np.ndarray) -> np.ndarray:
    """E[read] (µS) of a RESET device read t s after RESET, if σ_p(g_min) = sigma0: programming
    max(g_min, g_min + σ0·ξ), drift with ν keyed by g_min, 1/f noise floored at 0."""
    nu = np.abs(nu_mean_law(dev, dev.g_min, np) + nu_std_law(dev, dev.g_min, np) * _GH_X)
    decay = (_GH_W[None, :] * ((t[:, None] + dev.drift_t0) / dev.drift_t0) ** (-nu[None, :])).sum(axis=1)
    g = np.concatenate([[dev.g_min], dev.g_min + sigma0 * _XI])
    weight = np.concatenate([[0.5], _XI_W])
    s = read_noise_amplitude_law(dev, g, np)[None, :] * np.sqrt(log_time_factor_law(dev, t, np))[:, None]
    s = np.maximum(s, 1e-9)
    floored = ndtr(1 / s) + s * np.exp(-0.5 / s**2) / math.sqrt(2 * math.pi)  # E[max(0, 1 + sξ)]
    return decay * ((weight * g)[None, :] * floored).sum(axis=1)


def fit_reset_sigma(dev: Joshi2020, t: np.ndarray, g: np.ndarray, weight: np.ndarray) -> float | None:
    """σ_p(g_min) (µS) whose expected mean read equals the mean of the pulse-0 reads (None if
    no value in (0, g_max] does)."""
    total = np.sum(weight)
    if total <= 0:
        return None
    times, inverse = np.unique(t, return_inverse=True)
    counts = np.bincount(inverse, weight, minlength=len(times))
    target = np.sum(weight * g) / total
    gap = lambda s: float(np.sum(counts * _reset_mean_read(dev, s, times)) / total - target)
    lo, hi = 1e-4, dev.g_max
    if gap(lo) > 0 or gap(hi) < 0:
        return None
    return float(optimize.brentq(gap, lo, hi, xtol=1e-6))


# --------------------------------------------------------------------------- stage 5: increments
def increment_inputs(
    p: Groups, dev: Joshi2020, fit: GroupFit, w_pair: np.ndarray, read_known: bool, reset_known: bool
) -> IncrementInputs:
    """Consecutive (pulse k − 1, pulse k) groups of a device: the conductance before the pulse
    (pulse k − 1's fit, drifted to its last read), the one after (Ĝ_p of pulse k) and the
    estimation variance of their difference, with regression calibration within each pulse
    index as in the nandakumar2018 fit."""
    before, after = p.pair_before, p.pair_after
    q2 = read_noise_amplitude_law(dev, fit.g_prog, np) ** 2 if read_known else np.zeros(p.n_groups)
    t0 = dev.drift_t0
    x_last = _x(p.last_t[before], t0)
    g_before = fit.g_prog[before] * np.exp(-fit.nu[before] * x_last)
    safe_w = np.where(fit.w_sum > 0, fit.w_sum, 1.0)
    safe_sxx = np.where(fit.sxx > 0, fit.sxx, 1.0)

    def rel_var(groups, x_at):
        own = np.where(
            fit.free[groups],
            1 / safe_w[groups] + (x_at - fit.x_mean[groups]) ** 2 / safe_sxx[groups],
            1 / safe_w[groups],
        )
        spread = np.where(
            fit.free[groups], 0.0, (nu_std_law(dev, fit.g_prog[groups], np) * (x_at - fit.x_mean[groups])) ** 2
        )
        return q2[groups] * own + spread

    var_before = g_before**2 * rel_var(before, x_last)
    is_reset = (p.group_pulse[before] == 0) & reset_known
    reset_g = dev.reset_mean * np.exp(-nu_mean_law(dev, dev.g_min, np) * x_last)
    sigma0 = float(np.asarray(dev.programming_std(dev.g_min)))
    g_before = np.where(is_reset, reset_g, g_before)
    var_before = np.where(is_reset, sigma0**2 * (0.5 - 1 / (2 * math.pi)), var_before)
    k = p.group_pulse[before]
    n_slots = int(k.max()) + 1 if k.size else 1
    cw = w_pair * (g_before > dev.g_min + 3 * np.sqrt(var_before)) * ~is_reset
    seg = lambda v: np.bincount(k, v, minlength=n_slots)
    g_before, var_before = shrink_to_pulse_population(g_before, var_before, cw, k, seg, np)
    g_after = fit.g_prog[after]
    var_after = g_after**2 * rel_var(after, np.zeros_like(g_after))
    used = w_pair > 0
    n_pad = padded_size(len(before), 1024)

    def pad(v, fill):
        return jnp.asarray(np.concatenate([v, np.full(n_pad - len(v), fill)]), jnp.float32)

    return IncrementInputs(
        pad(np.where(used, g_before, 5.0), 5.0),
        pad(np.where(used, g_after, 5.0), 5.0),
        pad(np.where(used, var_before + var_after, 1.0), 1.0),
        pad(np.where(used, p.group_pulse[after], 1.0), 1.0),
        pad(w_pair, 0.0),
    )


@jax.jit
def _fit_increments(inc: IncrementInputs, start: dict, g_min, g_max) -> dict:
    out, _ = fit_increments(inc, start, g_min, g_max, Effort.cold(), jnp.eye(len(INCREMENT_PARAMS), dtype=jnp.float32))
    return out


# --------------------------------------------------------------------------- what the data support
def assess(p: Groups, prior: Joshi2020, where: str) -> Design:
    """Which stages the reads support; raises `UserInputError` when none does or when the reads
    are degenerate (all equal), naming what is missing."""
    refuse_constant_reads(p.g, where)
    repeated = int(np.sum(np.maximum(p.n_reads - 1, 0)))
    free = (p.n_times >= MIN_TIMES_FOR_FREE_NU) & p.all_positive
    verdicts: dict[str, str | None] = {"read_noise": None, "drift": None, "reset": None}
    if repeated == 0:
        verdicts["read_noise"] = NO_REPEATED_READS
    elif repeated < MIN_READ_NOISE_DOF:
        verdicts["read_noise"] = f"only {repeated} repeated reads (needs {MIN_READ_NOISE_DOF})"
    if int(free.sum()) < MIN_DRIFT_GROUPS:
        verdicts["drift"] = (
            f"fewer than {MIN_DRIFT_GROUPS} (device, pulse) read at ≥ {MIN_TIMES_FOR_FREE_NU} distinct times, every read > 0 (a retention series)"
        )
    if not (len(p.reset_reads) >= MIN_RESET_READS and bool(np.any(p.g[p.reset_reads] > 0))):
        verdicts["reset"] = f"fewer than {MIN_RESET_READS} reads of freshly RESET devices (pulse 0), or all at 0 µS"
    return decide(verdicts, p, prior, where)


def log_t0_span(t: np.ndarray) -> tuple[float, float]:
    """Where t0 is searched: ln of a tenth of the smallest and of the largest positive read time."""
    t_pos = t[t > 0]
    return (float(np.log(t_pos.min() / 10)), float(np.log(t_pos.max()))) if t_pos.size else (0.0, 0.0)


# --------------------------------------------------------------------------- the estimator
@dataclass
class Estimate:
    device: Joshi2020
    status: dict[str, str]  # parameter -> "fitted…" or "default: …"
    fit: GroupFit
    noise: NoiseData | None
    drift_law_groups: int
    inc: IncrementInputs | None


def _estimate(p: Groups, design: Design, prior: Joshi2020, w_dev: np.ndarray, warm: Estimate | None) -> Estimate:
    """Every parameter the data support, from one set of device weights (ones: the data;
    multinomial counts: a bootstrap replica, warm-started at the estimate `warm`)."""
    log_t_span = log_t0_span(p.t)
    st = design.stages
    w_read, w_group = w_dev[p.read_device], w_dev[p.group_device]
    status = dict(_FIXED)
    dev = prior if warm is None else warm.device
    # t0: a global search in the estimate's first round, local refinements after; a replica
    # refines the estimate's t0 when the estimate fitted it.
    t0_fitted = st["drift"] if warm is None else warm.status["drift_t0"] == "fitted"
    if warm is None:
        exponent_ok = False
    else:
        exponent_ok = warm.status["read_noise_exponent"] == "fitted"
    names = NU_MEAN_PARAMS + NU_STD_PARAMS
    reasons: dict[str, str | None] = {}
    n_drift = 0
    for round_ in range(2 if st["drift"] else 1):
        if t0_fitted:
            global_search = warm is None and round_ == 0
            t0, inside = find_t0(p, dev, w_group, *log_t_span, around=None if global_search else math.log(dev.drift_t0))
            if global_search and not inside:
                t0_fitted, t0 = False, prior.drift_t0
            dev = dataclasses.replace(dev, drift_t0=t0)
        fit = group_fit(p, dev, dev.drift_t0)
        nd = None
        if st["read_noise"]:
            nd = noise_data(p, dev, fit, w_read)
            if warm is None:
                exponent_ok = nd.log_g.size >= 2 and float(np.ptp(nd.log_g)) >= MIN_LOG_G_SPAN
            q, e = fit_read_noise(nd, dev, exponent_ok)
            dev = dataclasses.replace(dev, read_noise_q=q, read_noise_exponent=e)
        good = drift_groups(fit) & (w_group > 0)
        n_drift = int(good.sum())
        if st["drift"] and n_drift >= MIN_DRIFT_GROUPS:
            log_g = log_relative_g(dev, fit.g_prog[good], np)
            se2 = read_noise_amplitude_law(dev, fit.g_prog[good], np) ** 2 / fit.sxx[good]
            args = (log_g, fit.nu[good], se2, w_group[good])
            start = np.array([getattr(dev, k) for k in names])
            if warm is None:
                theta = fit_nu_law(*args, start, np.ones(8, bool))
                held = np.array([getattr(prior, k) for k in names])
                for _ in range(2):  # hold what the groups do not support, refit the rest
                    reasons = nu_law_support(log_g, se2, theta)
                    free = np.array([reasons[k] is None for k in names])
                    theta = fit_nu_law(*args, np.where(free, theta, held), free)
            else:
                free = np.array([warm.status[k] == "fitted" for k in names])
                theta = fit_nu_law(*args, start, free)
                reasons = {k: None if f else warm.status[k] for k, f in zip(names, free)}
            dev = dataclasses.replace(dev, **{k: float(v) for k, v in zip(names, theta)})
    drift_ok = st["drift"] and n_drift >= MIN_DRIFT_GROUPS
    if not drift_ok:
        why = (
            design.reasons.get("drift")
            or f"fewer than {MIN_DRIFT_GROUPS} groups of ≥ {MIN_G_FOR_NOISE_FIT:g} µS read at ≥ {MIN_TIMES_FOR_FREE_NU} distinct times, every read > 0"
        )
        reasons = {k: f"default: {why}" for k in names}
        dev = dataclasses.replace(dev, **{k: getattr(prior, k) for k in names})
        status["drift_t0"] = f"default: {why}"
    elif not t0_fitted:
        status["drift_t0"] = (
            "default: the read times do not pin the drift onset down (profile minimum at the edge of their span)"
        )
    else:
        status["drift_t0"] = "fitted"
    if status["drift_t0"] != "fitted" and dev.drift_t0 != prior.drift_t0:
        dev = dataclasses.replace(dev, drift_t0=prior.drift_t0)
        fit = group_fit(p, dev, dev.drift_t0)
    for k in names:
        reason = reasons.get(k)
        status[k] = "fitted" if reason is None else reason
    if st["read_noise"]:
        status["read_noise_q"] = "fitted"
        status["read_noise_exponent"] = (
            "fitted"
            if exponent_ok
            else (
                f"default: the repeatedly read groups of ≥ {MIN_G_FOR_NOISE_FIT:g} µS span less than a factor {math.exp(MIN_LOG_G_SPAN):.2g} in G"
            )
        )
    else:
        for k in READ_PARAMS:
            status[k] = f"default: {design.reasons['read_noise']}"
    # RESET: σ_p(g_min) from the pulse-0 reads.
    sigma0 = None
    if st["reset"]:
        rows = p.reset_reads
        sigma0 = fit_reset_sigma(dev, p.t[rows], p.g[rows], w_read[rows])
    if sigma0 is not None:
        g_rel = dev.g_min / dev.g_max
        c0 = sigma0 - dev.prog_noise_c1 * g_rel - dev.prog_noise_c2 * g_rel**2
        dev = dataclasses.replace(dev, prog_noise_c0=float(max(c0, 0.0)))
        status["prog_noise_c0"] = "fitted (from the RESET reads: σ_p at g_min)"
    else:
        status["prog_noise_c0"] = (
            f"default: {design.reasons.get('reset', 'no σ_p(g_min) matches the mean of the RESET reads')}"
        )
    # SET increments (the law borrowed from nandakumar2018).
    inc = None
    if st["increments"]:
        w_pair = w_dev[p.group_device[p.pair_after]].astype(float)
        inc = increment_inputs(p, dev, fit, w_pair, st["read_noise"], sigma0 is not None)
        law_start = {k: jnp.asarray(getattr(dev, k), jnp.float32) for k in INCREMENT_PARAMS}
        law = _fit_increments(inc, law_start, jnp.float32(dev.g_min), jnp.float32(dev.g_max))
        dev = dataclasses.replace(dev, **{k: float(v) for k, v in law.items()})
        for k in INCREMENT_PARAMS:
            status[k] = "fitted" if st["read_noise"] else "fitted (read noise of the prior: no repeated reads)"
    else:
        for k in INCREMENT_PARAMS:
            status[k] = f"default: {design.reasons['increments']}"
    return Estimate(dev, status, fit, nd, n_drift, inc)


def fit_device(
    data: Measurements,
    prior: Joshi2020,
    n_bootstrap: int = 20,
    seed: int = 0,
    name: str = "fitted",
    progress: Callable[[int, int], None] | None = None,
    where: str = "measurements",
) -> FitResult:
    """Fit every joshi2020 parameter the data constrain, then bootstrap over devices."""
    with numpy_quiet():
        return _fit_device(data, prior, n_bootstrap, seed, name, progress, where)


def _fit_device(data, prior, n_bootstrap, seed, name, progress, where) -> FitResult:
    p = group_reads(data)
    design = assess(p, prior, where)
    n_devices = len(data.device_names)
    est = _estimate(p, design, prior, np.ones(n_devices), None)

    def replica(counts: np.ndarray) -> dict[str, float]:
        out = _estimate(p, design, prior, counts.astype(float), est)
        return {k: getattr(out.device, k) for k in FITTED_PARAMS}

    draws = bootstrap(replica, n_devices, n_bootstrap, seed, progress)
    stderr = standard_errors(draws, [k for k in FITTED_PARAMS if not est.status[k].startswith("default")])
    # Parameters the data do not constrain keep the prior's exact value.
    values = {k: getattr(est.device, k) for k in FITTED_PARAMS if not est.status[k].startswith("default")}
    device = dataclasses.replace(prior, **{k: float(v) for k, v in values.items()}, name=name)
    status = {k: est.status.get(k, _FIXED.get(k, "fitted")) for k in device.parameter_names()}
    goodness, notes = _goodness(est, device, data)
    return FitResult(device, stderr, status, goodness, n_bootstrap, design.warnings + notes)


def _goodness(est: Estimate, device: Joshi2020, data: Measurements):
    """Reads χ²/dof (1 if the read and drift laws fit) and increment z-scores at the estimate."""
    chi2, dof = None, 0.0
    nd = est.noise
    if nd is not None and nd.r2.size:
        q = read_noise_amplitude_law(device, nd.g_prog, np)
        var = q**2 * nd.base + nd.extra / np.maximum(nd.dof, 1e-3)
        dof = float(np.sum(nd.dof))
        chi2 = float(np.sum(nd.r2 / var) / dof) if dof > 0 else None
    notes = []
    if chi2 is not None and device.read_noise_q < 1e-5:
        notes.append("read noise fitted as ≈ 0: repeated reads are identical (copied or coarsely quantised data?)")
    z = np.empty(0)
    n_pairs = 0
    if est.inc is not None:
        n_pairs = int(np.sum(np.asarray(est.inc.weight) > 0))
        z = increment_z_scores(increment_arrays(est.inc, n_pairs), device)
    goodness = {
        "reads_reduced_chi2": chi2,
        "increment_z_mean": float(z.mean()) if z.size else None,
        "increment_z_std": float(z.std()) if z.size else None,
        "n_reads": int(data.g_uS.size),
        "n_groups": int(data.n_groups),
        "n_devices": len(data.device_names),
        "n_pulse_pairs": n_pairs,
        "n_repeated_read_dof": int(round(dof)),
        "n_drift_groups": est.drift_law_groups,
    }
    return goodness, notes
