"""Differential pairs: a weight is carried by two PCM devices, w = scale·(G⁺ − G⁻)/(g_max − g_min)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from pcmmeta.core.devices import AbstractPCMDevice


def weights_from_conductances(
    g_plus: Float[Array, "..."],
    g_minus: Float[Array, "..."],
    device: AbstractPCMDevice,
    scale: float | Array = 1.0,
) -> Float[Array, "..."]:
    """Weights (dimensionless, in [−scale, scale]) from conductance pairs (µS)."""
    return scale * (g_plus - g_minus) / (device.g_max - device.g_min)


def conductances_from_weights(
    w: Float[Array, "..."], device: AbstractPCMDevice, scale: float | Array = 1.0
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    """Target pairs (G⁺, G⁻) in µS for weights w: one device at g_min, the other carries |w|.

    Weights beyond ±scale are clipped to what the pair can represent.
    """
    span = device.g_max - device.g_min
    w_norm = jnp.clip(w / scale, -1.0, 1.0)
    g_plus = device.g_min + jnp.maximum(w_norm, 0.0) * span
    g_minus = device.g_min + jnp.maximum(-w_norm, 0.0) * span
    return g_plus, g_minus


def pair_weights(
    g: Float[Array, "2 ..."], device: AbstractPCMDevice, scale: float | Array = 1.0
) -> Float[Array, "..."]:
    """Weights of a layer stored as pairs on axis 0: g[0] = G⁺, g[1] = G⁻ (µS)."""
    return weights_from_conductances(g[0], g[1], device, scale)


def layer_keys(key, names: tuple[str, ...]) -> dict:
    """One key per named layer: the key itself for a single layer, else `split(key, n)` in the
    order given. (A fixed convention: the same key gives the same draws per layer.)"""
    import jax

    if len(names) == 1:
        return {names[0]: key}
    return dict(zip(names, jax.random.split(key, len(names))))


def pairs_around(
    w: Float[Array, "..."], device: AbstractPCMDevice, scale: float, g_base: float
) -> Float[Array, "2 ..."]:
    """Pairs [G⁺, G⁻] centred on `g_base` µS that carry weights w: G± = g_base ± ½·w·span/scale,
    clipped to the device's range (an initialisation: both devices start mid-range, so either
    can move)."""
    import jax.numpy as jnp

    dg = 0.5 * w * (device.g_max - device.g_min) / scale
    return device.clip(jnp.stack([g_base + dg, g_base - dg]))
