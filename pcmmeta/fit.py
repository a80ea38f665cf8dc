"""Fit the PCM model to measurement CSVs (see docs/device-model.md, "Fitting").

Stages, each correcting for the noise of the stage before:
1. per (device, pulse) group, weighted Gauss–Newton for the programmed conductance Ĝ_p and the
   drift exponent ν̂ (with their covariance), at a drift onset t0 found by profiling;
2. read noise σ(G) = a·G + b by maximum likelihood on the group residuals, each scaled by
   1/(1 − leverage) of its read;
3. drift-exponent distribution: mean of ν̂, variance = var(ν̂) − mean(se²(ν̂)) (removes the
   estimation noise of each group's ν̂);
4. RESET state: censored (Tobit) likelihood of the pre-drift reads of freshly RESET devices,
   variance minus the read-noise variance;
5. SET increments: one likelihood for all consecutive pulse pairs, with the estimation noise of
   the before/after conductances added to the model variance and the clip at g_min / g_max as
   censoring.
Uncertainties: bootstrap over devices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.special
from jax.scipy.special import log_ndtr

from .device import PCMDevice
from .measurements import Measurements

#: Groups below this conductance are left out of the read-noise and drift fits: there a read
#: is floored at 0 µS often enough to bias residuals.
MIN_G_FOR_NOISE_FIT = 1.0
_SIGMA_FLOOR = 1e-3


@dataclass
class GroupFit:
    g_prog: np.ndarray  # (groups,) Ĝ_p, µS
    nu: np.ndarray  # (groups,) ν̂
    cov: np.ndarray  # (groups, 2, 2) covariance of (Ĝ_p, ν̂)
    fitted: np.ndarray  # (reads,) model value at each read, µS
    dof_factor: np.ndarray  # (reads,) 1/(1 − leverage) of each read


#: Reads at this many distinct times let a group have its own ν (two parameters, two spare).
MIN_TIMES_FOR_FREE_NU = 4


def distinct_times(group: np.ndarray, t_s: np.ndarray, n_groups: int, after: float = -np.inf) -> np.ndarray:
    """Number of distinct read times > `after` per group."""
    sel = t_s > after
    pairs = np.unique(np.stack([group[sel], t_s[sel]]), axis=1)
    return np.bincount(pairs[0].astype(int), minlength=n_groups)


def _drift_log(t_s: np.ndarray, t0: float) -> np.ndarray:
    return np.log(np.maximum(t_s, t0) / t0)


def fit_groups(
    data: Measurements, t0: float, read_a: float, read_b: float, nu_pop: float, iterations: int = 8
) -> GroupFit:
    """Weighted Gauss–Newton for (Ĝ_p, ν̂) of every group at once, weights 1/σ_read².

    A group read at fewer than `MIN_TIMES_FOR_FREE_NU` distinct times cannot separate ν from
    noise: its ν is held at the population value `nu_pop` and only Ĝ_p is fitted (its ν
    variance is reported as infinite). The rule does not depend on t0, so that profiling t0
    compares models with the same number of parameters.
    """
    grp, y = data.group, data.g_uS
    n_groups = data.n_groups
    log_x = _drift_log(data.t_s, t0)
    counts = np.bincount(grp, minlength=n_groups).astype(float)
    pre = log_x == 0
    n_pre = np.bincount(grp, weights=pre, minlength=n_groups)
    g = np.where(n_pre > 0, np.bincount(grp, weights=y * pre, minlength=n_groups) / np.maximum(n_pre, 1), np.bincount(grp, weights=y, minlength=n_groups) / counts)
    free_nu = distinct_times(data.group, data.t_s, n_groups) >= MIN_TIMES_FOR_FREE_NU
    nu = np.where(free_nu, 0.0, nu_pop)

    def sums(w, *terms):
        return [np.bincount(grp, weights=w * t, minlength=n_groups) for t in terms]

    for _ in range(iterations):
        decay = np.exp(-nu[grp] * log_x)
        f = g[grp] * decay
        w = 1.0 / np.maximum(read_a * f + read_b, _SIGMA_FLOOR) ** 2
        j_g, j_nu = decay, -f * log_x
        r = y - f
        a00, a01, a11, b0, b1 = sums(w, j_g * j_g, j_g * j_nu, j_nu * j_nu, j_g * r, j_nu * r)
        a01 = np.where(free_nu, a01, 0.0)
        # The ridge keeps near-0 µS groups (where ν has no leverage) from a singular system.
        a11 = np.where(free_nu, a11 + 1e-9 * a00, 1e30)
        b1 = np.where(free_nu, b1, 0.0)
        det = a00 * a11 - a01**2
        # Bounded steps: groups near 0 µS (reads floored at 0) carry no drift information.
        g = np.maximum(g + (a11 * b0 - a01 * b1) / det, 1e-3)
        nu = np.clip(nu + (a00 * b1 - a01 * b0) / det, -0.5, 0.5)
    inv = np.stack([np.stack([a11, -a01], -1), np.stack([-a01, a00], -1)], -2) / det[:, None, None]
    decay = np.exp(-nu[grp] * log_x)
    fitted = g[grp] * decay
    # Leverage h of each read: E[r²] = σ²(1 − h). The far drifted reads have the highest
    # leverage and the lowest conductance, so a per-group correction would tilt σ(G).
    j_g, j_nu = decay, -fitted * log_x
    w = 1.0 / np.maximum(read_a * fitted + read_b, _SIGMA_FLOOR) ** 2
    quad = inv[grp, 0, 0] * j_g**2 + 2 * inv[grp, 0, 1] * j_g * j_nu + inv[grp, 1, 1] * j_nu**2
    leverage = np.clip(w * quad, 0.0, 0.95)
    inv[~free_nu, 1, 1] = np.inf
    return GroupFit(g, nu, inv, fitted, 1.0 / (1.0 - leverage))


def weighted_ssr(data: Measurements, t0: float, read_a: float, read_b: float, nu_pop: float) -> float:
    fit = fit_groups(data, t0, read_a, read_b, nu_pop)
    sigma = np.maximum(read_a * fit.fitted + read_b, _SIGMA_FLOOR)
    return float(np.sum(((data.g_uS - fit.fitted) / sigma) ** 2))


def find_drift_t0(data: Measurements, read_a: float, read_b: float, nu_pop: float, around: float | None = None) -> float:
    """Drift onset t0 (s) minimising the weighted residuals, over the span of read times."""
    t = data.t_s[data.t_s > 0]
    lo, hi = np.log(t.min()), np.log(t.max())
    objective = lambda log_t0: weighted_ssr(data, float(np.exp(log_t0)), read_a, read_b, nu_pop)
    if around is None:
        grid = np.linspace(lo, hi, 25)
        best = int(np.argmin([objective(v) for v in grid]))
        bracket = (grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)])
    else:
        bracket = (max(lo, np.log(around) - 0.4), min(hi, np.log(around) + 0.4))
    result = scipy.optimize.minimize_scalar(objective, bounds=bracket, method="bounded", options={"xatol": 1e-3})
    return float(np.exp(result.x))


def fit_read_noise(data: Measurements, fit: GroupFit, init: tuple[float, float]) -> tuple[float, float]:
    """ML read-noise line σ = a·G + b from group residuals (reads of groups with Ĝ_p ≥ 1 µS)."""
    use = fit.g_prog[data.group] >= MIN_G_FOR_NOISE_FIT
    f, r2 = fit.fitted[use], (data.g_uS[use] - fit.fitted[use]) ** 2 * fit.dof_factor[use]

    def nll(p):
        var = np.maximum(p[0] * f + p[1], _SIGMA_FLOOR) ** 2
        return float(np.mean(np.log(var) + r2 / var))

    result = scipy.optimize.minimize(nll, np.asarray(init, float), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 2000})
    return float(result.x[0]), float(result.x[1])


def fit_reset(data: Measurements, t0: float, read_a: float, read_b: float) -> tuple[float, float] | None:
    """RESET mean and std (µS) from pre-drift reads of pulse-0 groups; reads are floored at 0."""
    rows = (data.group_pulse[data.group] == 0) & (data.t_s <= t0)
    if rows.sum() < 10:
        return None
    y = data.g_uS[rows]

    def nll(p):
        mean, log_total = p
        total = np.exp(log_total)
        z = (y - mean) / total
        # a read of exactly 0 was floored: its likelihood is P(read ≤ 0)
        ll = np.where(y <= 0, scipy.special.log_ndtr(-mean / total), -0.5 * z**2 - log_total)
        return -float(np.mean(ll))

    result = scipy.optimize.minimize(nll, [max(y.mean(), 1e-3), np.log(y.std() + 1e-3)], method="Nelder-Mead")
    mean, total = float(result.x[0]), float(np.exp(result.x[1]))
    read_sd = read_a * mean + read_b
    return mean, float(np.sqrt(max(total**2 - read_sd**2, 0.0)))


@dataclass
class IncrementData:
    g_before: np.ndarray  # (pairs,) conductance the pulse acted on, µS
    g_after: np.ndarray  # (pairs,) Ĝ_p after the pulse, µS
    var_obs: np.ndarray  # (pairs,) estimation variance of g_after − g_before, µS²
    pulse: np.ndarray  # (pairs,) index n of the pulse since RESET (1 = first)


def increment_pairs(
    data: Measurements, fit: GroupFit, drift: PCMDevice, reset: tuple[float, float] | None
) -> IncrementData:
    """Consecutive (pulse k − 1, pulse k) groups of a device, k ≥ 1; `drift` gives t0 and ν's law."""
    t0, nu_mean = drift.drift_t0, drift.drift_nu_mean
    order = np.lexsort((data.group_pulse, data.group_device))
    dev, pul = data.group_device[order], data.group_pulse[order]
    consecutive = (dev[1:] == dev[:-1]) & (pul[1:] == pul[:-1] + 1)
    before, after = order[:-1][consecutive], order[1:][consecutive]
    t_last = np.full(data.n_groups, -np.inf)
    np.maximum.at(t_last, data.group, data.t_s)
    log_x = _drift_log(t_last[before], t0)
    decay = np.exp(-fit.nu[before] * log_x)
    g_before = fit.g_prog[before] * decay
    jac = np.stack([decay, -g_before * log_x], -1)
    cov = fit.cov[before].copy()
    # A group whose ν was held at the population mean is uncertain by the population's spread.
    cov[:, 1, 1] = np.where(np.isfinite(cov[:, 1, 1]), cov[:, 1, 1], drift.drift_nu_std**2)
    var_before = np.einsum("pi,pij,pj->p", jac, cov, jac)
    if reset is not None:
        # After RESET the population estimate beats a group's own: its spread is far below read noise.
        is_reset = data.group_pulse[before] == 0
        g_before = np.where(is_reset, reset[0] * np.exp(-nu_mean * log_x), g_before)
        var_before = np.where(is_reset, reset[1] ** 2, var_before)
    # Regression calibration: Ĝ_before carries estimation noise that also enters the increment
    # with the opposite sign, which would tilt the fitted slope. Replace it by its expectation
    # given the population at the same pulse index (shrinkage λ = 1 − noise var / total var).
    # Devices sitting at g_min (a clipped pulse) are a point mass, not part of the Gaussian
    # population the calibration assumes: they keep their own estimate.
    pulse_before = data.group_pulse[before]
    interior = g_before > drift.g_min + 3 * np.sqrt(var_before)
    for k in np.unique(pulse_before):
        at = (pulse_before == k) & interior
        if k == 0 and reset is not None or at.sum() < 10:
            continue
        spread = g_before[at].var()
        shrink = max(1.0 - var_before[at].mean() / spread, 0.0) if spread > 0 else 0.0
        g_before[at] = g_before[at].mean() + shrink * (g_before[at] - g_before[at].mean())
        var_before[at] = shrink * var_before[at]
    var_obs = var_before + fit.cov[after, 0, 0]
    return IncrementData(g_before, fit.g_prog[after], var_obs, data.group_pulse[after].astype(float))


INCREMENT_PARAMS = (
    "set_mean_slope",
    "set_mean_intercept",
    "set_mean_history",
    "set_std_slope",
    "set_std_intercept",
    "set_std_history",
    "set_history_decay",
)


def _increment_nll(theta: jax.Array, inc: dict, g_min: float, g_max: float) -> jax.Array:
    m_s, m_i, m_h, s_s, s_i, s_h, log_tau = theta
    p = jnp.exp(-inc["pulse"] / jnp.exp(log_tau))
    g_b, obs, v = inc["g_before"], inc["g_after"], inc["var_obs"]
    mu = g_b + m_s * g_b + m_i + m_h * p  # mean of the unclipped conductance after the pulse
    sd = jnp.maximum(s_s * g_b + s_i + s_h * p, _SIGMA_FLOOR)
    var = sd**2

    def log_normal(x, m, variance):
        return -0.5 * (x - m) ** 2 / variance - 0.5 * jnp.log(2 * jnp.pi * variance)

    log_low = log_ndtr((g_min - mu) / sd) + log_normal(obs, g_min, v)
    log_high = log_ndtr((mu - g_max) / sd) + log_normal(obs, g_max, v)
    post_mean = (mu * v + obs * var) / (var + v)
    post_sd = jnp.sqrt(var * v / (var + v))
    inside = jnp.clip(
        jax.scipy.stats.norm.cdf((g_max - post_mean) / post_sd) - jax.scipy.stats.norm.cdf((g_min - post_mean) / post_sd),
        1e-30,
        1.0,
    )
    log_mid = log_normal(obs, mu, var + v) + jnp.log(inside)
    return -jnp.mean(jax.scipy.special.logsumexp(jnp.stack([log_low, log_high, log_mid]), axis=0))


_increment_value_and_grad = jax.jit(jax.value_and_grad(_increment_nll))


def fit_increments(inc: IncrementData, device: PCMDevice, init: np.ndarray) -> np.ndarray:
    """ML estimate of the seven SET-increment parameters (history decay as log τ)."""
    arrays = {k: jnp.asarray(v, jnp.float32) for k, v in dataclasses.asdict(inc).items()}

    def fun(theta):
        value, grad = _increment_value_and_grad(jnp.asarray(theta, jnp.float32), arrays, device.g_min, device.g_max)
        return float(value), np.asarray(grad, float)

    bounds = [(None, None)] * 6 + [(np.log(0.05), np.log(100.0))]
    result = scipy.optimize.minimize(fun, init, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500})
    return result.x


def increment_z_scores(inc: IncrementData, device: PCMDevice) -> np.ndarray:
    """Standardised residuals of pairs far from the clip bounds (≈ N(0, 1) if the model fits)."""
    mu = inc.g_before + np.asarray(device.set_increment_mean(inc.g_before, inc.pulse))
    sd = np.sqrt(np.asarray(device.set_increment_std(inc.g_before, inc.pulse)) ** 2 + inc.var_obs)
    inside = (mu - 3 * sd > device.g_min) & (mu + 3 * sd < device.g_max)
    return ((inc.g_after - mu) / sd)[inside]


def drift_groups(data: Measurements, groups: GroupFit, t0: float) -> np.ndarray:
    """Groups whose ν̂ measures drift: own ν, ≥ 2 distinct read times after t0, Ĝ_p ≥ 1 µS."""
    return (
        np.isfinite(groups.cov[:, 1, 1])
        & (distinct_times(data.group, data.t_s, data.n_groups, after=t0) >= 2)
        & (groups.g_prog >= MIN_G_FOR_NOISE_FIT)
    )


@dataclass
class PointEstimate:
    device: PCMDevice
    constrained: dict[str, str]  # parameter -> "fitted" or the reason it kept the default
    goodness: dict[str, float]


def estimate(data: Measurements, prior: PCMDevice, warm: PointEstimate | None = None) -> PointEstimate:
    """One fit of every constrained parameter; `prior` supplies defaults and starting values."""
    why: dict[str, str] = {k: "fitted" for k in ("read_std_slope", "read_std_intercept")}
    a, b = (warm.device.read_std_slope, warm.device.read_std_intercept) if warm else (prior.read_std_slope, prior.read_std_intercept)
    t0 = warm.device.drift_t0 if warm else None
    nu_pop = warm.device.drift_nu_mean if warm else prior.drift_nu_mean
    for _ in range(2 if warm is None else 1):
        t0 = find_drift_t0(data, a, b, nu_pop, around=t0)
        groups = fit_groups(data, t0, a, b, nu_pop)
        a, b = fit_read_noise(data, groups, (a, b))
        good = drift_groups(data, groups, t0)
        nu_pop = float(groups.nu[good].mean()) if good.sum() >= 10 else nu_pop
    groups = fit_groups(data, t0, a, b, nu_pop)
    good = drift_groups(data, groups, t0)
    t_sorted = np.unique(data.t_s)
    drift_seen = t_sorted.size >= 2 and t0 < t_sorted[-2]
    values: dict[str, float] = {"read_std_slope": a, "read_std_intercept": b}
    if drift_seen and good.sum() >= 10:
        nu_hat = groups.nu[good]
        values["drift_t0"] = t0
        values["drift_nu_mean"] = float(nu_hat.mean())
        values["drift_nu_std"] = float(np.sqrt(max(nu_hat.var() - groups.cov[good, 1, 1].mean(), 0.0)))
        why.update(drift_t0="fitted", drift_nu_mean="fitted", drift_nu_std="fitted")
    else:
        for k in ("drift_t0", "drift_nu_mean", "drift_nu_std"):
            why[k] = "default: no reads late enough after programming to show drift"
    reset = fit_reset(data, values.get("drift_t0", prior.drift_t0), a, b)
    if reset is not None:
        values["reset_mean"], values["reset_std"] = reset
        why.update(reset_mean="fitted", reset_std="fitted")
    else:
        for k in ("reset_mean", "reset_std"):
            why[k] = "default: fewer than 10 pre-drift reads of freshly RESET devices"
    fitted_device = dataclasses.replace(prior, **values, name="fitted")
    inc = increment_pairs(data, groups, fitted_device, reset)
    if len(inc.pulse) >= 20:
        source = warm.device if warm else prior
        init = np.array([getattr(source, k) for k in INCREMENT_PARAMS], float)
        init[-1] = np.log(init[-1])
        theta = fit_increments(inc, fitted_device, init)
        theta[-1] = np.exp(theta[-1])
        fitted_device = dataclasses.replace(fitted_device, **dict(zip(INCREMENT_PARAMS, map(float, theta))))
        why.update({k: "fitted" for k in INCREMENT_PARAMS})
    else:
        why.update({k: "default: fewer than 20 consecutive pulse pairs" for k in INCREMENT_PARAMS})
    for k in ("g_min", "g_max"):
        why[k] = "default: the clip range is a design choice, not fitted"
    sigma = np.maximum(a * groups.fitted + b, _SIGMA_FLOOR)
    use = groups.g_prog[data.group] >= MIN_G_FOR_NOISE_FIT
    z = increment_z_scores(inc, fitted_device)
    goodness = {
        "reads_reduced_chi2": float(np.mean(((data.g_uS - groups.fitted) / sigma)[use] ** 2 * groups.dof_factor[use])),
        "increment_z_mean": float(z.mean()) if z.size else float("nan"),
        "increment_z_std": float(z.std()) if z.size else float("nan"),
        "n_reads": int(data.g_uS.size),
        "n_groups": int(data.n_groups),
        "n_pulse_pairs": int(len(inc.pulse)),
    }
    return PointEstimate(fitted_device, why, goodness)


@dataclass
class FitResult:
    device: PCMDevice
    stderr: dict[str, float]  # bootstrap standard deviation per fitted parameter
    constrained: dict[str, str]
    goodness: dict[str, float]
    n_bootstrap: int

    def to_json(self) -> dict:
        params = {}
        for name, value in self.device.to_dict().items():
            if name == "name":
                continue
            params[name] = {"value": value, "stderr": self.stderr.get(name), "status": self.constrained.get(name, "fitted")}
        return {"device": self.device.name, "parameters": params, "goodness_of_fit": self.goodness, "n_bootstrap": self.n_bootstrap}


def fit_device(
    data: Measurements,
    prior: PCMDevice,
    n_bootstrap: int = 20,
    seed: int = 0,
    name: str = "fitted",
    progress: Callable[[int], None] | None = None,
) -> FitResult:
    """Fit, then bootstrap over devices for standard errors."""
    point = estimate(data, prior)
    rng = np.random.default_rng(seed)
    n_devices = len(data.device_names)
    draws = []
    for i in range(n_bootstrap):
        sample = data.subset(rng.integers(0, n_devices, n_devices))
        draws.append(estimate(sample, prior, warm=point).device.to_dict())
        if progress:
            progress(i + 1)
    stderr = {}
    for key, status in point.constrained.items():
        if status == "fitted" and draws:
            stderr[key] = float(np.std([d[key] for d in draws], ddof=1)) if len(draws) > 1 else float("nan")
    return FitResult(dataclasses.replace(point.device, name=name), stderr, point.constrained, point.goodness, n_bootstrap)
