"""`nandakumar2018`: the PCM model of Nandakumar et al., "A phase-change memory model for
neuromorphic computing", J. Appl. Phys. 124, 152135 (2018). Conductances in µS, times in s.

SET increments whose mean and spread fall with G and are larger for the first pulses after a
RESET (the history term P = exp(−n/τ)); drift G_p·((t − t_p)/t0)^(−ν) after a plateau until
t0, with one ν ~ N(ν̄, σ_ν²) per programming event, independent of G; Gaussian read noise whose
std is linear in the drifted G. Offline programming is ideal (the MAML mode injects its own
programming noise). See docs/device-model.md for the equations and their sources.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from pcmmeta.core import noise
from pcmmeta.core.devices.base import DEVICE_CAPABILITIES, AbstractPCMDevice, DeviceState, drift_factor


# ------------------------------------------------------------------ the SET-increment law
# Written as functions of any device with the `set_*` fields: the joshi2020 family borrows it.
def history(device, n: Int[Array, "..."] | Float[Array, "..."]) -> Float[Array, "..."]:
    """P = exp(−n / set_history_decay) for the n-th SET pulse since RESET."""
    return jnp.exp(-jnp.asarray(n, jnp.float32) / device.set_history_decay)


def increment_mean(device, g: Float[Array, "..."], n: Array) -> Float[Array, "..."]:
    """μ = set_mean_slope·G + set_mean_intercept + set_mean_history·P (µS)."""
    return device.set_mean_slope * g + device.set_mean_intercept + device.set_mean_history * history(device, n)


def increment_std(device, g: Float[Array, "..."], n: Array) -> Float[Array, "..."]:
    """σ = max(0, set_std_slope·G + set_std_intercept + set_std_history·P) (µS)."""
    std = device.set_std_slope * g + device.set_std_intercept + device.set_std_history * history(device, n)
    return jnp.maximum(std, 0.0)


def check_increments(device, where: str) -> None:
    """The SET law's parameters: a spread intercept ≥ 0 and a history decay > 0."""
    if device.set_std_intercept < 0:
        device._refuse(where, "set_std_intercept", "≥ 0")
    if not device.set_history_decay > 0:
        device._refuse(where, "set_history_decay", "> 0")


class Nandakumar2018(AbstractPCMDevice):
    """Parameters of the Nandakumar model (µS and s); see docs/device-model.md."""

    family = "nandakumar2018"
    capabilities = frozenset(DEVICE_CAPABILITIES)

    g_min: float = 0.1  # µS
    g_max: float = 12.0  # µS
    reset_mean: float = 0.1  # µS
    reset_std: float = 0.01  # µS
    set_mean_slope: float = -0.084  # µS per µS
    set_mean_intercept: float = 0.880  # µS
    set_mean_history: float = 1.40  # µS
    set_std_slope: float = 0.091  # µS per µS
    set_std_intercept: float = 0.260  # µS
    set_std_history: float = 2.15  # µS
    set_history_decay: float = 2.6  # pulses
    drift_t0: float = 38.6  # s
    drift_nu_mean: float = 0.04
    drift_nu_std: float = 0.015
    read_std_slope: float = 0.03  # µS per µS
    read_std_intercept: float = 0.13  # µS
    name: str = eqx.field(static=True, default="nandakumar2018")

    # ----------------------------------------------------------------- statistics of one pulse
    def history(self, n: Int[Array, "..."] | Float[Array, "..."]) -> Float[Array, "..."]:
        """P = exp(−n / set_history_decay) for the n-th SET pulse since RESET."""
        return history(self, n)

    def set_increment_mean(self, g: Float[Array, "..."], n: Array) -> Float[Array, "..."]:
        return increment_mean(self, g, n)

    def set_increment_std(self, g: Float[Array, "..."], n: Array) -> Float[Array, "..."]:
        return increment_std(self, g, n)

    def read_std(
        self, g: Float[Array, "..."], elapsed: float | Array | None = None, g_prog: Float[Array, "..."] | None = None
    ) -> Float[Array, "..."]:
        """Std (µS) of one read of a device whose (drifted) conductance is g; the same at any
        time since programming and whatever it was programmed to (`elapsed`, s, and `g_prog`
        are accepted for the interface and ignored)."""
        return jnp.maximum(self.read_std_slope * jnp.asarray(g) + self.read_std_intercept, 0.0)

    @property
    def reset_normal(self) -> tuple[float, float]:
        """A RESET draws N(reset_mean, reset_std²), clipped to the range."""
        return self.reset_mean, self.reset_std

    def draw_nu(
        self, key: PRNGKeyArray, shape: tuple[int, ...], g: Float[Array, "..."] | None = None
    ) -> Float[Array, "..."]:
        """Drift exponents ν ≥ 0, one per device: max(0, N(ν_mean, ν_std)), whatever G."""
        xi = noise.normal(key, shape)
        return jnp.maximum(self.drift_nu_mean + self.drift_nu_std * xi, 0.0)

    # ----------------------------------------------------------------------------- state
    def initial_state(self, key: PRNGKeyArray, shape: tuple[int, ...], t: float = 0.0) -> DeviceState:
        """Every device freshly RESET at time t: G_p = clip(N(reset_mean, reset_std²))."""
        k_g, k_nu = jax.random.split(key)
        g = self.clip(self.reset_mean + self.reset_std * noise.normal(k_g, shape))
        return DeviceState(
            g_prog=g,
            t_prog=jnp.full(shape, t, jnp.float32),
            nu=self.draw_nu(k_nu, shape),
            n_set=jnp.zeros(shape, jnp.int32),
        )

    def programmed_state(self, key: PRNGKeyArray, g: Float[Array, "..."], t: float | Array = 0.0) -> DeviceState:
        """Devices holding conductance g (µS) right after programming at time t.

        Models an ideal offline programming step: ν is drawn afresh and the SET count is the
        number of mean pulses from RESET that reach g (`pulses_to_reach`), which sets how large
        the next pulse's history term is.
        """
        g = self.clip(g)
        return DeviceState(
            g_prog=g,
            t_prog=jnp.broadcast_to(jnp.asarray(t, jnp.float32), g.shape),
            nu=self.draw_nu(key, g.shape),
            n_set=self.pulses_to_reach(jax.lax.stop_gradient(g)),
        )

    # ------------------------------------------------------------------------ operations
    def drifted(self, state: DeviceState, t: float | Array) -> Float[Array, "..."]:
        """Noiseless conductance at time t (µS): G_p·((t − t_p)/t0)^(−ν) for t − t_p ≥ t0."""
        elapsed = jnp.maximum(t - state.t_prog, self.drift_t0)
        return state.g_prog * drift_factor(elapsed / self.drift_t0, state.nu)

    def read(self, key: PRNGKeyArray, state: DeviceState, t: float | Array) -> Float[Array, "..."]:
        """One noisy read at time t (µS): drift, then Normal read noise, floored at 0."""
        g = self.drifted(state, t)
        return jnp.maximum(g + self.read_std(g) * noise.normal(key, g.shape), 0.0)

    # ------------------------------------------------------------------------ validation
    def check(self, where: str) -> None:
        """Parameters that describe a device at all: each a float32, g_min < g_max, noise and
        drift spreads ≥ 0 (a negative std intercept would make σ(G) negative, floored to 0 unseen)."""
        self._check_range(where)
        for key in (
            "reset_mean",
            "reset_std",
            "set_std_intercept",
            "drift_nu_mean",
            "drift_nu_std",
            "read_std_intercept",
        ):
            if getattr(self, key) < 0:
                self._refuse(where, key, "≥ 0")
        for key in ("drift_t0", "set_history_decay"):
            if not getattr(self, key) > 0:
                self._refuse(where, key, "> 0")
        top = self.read_std_slope * self.g_max + self.read_std_intercept
        if top < 0:
            self._refuse(
                where,
                "read_std_slope",
                f"such that the read noise std is ≥ 0 up to g_max (slope·g_max + intercept = {top:.4g} µS)",
            )
