"""`joshi2020`: the PCM statistics of IBM's analog-AI toolkit (aihwkit's `PCMLikeNoiseModel`,
after Joshi et al., "Accurate deep neural network inference using computational phase-change
memory", Nat. Commun. 11, 2473, 2020), with a SET-pulse law so that devices can be pulsed.

Conductances in µS, times in s; g = G_T/g_max is the target relative to the range.
- Programming after write-verify: G_p = max(g_min, G_T + σ_p(G_T)·ξ),
  σ_p = c0 + c1·g + c2·g² (µS); no upper clip (as aihwkit).
- Drift exponent per programming event, keyed by the conductance programmed (the target of
  offline programming, the new conductance after a SET pulse): ν = |μ_ν + σ_ν·ξ| with
  μ_ν = clip(a_μ·ln g + b_μ, μ_min, μ_max), σ_ν = clip(a_σ·ln g + b_σ, σ_min, σ_max),
  g clamped at 1e−7.
- Drift from the end of programming, no plateau: G(t) = G_p·((t − t_p + t0)/t0)^(−ν).
- 1/f read noise, a fresh draw at every read, growing with log time:
  G_read = max(0, G(t) + |G(t)|·Q_s·sqrt(ln((t − t_p + t0 + t_r)/(2 t_r)))·ξ),
  Q_s = min(q / max((G_p/g_max)^e, 1e−3), Q_max), evaluated at the programmed G_p.
- RESET: programming to the target g_min (aihwkit programs a zero weight so): with g_min = 0,
  half the devices sit at 0 µS, the mean is σ_p(0)/√(2π) = 0.105 µS.
- SET pulses (aihwkit has no pulse model): Nandakumar et al.'s increment law (`nandakumar2018`,
  measured on IBM's doped-GST mushroom cells, the same technology as Joshi et al.'s chip) with
  its µS parameters scaled by 25/12, the ratio of the two conductance ranges; the slopes are
  dimensionless and unchanged. Reasons and alternatives: docs/device-model.md.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core import noise
from pcmmeta.core.devices import nandakumar as law
from pcmmeta.core.devices.base import DEVICE_CAPABILITIES, AbstractPCMDevice, DeviceState, drift_factor

#: aihwkit's floor of g = G/g_max before its logarithm (drift exponent).
G_RELATIVE_FLOOR = 1e-7
#: aihwkit's floor of (G_p/g_max)^e in the read-noise amplitude.
Q_DENOMINATOR_FLOOR = 1e-3
#: Scale of the SET-law parameters borrowed from nandakumar2018: 25 µS / 12 µS.
SET_LAW_SCALE = 25.0 / 12.0


def clipped_log_law(slope, intercept, low, high, log_g, xp: Any = jnp):
    """clip(slope·ln(g/g_max) + intercept, low, high): the form of both drift-exponent laws."""
    return xp.clip(slope * log_g + intercept, low, high)


def log_relative_g(device: "Joshi2020", g, xp: Any = jnp):
    """ln(|g|/g_max), floored at ln(`G_RELATIVE_FLOOR`). `xp`: `jax.numpy` for the simulation,
    `numpy` (float64) for the fit: the same law in both."""
    return xp.log(xp.maximum(xp.abs(g) / device.g_max, G_RELATIVE_FLOOR))


def nu_mean_law(device: "Joshi2020", g, xp: Any = jnp):
    """μ_ν at conductance g (µS): clip(a_μ·ln(g/g_max) + b_μ, μ_min, μ_max)."""
    log_g = log_relative_g(device, g, xp)
    return clipped_log_law(
        device.nu_mean_slope, device.nu_mean_intercept, device.nu_mean_min, device.nu_mean_max, log_g, xp
    )


def nu_std_law(device: "Joshi2020", g, xp: Any = jnp):
    """σ_ν at conductance g (µS): clip(a_σ·ln(g/g_max) + b_σ, σ_min, σ_max)."""
    log_g = log_relative_g(device, g, xp)
    return clipped_log_law(
        device.nu_std_slope, device.nu_std_intercept, device.nu_std_min, device.nu_std_max, log_g, xp
    )


def capped_power_law(q, exponent, cap, x, xp: Any = jnp):
    """min(q / max(x^e, 1e−3), cap) at x ≥ 0: the form of the read-noise amplitude."""
    # max(x^e, 1e−3) written as max(x, 1e−3^(1/e))^e: the same value, and no infinite
    # derivative of x^e at x = 0 (0·∞ would make MAML's gradients NaN).
    e = xp.asarray(exponent)
    floor = xp.where(e > 0, Q_DENOMINATOR_FLOOR ** (1.0 / xp.where(e > 0, e, 1.0)), 0.0)
    x = xp.maximum(x, floor)
    # x^e as exp(e·ln x) (`jnp.power` is four times slower on a CPU); x > 0 whenever e > 0,
    # and the tiny floor keeps x^0 = 1 at x = 0.
    x_e = xp.exp(e * xp.log(xp.maximum(x, xp.finfo(x.dtype).tiny)))
    return xp.minimum(q / xp.maximum(x_e, Q_DENOMINATOR_FLOOR), cap)


def read_noise_amplitude_law(device: "Joshi2020", g_prog, xp: Any = jnp):
    """Q_s = min(q / max((|G_p|/g_max)^e, 1e−3), Q_max) (relative) at programmed conductance
    g_prog (µS); `xp` as in `log_relative_g`."""
    return capped_power_law(
        device.read_noise_q, device.read_noise_exponent, device.read_noise_q_max, xp.abs(g_prog) / device.g_max, xp
    )


def log_time_factor_law(device: "Joshi2020", elapsed, xp: Any = jnp):
    """ln((t + t0 + t_r)/(2 t_r)) at `elapsed` = t s since programming: the accumulated 1/f
    noise power, relative; `xp` as in `log_relative_g`."""
    return xp.log((xp.maximum(elapsed, 0.0) + device.drift_t0 + device.t_read) / (2 * device.t_read))


class Joshi2020(AbstractPCMDevice):
    """Parameters of the aihwkit/Joshi model (µS and s); see docs/device-model.md."""

    family = "joshi2020"
    capabilities = frozenset(DEVICE_CAPABILITIES)

    g_min: float = 0.0  # µS
    g_max: float = 25.0  # µS
    prog_noise_c0: float = 0.26348  # µS: σ_p at g = 0
    prog_noise_c1: float = 1.9650  # µS per unit g
    prog_noise_c2: float = -1.1731  # µS per unit g²
    drift_t0: float = 20.0  # s
    nu_mean_slope: float = -0.0155  # per unit ln g
    nu_mean_intercept: float = 0.0244
    nu_mean_min: float = 0.049
    nu_mean_max: float = 0.1
    nu_std_slope: float = -0.0125  # per unit ln g
    nu_std_intercept: float = -0.0059
    nu_std_min: float = 0.008
    nu_std_max: float = 0.045
    read_noise_q: float = 0.0088  # Q_s numerator (relative)
    read_noise_exponent: float = 0.65
    read_noise_q_max: float = 0.2  # cap of Q_s (relative)
    t_read: float = 250e-9  # s, duration of one read (the 1/f noise's lower frequency cut)
    set_mean_slope: float = -0.084  # µS per µS (nandakumar2018's, dimensionless)
    set_mean_intercept: float = 0.880 * SET_LAW_SCALE  # µS
    set_mean_history: float = 1.40 * SET_LAW_SCALE  # µS
    set_std_slope: float = 0.091  # µS per µS
    set_std_intercept: float = 0.260 * SET_LAW_SCALE  # µS
    set_std_history: float = 2.15 * SET_LAW_SCALE  # µS
    set_history_decay: float = 2.6  # pulses
    name: str = eqx.field(static=True, default="joshi2020")

    # ----------------------------------------------------------------- programming and RESET
    def programming_std(self, g_target: Float[Array, "..."]) -> Float[Array, "..."]:
        """σ_p (µS) of a write-verified device with target G_T (µS): c0 + c1·g + c2·g²."""
        g = g_target / self.g_max
        return jnp.maximum(self.prog_noise_c0 + self.prog_noise_c1 * g + self.prog_noise_c2 * g**2, 0.0)

    @property
    def reset_mean(self) -> float | Array:  # a 0-d float32 array: σ_p is computed in JAX
        """Mean of max(g_min, g_min + σ_p(g_min)·ξ) (µS): g_min + σ_p(g_min)/√(2π)."""
        return self.g_min + self.programming_std(self.g_min) / math.sqrt(2 * math.pi)

    @property
    def reset_normal(self) -> tuple[float, float]:
        """A RESET programs the target g_min: N(g_min, σ_p(g_min)²), floored at g_min."""
        return self.g_min, float(self.programming_std(self.g_min))

    def _program(self, key: PRNGKeyArray, target: Float[Array, "..."], t: float | Array, n_set) -> DeviceState:
        k_g, k_nu = jax.random.split(key)
        g = jnp.maximum(target + self.programming_std(target) * noise.normal(k_g, target.shape), self.g_min)
        return DeviceState(
            g_prog=g,
            t_prog=jnp.broadcast_to(jnp.asarray(t, jnp.float32), target.shape),
            nu=self.draw_nu(k_nu, target.shape, target),
            n_set=n_set(g),
        )

    def initial_state(self, key: PRNGKeyArray, shape: tuple[int, ...], t: float = 0.0) -> DeviceState:
        """Every device freshly RESET at time t: programmed to the target g_min."""
        target = jnp.full(shape, self.g_min, jnp.float32)
        return self._program(key, target, t, lambda g: jnp.zeros(shape, jnp.int32))

    def programmed_state(self, key: PRNGKeyArray, g: Float[Array, "..."], t: float | Array = 0.0) -> DeviceState:
        """Devices write-verified to targets g (µS, clipped to the range) at time t: programming
        noise σ_p(G_T), ν keyed by the target, and the SET count of the mean trajectory from
        RESET that reaches the programmed conductance (it sets the next pulse's history term)."""
        target = self.clip(g)
        return self._program(key, target, t, lambda g_p: self.pulses_to_reach(jax.lax.stop_gradient(g_p)))

    # ----------------------------------------------------------------- SET pulses (borrowed law)
    def history(self, n: Array) -> Float[Array, "..."]:
        return law.history(self, n)

    def set_increment_mean(self, g: Float[Array, "..."], n: Array) -> Float[Array, "..."]:
        return law.increment_mean(self, g, n)

    def set_increment_std(self, g: Float[Array, "..."], n: Array) -> Float[Array, "..."]:
        return law.increment_std(self, g, n)

    # ----------------------------------------------------------------- drift
    def nu_mean(self, g: Float[Array, "..."]) -> Float[Array, "..."]:
        """μ_ν at conductance g (µS) (`nu_mean_law`)."""
        return nu_mean_law(self, g)

    def nu_std(self, g: Float[Array, "..."]) -> Float[Array, "..."]:
        """σ_ν at conductance g (µS) (`nu_std_law`)."""
        return nu_std_law(self, g)

    def draw_nu(
        self, key: PRNGKeyArray, shape: tuple[int, ...], g: Float[Array, "..."] | None = None
    ) -> Float[Array, "..."]:
        """ν = |μ_ν(g) + σ_ν(g)·ξ| for devices programmed to g (µS)."""
        if g is None:
            raise TypeError("joshi2020: the drift exponent depends on the programmed conductance: pass g")
        xi = noise.normal(key, shape)
        return jnp.abs(self.nu_mean(g) + self.nu_std(g) * xi)

    def drifted(self, state: DeviceState, t: float | Array) -> Float[Array, "..."]:
        """G_p·((t − t_p + t0)/t0)^(−ν) (µS): drift from the end of programming."""
        elapsed = jnp.maximum(t - state.t_prog, 0.0)
        return state.g_prog * drift_factor((elapsed + self.drift_t0) / self.drift_t0, state.nu)

    # ----------------------------------------------------------------- reads
    def read_noise_amplitude(self, g_prog: Float[Array, "..."]) -> Float[Array, "..."]:
        """Q_s at programmed conductance g_prog (µS) (`read_noise_amplitude_law`)."""
        return read_noise_amplitude_law(self, g_prog)

    def log_time_factor(self, elapsed: float | Array) -> Float[Array, "..."]:
        """The 1/f noise's time factor `elapsed` s after programming (`log_time_factor_law`)."""
        return log_time_factor_law(self, elapsed)

    def read_std(
        self, g: Float[Array, "..."], elapsed: float | Array, g_prog: Float[Array, "..."] | None = None
    ) -> Float[Array, "..."]:
        """Std (µS) of one read of a device at (drifted) conductance g, `elapsed` s after it was
        programmed to g_prog (default: g): |g|·Q_s(g_prog)·sqrt(ln((t + t0 + t_r)/(2 t_r)))."""
        g_prog = g if g_prog is None else g_prog
        return jnp.abs(g) * self.read_noise_amplitude(g_prog) * jnp.sqrt(self.log_time_factor(elapsed))

    def read(self, key: PRNGKeyArray, state: DeviceState, t: float | Array) -> Float[Array, "..."]:
        """One noisy read at time t (µS): drift, then 1/f noise for the time since programming."""
        g = self.drifted(state, t)
        sd = self.read_std(g, t - state.t_prog, state.g_prog)
        return jnp.maximum(g + sd * noise.normal(key, g.shape), 0.0)

    # ----------------------------------------------------------------- validation
    def check(self, where: str) -> None:
        """σ_p ≥ 0 on [0, g_max], ordered and non-negative ν clips, a read shorter than t0."""
        self._check_range(where)
        c0, c1, c2 = self.prog_noise_c0, self.prog_noise_c1, self.prog_noise_c2
        if c0 < 0:
            self._refuse(where, "prog_noise_c0", "≥ 0 (σ_p at G = 0)")
        candidates = [c0, c0 + c1 + c2]  # σ_p at g = 0 and 1, and at the vertex if it lies between
        if c2 > 0 and 0 < -c1 / (2 * c2) < 1:
            candidates.append(c0 - c1 * c1 / (4 * c2))
        lowest = min(candidates)
        if lowest < 0:
            self._refuse(
                where,
                "prog_noise_c1",
                f"such that σ_p = c0 + c1·g + c2·g² is ≥ 0 for g in [0, 1] (lowest {lowest:.4g} µS)",
            )
        for key in ("drift_t0", "t_read"):
            if not getattr(self, key) > 0:
                self._refuse(where, key, "> 0 s")
        if not self.t_read < self.drift_t0:
            self._refuse(
                where,
                "t_read",
                f"below 'parameters.drift_t0' ({self.drift_t0!r} s): the read-noise time factor must be ≥ 0",
            )
        for low, high in (("nu_mean_min", "nu_mean_max"), ("nu_std_min", "nu_std_max")):
            if getattr(self, low) < 0:
                self._refuse(where, low, "≥ 0")
            if not getattr(self, low) <= getattr(self, high):
                self._refuse(where, high, f"≥ 'parameters.{low}' ({getattr(self, low)!r})")
        for key in ("read_noise_q", "read_noise_exponent", "read_noise_q_max"):
            if getattr(self, key) < 0:
                self._refuse(where, key, "≥ 0")
        law.check_increments(self, where)
