"""The SET-increment stage shared by the families' fits: the likelihood of the conductance
change of each pulse under the SET law (mean and std linear in G plus a history term), its
minimisation (L-BFGS from afar, Newton near the optimum), and the z-scores the report gives."""

from __future__ import annotations

import math
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import log_ndtr
from jaxtyping import Array, Bool, Float, Int

from pcmmeta.core.devices import AbstractPCMDevice

SIGMA_FLOOR = 1e-3  # µS: no read is exactly noiseless; keeps 1/σ² finite


INCREMENT_PARAMS = (
    "set_mean_slope",
    "set_mean_intercept",
    "set_mean_history",
    "set_std_slope",
    "set_std_intercept",
    "set_std_history",
    "set_history_decay",
)

LOG_TAU_BOUNDS = (math.log(0.05), math.log(100.0))  # set_history_decay, pulses


class IncrementInputs(eqx.Module):
    g_before: Float[Array, " pairs"]  # conductance the pulse acted on, µS
    g_after: Float[Array, " pairs"]  # Ĝ_p after the pulse, µS
    var_obs: Float[Array, " pairs"]  # estimation variance of g_after − g_before, µS²
    pulse: Float[Array, " pairs"]  # index n of the pulse since RESET (1 = first)
    weight: Float[Array, " pairs"]  # bootstrap multiplicity × valid


def log_tau(u):
    lo, hi = LOG_TAU_BOUNDS
    return lo + (hi - lo) * jax.nn.sigmoid(u)


def increment_nll(theta, inc: IncrementInputs, g_min, g_max):
    """Censored-normal likelihood of Ĝ_after: the unclipped conductance is N(G + μ, σ²), clipped
    to [g_min, g_max], and observed with estimation variance v."""
    m_s, m_i, m_h, s_s, s_i, s_h, u = theta
    p = jnp.exp(-inc.pulse / jnp.exp(log_tau(u)))
    g_b, obs, v = inc.g_before, inc.g_after, inc.var_obs
    mu = g_b + m_s * g_b + m_i + m_h * p
    sd = jnp.maximum(s_s * g_b + s_i + s_h * p, SIGMA_FLOOR)
    var = sd**2
    v = jnp.maximum(v, 1e-8)  # µS²: a perfectly known Ĝ makes the posterior width 0

    def log_normal(x, m, variance):
        return -0.5 * (x - m) ** 2 / variance - 0.5 * jnp.log(2 * jnp.pi * variance)

    log_low = log_ndtr((g_min - mu) / sd) + log_normal(obs, g_min, v)
    log_high = log_ndtr((mu - g_max) / sd) + log_normal(obs, g_max, v)
    post_mean = (mu * v + obs * var) / (var + v)
    post_sd = jnp.sqrt(var * v / (var + v))
    inside = jnp.clip(
        jax.scipy.stats.norm.cdf((g_max - post_mean) / post_sd)
        - jax.scipy.stats.norm.cdf((g_min - post_mean) / post_sd),
        1e-30,
        1.0,
    )
    log_mid = log_normal(obs, mu, var + v) + jnp.log(inside)
    ll = jax.scipy.special.logsumexp(jnp.stack([log_low, log_high, log_mid]), axis=0)
    return -jnp.sum(inc.weight * ll) / jnp.maximum(jnp.sum(inc.weight), 1e-12)


def minimise(fun, x0, steps):
    """L-BFGS (optax) for `steps` steps (a traced count: one compiled fit serves every effort)."""
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def body(_, carry):
        x, state = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = solver.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(x, updates), state

    x, _ = jax.lax.fori_loop(0, steps, body, (x0, solver.init(x0)))
    return x


def newton(fun, x0, steps, hessian, use_hessian):
    """Levenberg–Marquardt-style Newton steps: a Hessian made positive definite
    (|eigenvalues|), damped by λ·(largest eigenvalue) for λ in 0, 0.01, 1 (Newton's step, a
    shorter one, a short gradient step); the best is kept if the objective falls.

    With `use_hessian`, every step uses the given `hessian` instead of the exact one (a chord
    method): a bootstrap replica starts at the estimate and its Hessian differs from the
    estimate's by O(1/√devices), so three steps reach its optimum to < 0.1 s.e. at the cost of
    gradients only. Returns the optimum and the last Hessian used.
    """
    damping = jnp.asarray([0.0, 1e-2, 1.0])

    def body(_, carry):
        x, _ = carry
        value, grad = jax.value_and_grad(fun)(x)
        hess = jax.lax.cond(use_hessian, lambda: hessian, lambda: jax.hessian(fun)(x))
        eigval, eigvec = jnp.linalg.eigh(hess)
        eigval = jnp.abs(eigval)
        top = jnp.max(eigval) + 1e-12
        projected = eigvec.T @ grad
        candidates = jax.vmap(lambda lam: eigvec @ (projected / (eigval + lam * top + 1e-9 * top)))(damping)
        trials = jax.vmap(lambda step: fun(x - step))(candidates)
        trials = jnp.where(jnp.isfinite(trials) & jnp.all(jnp.isfinite(candidates), axis=1), trials, jnp.inf)
        best = jnp.argmin(trials)
        return jnp.where(trials[best] < value, x - candidates[best], x), hess

    return jax.lax.fori_loop(0, steps, body, (x0, hessian))


def fit_increments(inc: IncrementInputs, start: dict, g_min, g_max, effort, hessian) -> tuple[dict, Array]:
    """ML estimate of the seven SET-increment parameters (history decay through a bounded
    logit) and the Hessian of the mean negative log-likelihood in those coordinates."""
    lo, hi = LOG_TAU_BOUNDS
    frac = jnp.clip((jnp.log(start["set_history_decay"]) - lo) / (hi - lo), 1e-3, 1 - 1e-3)
    x0 = jnp.stack([start[k] for k in INCREMENT_PARAMS[:-1]] + [jnp.log(frac / (1 - frac))])
    objective = lambda th: increment_nll(th, inc, g_min, g_max)
    x, hessian = newton(
        objective, minimise(objective, x0, effort.lbfgs_steps), effort.newton_steps, hessian, effort.reuse_hessian
    )
    out = dict(zip(INCREMENT_PARAMS[:-1], x[:-1]))
    out["set_history_decay"] = jnp.exp(log_tau(x[-1]))
    return out, hessian


class Effort(eqx.Module):
    """How hard each stage works: more from a cold start, less warm-started near the answer
    (bootstrap replicas). Traced, so one compiled estimator serves both."""

    global_search: Bool[Array, ""]  # t0 over the whole span of read times, else near the start
    group_iterations: Int[Array, ""]
    read_noise_iterations: Int[Array, ""]
    lbfgs_steps: Int[Array, ""]  # increments: L-BFGS from afar, then
    newton_steps: Int[Array, ""]  # Newton near the optimum,
    reuse_hessian: Bool[Array, ""]  # with the estimate's Hessian (replicas) or the exact one

    @staticmethod
    def cold() -> "Effort":
        return Effort(*map(jnp.asarray, (True, 8, 30, 60, 3, False)))

    @staticmethod
    def refine() -> "Effort":
        return Effort(*map(jnp.asarray, (False, 3, 30, 60, 3, False)))

    @staticmethod
    def replica() -> "Effort":
        return Effort(*map(jnp.asarray, (False, 3, 10, 0, 3, True)))


def shrink_to_pulse_population(g, var, weight, k, seg, xp):
    """Regression calibration of estimated conductances g (µS, estimation variance var): each
    replaced by its expectation given the weighted population at the same pulse index k,
    mean + λ·(g − mean) with λ = 1 − noise var / total var, where that index has ≥ 10 devices of
    weight > 0. `seg` sums per index; `xp` is numpy or jax.numpy (the same rule in both fitters)."""
    n_k = seg(weight)
    safe_n = xp.maximum(n_k, 1e-12)
    mean_k = seg(weight * g) / safe_n
    spread_k = seg(weight * (g - mean_k[k]) ** 2) / safe_n
    noise_k = seg(weight * var) / safe_n
    shrink_k = xp.where(spread_k > 0, xp.maximum(1.0 - noise_k / xp.where(spread_k > 0, spread_k, 1.0), 0.0), 0.0)
    apply = (weight > 0) & (n_k[k] >= 10)
    return xp.where(apply, mean_k[k] + shrink_k[k] * (g - mean_k[k]), g), xp.where(apply, shrink_k[k] * var, var)


@dataclass
class IncrementData:
    g_before: np.ndarray  # (pairs,) conductance the pulse acted on, µS
    g_after: np.ndarray  # (pairs,) Ĝ_p after the pulse, µS
    var_obs: np.ndarray  # (pairs,) estimation variance of g_after − g_before, µS²
    pulse: np.ndarray  # (pairs,) index n of the pulse since RESET (1 = first)


def increment_arrays(inc: IncrementInputs, n_pairs: int) -> IncrementData:
    return IncrementData(*(np.asarray(x, float)[:n_pairs] for x in (inc.g_before, inc.g_after, inc.var_obs, inc.pulse)))


def increment_z_scores(inc: IncrementData, device: AbstractPCMDevice) -> np.ndarray:
    """Standardised residuals of pairs far from the clip bounds (≈ N(0, 1) if the model fits)."""
    mu = inc.g_before + np.asarray(device.set_increment_mean(inc.g_before, inc.pulse))
    sd = np.sqrt(np.asarray(device.set_increment_std(inc.g_before, inc.pulse)) ** 2 + inc.var_obs)
    inside = (mu - 3 * sd > device.g_min) & (mu + 3 * sd < device.g_max)
    return ((inc.g_after - mu) / sd)[inside]
