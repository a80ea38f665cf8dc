"""Phase-change-memory device model: parameters, per-device state, RESET, SET, drift, read.

The statistical model follows Nandakumar et al., "A phase-change memory model for neuromorphic
computing", J. Appl. Phys. 124, 152135 (2018). Conductances are in µS, times in seconds.
Every operation works on arrays of any shape and is usable under `jax.jit`, `jax.vmap` and
`jax.grad`: noise enters by reparameterisation (G + σ(G)·ξ, ξ ~ N(0, 1)), so gradients flow
through the conductances. Pulse masks are plain boolean selections (`jnp.where`); callers that
need a gradient through a mask (MAML) combine `set_pulse_outcome` with their own estimator.
See docs/device-model.md for the equations and their sources.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import yaml
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .errors import UserInputError
from .fields import FLOAT32_MAX

#: Number of SET pulses tabulated for `PCMDevice.pulses_to_reach`.
_MAX_TABULATED_PULSES = 64


class DeviceState(eqx.Module):
    """Per-device state of an array of PCM devices; every field has the array's shape."""

    g_prog: Float[Array, "..."]  # conductance right after the last programming event, µS
    t_prog: Float[Array, "..."]  # time of the last programming event, s
    nu: Float[Array, "..."]  # drift exponent drawn at the last programming event
    n_set: Int[Array, "..."]  # SET pulses applied since the last RESET

    @property
    def shape(self) -> tuple[int, ...]:
        return self.g_prog.shape


def _where_state(mask: Bool[Array, "..."], new: DeviceState, old: DeviceState) -> DeviceState:
    return jax.tree.map(lambda a, b: jnp.where(mask, a, b), new, old)


class PCMDevice(eqx.Module):
    """Parameters of the PCM model (µS and s). Immutable; see docs/device-model.md."""

    g_min: float = 0.1
    g_max: float = 12.0
    reset_mean: float = 0.1
    reset_std: float = 0.01
    set_mean_slope: float = -0.084
    set_mean_intercept: float = 0.880
    set_mean_history: float = 1.40
    set_std_slope: float = 0.091
    set_std_intercept: float = 0.260
    set_std_history: float = 2.15
    set_history_decay: float = 2.6
    drift_t0: float = 38.6
    drift_nu_mean: float = 0.04
    drift_nu_std: float = 0.015
    read_std_slope: float = 0.03
    read_std_intercept: float = 0.13
    name: str = eqx.field(static=True, default="nandakumar2018")

    # ----------------------------------------------------------------- statistics of one pulse
    def history(self, n: Int[Array, "..."] | Float[Array, "..."]) -> Float[Array, "..."]:
        """P = exp(−n / set_history_decay) for the n-th SET pulse since RESET."""
        return jnp.exp(-jnp.asarray(n, jnp.float32) / self.set_history_decay)

    def set_increment_mean(self, g: Float[Array, "..."], n: Array) -> Float[Array, "..."]:
        """Mean increment (µS) of the n-th SET pulse at conductance g (µS)."""
        return self.set_mean_slope * g + self.set_mean_intercept + self.set_mean_history * self.history(n)

    def set_increment_std(self, g: Float[Array, "..."], n: Array) -> Float[Array, "..."]:
        """Std (µS) of the increment of the n-th SET pulse at conductance g (µS), floored at 0."""
        std = self.set_std_slope * g + self.set_std_intercept + self.set_std_history * self.history(n)
        return jnp.maximum(std, 0.0)

    def read_std(self, g: Float[Array, "..."]) -> Float[Array, "..."]:
        """Std (µS) of one read of a device whose (drifted) conductance is g."""
        return jnp.maximum(self.read_std_slope * g + self.read_std_intercept, 0.0)

    def clip(self, g: Float[Array, "..."]) -> Float[Array, "..."]:
        return jnp.clip(g, self.g_min, self.g_max)

    def draw_nu(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "..."]:
        """Drift exponents ν ≥ 0, one per device: max(0, N(ν_mean, ν_std))."""
        xi = jax.random.normal(key, shape)
        return jnp.maximum(self.drift_nu_mean + self.drift_nu_std * xi, 0.0)

    # ----------------------------------------------------------------------------- state
    def initial_state(self, key: PRNGKeyArray, shape: tuple[int, ...], t: float = 0.0) -> DeviceState:
        """Every device freshly RESET at time t."""
        k_g, k_nu = jax.random.split(key)
        g = self.clip(self.reset_mean + self.reset_std * jax.random.normal(k_g, shape))
        return DeviceState(
            g_prog=g,
            t_prog=jnp.full(shape, t, jnp.float32),
            nu=self.draw_nu(k_nu, shape),
            n_set=jnp.zeros(shape, jnp.int32),
        )

    def programmed_state(
        self, key: PRNGKeyArray, g: Float[Array, "..."], t: float | Array = 0.0
    ) -> DeviceState:
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

    def mean_trajectory(self) -> Float[Array, " pulses"]:
        """Conductance after 0, 1, … mean SET pulses from the mean RESET state (µS)."""

        def step(g, n):
            g_next = self.clip(g + self.set_increment_mean(g, n))
            return g_next, g_next

        g0 = jnp.asarray(self.clip(self.reset_mean), jnp.float32)
        _, gs = jax.lax.scan(step, g0, jnp.arange(1, _MAX_TABULATED_PULSES + 1))
        return jnp.concatenate([g0[None], gs])

    def pulses_to_reach(self, g: Float[Array, "..."]) -> Int[Array, "..."]:
        """Smallest number of mean SET pulses whose mean trajectory reaches g."""
        traj = jax.lax.cummax(self.mean_trajectory())
        n = jnp.searchsorted(traj, g, side="left")
        return jnp.minimum(n, _MAX_TABULATED_PULSES).astype(jnp.int32)

    # ------------------------------------------------------------------------ operations
    def drifted(self, state: DeviceState, t: float | Array) -> Float[Array, "..."]:
        """Noiseless conductance at time t (µS): G_p·((t − t_p)/t0)^(−ν) for t − t_p ≥ t0."""
        elapsed = jnp.maximum(t - state.t_prog, self.drift_t0)
        return state.g_prog * (elapsed / self.drift_t0) ** (-state.nu)

    def read(self, key: PRNGKeyArray, state: DeviceState, t: float | Array) -> Float[Array, "..."]:
        """One noisy read at time t (µS): drift, then Normal read noise, floored at 0."""
        g = self.drifted(state, t)
        return jnp.maximum(g + self.read_std(g) * jax.random.normal(key, g.shape), 0.0)

    def reset(
        self, key: PRNGKeyArray, state: DeviceState, mask: Bool[Array, "..."], t: float | Array
    ) -> DeviceState:
        """RESET the masked devices at time t; the others keep every field."""
        return _where_state(mask, self.initial_state(key, state.shape, t), state)

    def set_pulse_outcome(
        self, key: PRNGKeyArray, state: DeviceState, t: float | Array
    ) -> DeviceState:
        """State of every device if it received one SET pulse at time t.

        The increment acts on the drifted conductance at t and depends on it and on the pulse's
        index since RESET; the new conductance is clipped to [g_min, g_max], the programming
        time becomes t and ν is drawn afresh.
        """
        k_inc, k_nu = jax.random.split(key)
        g_now = self.drifted(state, t)
        n = state.n_set + 1
        inc = self.set_increment_mean(g_now, n) + self.set_increment_std(g_now, n) * jax.random.normal(
            k_inc, g_now.shape
        )
        return DeviceState(
            g_prog=self.clip(g_now + inc),
            t_prog=jnp.broadcast_to(jnp.asarray(t, jnp.float32), g_now.shape),
            nu=self.draw_nu(k_nu, g_now.shape),
            n_set=n,
        )

    def set_pulse(
        self, key: PRNGKeyArray, state: DeviceState, mask: Bool[Array, "..."], t: float | Array
    ) -> DeviceState:
        """One SET pulse at time t to the masked devices; the others keep every field."""
        return _where_state(mask, self.set_pulse_outcome(key, state, t), state)

    # ------------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def save(self, path: str | Path) -> None:
        """Write the parameters as a device YAML file (atomically)."""
        from .runs import atomic_write_text

        body = {"name": self.name, "parameters": {k: float(v) for k, v in self.to_dict().items() if k != "name"}}
        atomic_write_text(Path(path), yaml.safe_dump(body, sort_keys=False))


PARAMETER_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PCMDevice) if f.name != "name")

#: Built-in devices by name.
BUILTIN_DEVICES: dict[str, PCMDevice] = {
    "nandakumar2018": PCMDevice(),
    "nandakumar2018-simplified": PCMDevice(
        set_mean_intercept=0.892,
        set_mean_history=0.0,
        set_std_slope=0.09,
        set_std_intercept=0.575,
        set_std_history=0.0,
        name="nandakumar2018-simplified",
    ),
}
DEFAULT_DEVICE = "nandakumar2018"


def _check_parameters(device: PCMDevice, where: str) -> None:
    """Parameters that describe a device at all: each a float32, g_min < g_max, noise and drift
    spreads ≥ 0 (a negative std intercept would make σ(G) negative, floored to 0 unseen)."""

    def refuse(key: str, rule: str) -> None:
        raise UserInputError(f"{where}: 'parameters.{key}' must be {rule}, got {getattr(device, key)!r}")

    for key in PARAMETER_NAMES:
        if not abs(getattr(device, key)) <= FLOAT32_MAX:
            refuse(key, f"a finite float32 (|value| ≤ {FLOAT32_MAX:.4g})")
    if device.g_min < 0:
        refuse("g_min", "≥ 0 µS")
    if not device.g_min < device.g_max:
        raise UserInputError(f"{where}: 'parameters.g_min' ({device.g_min!r}) must be below 'parameters.g_max' ({device.g_max!r})")
    for key in ("reset_mean", "reset_std", "set_std_intercept", "drift_nu_mean", "drift_nu_std", "read_std_intercept"):
        if getattr(device, key) < 0:
            refuse(key, "≥ 0")
    for key in ("drift_t0", "set_history_decay"):
        if not getattr(device, key) > 0:
            refuse(key, "> 0")
    if device.read_std_slope * device.g_max + device.read_std_intercept < 0:
        refuse("read_std_slope", f"such that the read noise std is ≥ 0 up to g_max (slope·g_max + intercept = {device.read_std_slope * device.g_max + device.read_std_intercept:.4g} µS)")


def load_device(name_or_path: str | Path) -> PCMDevice:
    """A built-in device by name, or a device YAML file written by `fit-device` / `PCMDevice.save`."""
    if str(name_or_path) in BUILTIN_DEVICES:
        return BUILTIN_DEVICES[str(name_or_path)]
    path = Path(name_or_path)
    if not path.exists():
        known = ", ".join(BUILTIN_DEVICES)
        raise UserInputError(f"{path}: no such device file (built-in devices: {known})")
    from .runs import read_yaml

    body = read_yaml(path)
    if not isinstance(body, dict) or not isinstance(body.get("parameters"), dict):
        raise UserInputError(f"{path}: expected a mapping with a 'parameters' mapping")
    params = body["parameters"]
    unknown = sorted(set(params) - set(PARAMETER_NAMES))
    if unknown:
        raise UserInputError(f"{path}: unknown parameter 'parameters.{unknown[0]}'")
    values = {}
    for key in PARAMETER_NAMES:
        if key not in params:
            raise UserInputError(f"{path}: missing parameter 'parameters.{key}'")
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
            raise UserInputError(f"{path}: 'parameters.{key}' must be a finite number, got {value!r}")
        values[key] = float(value)
    device = PCMDevice(**values, name=str(body.get("name", path.stem)))
    _check_parameters(device, str(path))
    return device
