"""The chip after training: deploy a run's conductances, adapt on chip, evaluate under drift.

Times on the deployed chip are seconds since the end of deployment (t = 0). The deployed array
holds every device of every layer (pairs on axis 0) and a reference read taken at t = 0 for
global drift compensation: one scalar per layer, α_l(t) = mean|W_ref p| / mean|W_t p| for a fixed
probe input p, as analog-AI toolkits do (IBM aihwkit's global drift compensation).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .device import DeviceState
from .maml import ChipState, Conductances, MAMLConfig, TaskResult, _pair_weights, adapt_chips, grid_readout, query_losses
from .program import ProgramResult, single_shot, write_verify
from .runs import atomic_write_bytes
from .tasks import AbstractTaskFamily, TaskBatch

LAYERS = ("g_in", "g_hidden", "g_out")
#: Energy of one SET pulse, J: the order of magnitude reported for PCM SET pulses (~10 pJ).
SET_PULSE_ENERGY_J = 10e-12


class DeployedArray(eqx.Module):
    """Every device of a deployed network; t = 0 is the end of deployment."""

    g_in: DeviceState  # (2, channels, hidden1)
    g_hidden: DeviceState  # (2, hidden1, hidden2)
    g_out: DeviceState  # (2, hidden2)
    reference: Float[Array, "3"]  # mean|W p| per layer at the reference read (t = 0)

    def layers(self) -> tuple[DeviceState, DeviceState, DeviceState]:
        return self.g_in, self.g_hidden, self.g_out


def layer_scales(config: MAMLConfig) -> tuple[float, float, float]:
    return config.scale_in, config.scale_hidden, config.scale_out


def probe_response(weights: tuple[Array, Array, Array]) -> Float[Array, "3"]:
    """mean|W p| per layer, p = a fixed ±1 probe (the same for every read)."""
    out = []
    for i, w in enumerate(weights):
        w2 = w.reshape(w.shape[0], -1) if w.ndim > 1 else w[:, None]
        probe = jnp.where(jax.random.bernoulli(jax.random.key(1000 + i), 0.5, (w2.shape[0],)), 1.0, -1.0)
        out.append(jnp.mean(jnp.abs(probe @ w2)))
    return jnp.stack(out)


def read_weights(key: PRNGKeyArray, array: DeployedArray, t: float | Array, config: MAMLConfig):
    """Weights of all layers from one read of the chip at time t (s since deployment)."""
    keys = jax.random.split(key, 3)
    return tuple(
        _pair_weights(config.device.read(k, s, t), config.device, scale)
        for k, s, scale in zip(keys, array.layers(), layer_scales(config))
    )


@dataclasses.dataclass
class DeployReport:
    method: str
    n_devices: int
    tolerance_uS: float
    max_pulses: int
    rms_error_uS: float
    max_error_uS: float
    rms_weight_error: float  # per layer scale, pooled: error/(g_max − g_min)·scale
    max_weight_error: float
    fraction_within_tolerance: float
    pulses_mean: float
    pulses_p50: float
    pulses_p99: float
    pulses_max: int
    devices_at_budget: int
    deploy_time_s: float
    devices_per_s: float


def deploy(
    key: PRNGKeyArray,
    params: Conductances,
    config: MAMLConfig,
    method: str = "write-verify",
    tolerance: float = 0.5,
    max_pulses: int = 100,
) -> tuple[DeployedArray, DeployReport, dict]:
    """Program every device of every layer to the trained conductances; all layers at once."""
    import time

    dev = config.device
    targets = [getattr(params, name) for name in LAYERS]
    flat = jnp.concatenate([t.ravel() for t in targets])
    k_prog, k_ref = jax.random.split(key)
    if method == "write-verify":
        program = jax.jit(lambda k, g: write_verify(k, dev, g, tolerance, max_pulses))
    elif method == "single-shot":
        program = jax.jit(lambda k, g: single_shot(k, dev, g))
    else:
        raise ValueError(f"unknown programming method {method!r}")
    compiled = program.lower(k_prog, flat).compile()  # timed without compilation
    t0 = time.perf_counter()
    result: ProgramResult = compiled(k_prog, flat)
    jax.block_until_ready(result.state.g_prog)
    elapsed = time.perf_counter() - t0
    # Deployment ends at t_end; shift every clock so that this is t = 0.
    shifted = DeviceState(result.state.g_prog, result.state.t_prog - result.t_end, result.state.nu, result.state.n_set)
    states, start = [], 0
    for t in targets:
        states.append(jax.tree.map(lambda a: a[start : start + t.size].reshape(t.shape), shifted))
        start += t.size
    unreferenced = DeployedArray(*states, reference=jnp.ones(3))
    array = DeployedArray(*states, reference=probe_response(read_weights(k_ref, unreferenced, 0.0, config)))
    error = np.asarray(result.state.g_prog - flat)
    scales = np.concatenate([np.full(t.size, s) for t, s in zip(targets, layer_scales(config))])
    w_err = error / (dev.g_max - dev.g_min) * scales
    pulses = np.asarray(result.pulses)
    report = DeployReport(
        method=method, n_devices=int(flat.size), tolerance_uS=tolerance, max_pulses=max_pulses,
        rms_error_uS=float(np.sqrt(np.mean(error**2))), max_error_uS=float(np.abs(error).max()),
        rms_weight_error=float(np.sqrt(np.mean(w_err**2))), max_weight_error=float(np.abs(w_err).max()),
        fraction_within_tolerance=float(np.mean(np.abs(error) <= tolerance)),
        pulses_mean=float(pulses.mean()), pulses_p50=float(np.percentile(pulses, 50)),
        pulses_p99=float(np.percentile(pulses, 99)), pulses_max=int(pulses.max()),
        devices_at_budget=int(np.sum(pulses >= max_pulses)) if method == "write-verify" else 0,
        deploy_time_s=elapsed, devices_per_s=float(flat.size / elapsed),
    )
    arrays = {"target": np.asarray(flat), "programmed": np.asarray(result.state.g_prog), "pulses": pulses}
    return array, report, arrays


def save_array(path: Path, array: DeployedArray) -> None:
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def array_like(params: Conductances) -> DeployedArray:
    def state(g):
        return DeviceState(jnp.zeros(g.shape), jnp.zeros(g.shape), jnp.zeros(g.shape), jnp.zeros(g.shape, jnp.int32))

    return DeployedArray(*(state(getattr(params, n)) for n in LAYERS), reference=jnp.zeros(3))


def load_array(path: Path, params: Conductances) -> DeployedArray:
    with open(path, "rb") as fh:
        return eqx.tree_deserialise_leaves(io.BytesIO(fh.read()), array_like(params))


class ChipResult(eqx.Module):
    loss_before: Float[Array, " tasks"]  # query MSE at time t, no adaptation (all time steps)
    loss_after: Float[Array, " tasks"]  # after the pulse rounds (equal to before when adapt=False)
    loss_before_last: Float[Array, " tasks"]  # the same at the last time step only
    loss_after_last: Float[Array, " tasks"]
    pulses: Float[Array, " tasks"]  # SET pulses spent
    devices_pulsed: Float[Array, " tasks"]
    out_state: DeviceState  # the output layer afterwards, per task


def chip_config(config: MAMLConfig, t: float | Array, pulses: int, adapt: bool) -> MAMLConfig:
    """The MAML configuration with its clock moved to time t on the deployed chip: read at t,
    pulse rounds at t + 1 s (+ Δ per round), query read `t_wait` after the last round."""
    t = jnp.asarray(t, jnp.float32)
    return dataclasses.replace(config, mode="pcm" if adapt else "no-adapt", inner_steps=max(pulses, 1), t_read=t, t_prog=t + 1.0)


def _on_chip(key, array: DeployedArray, tasks: TaskBatch, family, config: MAMLConfig, t, adapt: bool, pulses: int, compensate: bool):
    cfg = chip_config(config, t, pulses, adapt and pulses > 0)
    n = tasks.y_query.shape[0]

    def one_chip(k):
        k_s, k_q, k_c, k_out = jax.random.split(k, 4)
        w_s, w_q = read_weights(k_s, array, cfg.t_read, cfg), read_weights(k_q, array, cfg.t_query, cfg)
        alpha = array.reference / probe_response(read_weights(k_c, array, cfg.t_read, cfg)) if compensate else jnp.ones(3)
        w_in = jnp.stack([w_s[0], w_q[0]]) * alpha[0]
        w_hid = jnp.stack([w_s[1], w_q[1]]) * alpha[1]
        return ChipState(w_in, w_hid, array.g_out, k_out, alpha[2])

    chips = jax.vmap(one_chip)(jax.random.split(key, n))
    z, out = adapt_chips(chips, tasks, family, cfg)
    return cfg, chips, z, out


@eqx.filter_jit
def run_on_chip(
    key: PRNGKeyArray,
    array: DeployedArray,
    tasks: TaskBatch,
    family: AbstractTaskFamily,
    config: MAMLConfig,
    t: float | Array,
    adapt: bool = True,
    pulses: int = 1,
    compensate: bool = False,
) -> ChipResult:
    """Every task on the same deployed chip at time t (s since deployment; each task its own
    read noise): query MSE before and after `pulses` rounds of blind pulses on the output layer
    (if `adapt`), with or without global drift compensation."""
    cfg, _, z, out = _on_chip(key, array, tasks, family, config, t, adapt, pulses, compensate)
    r = query_losses(z, tasks, out)
    if cfg.mode != "pcm":  # not adapted: "after" is the network as read at t
        r = TaskResult(r.loss_before, r.loss_before, r.loss_before_last, r.loss_before_last, r.pulses)
    return ChipResult(r.loss_before, r.loss_after, r.loss_before_last, r.loss_after_last, out.pulses, out.devices_pulsed, out.state)


@eqx.filter_jit
def predict_on_chip(key, array: DeployedArray, tasks: TaskBatch, family, config: MAMLConfig, t, pulses: int, x: Float[Array, "points in"]):
    """Time-averaged readout of the first task at inputs x, before and after adaptation, with
    the same draws as `run_on_chip` for this key (for plots)."""
    _, chips, _, out = _on_chip(key, array, tasks, family, config, t, True, pulses, False)
    before, after = grid_readout(config, chips, out, family, x)
    return before[0], after[0]


def drift_table(exp, array: DeployedArray, hours: list[float], n_tasks: int, pulses: int, seed: int, conditions, progress=None) -> list[dict]:
    """Held-out query MSE at each time for each (name, adapt, compensate) condition.

    The same tasks and the same read-noise keys serve every time and condition, so differences
    come from drift, adaptation and compensation, not from sampling.
    """
    key = jax.random.key(seed)
    tasks = exp.family.sample(jax.random.fold_in(key, 0), n_tasks)
    rows = []
    for h in sorted(hours):
        for name, adapt, compensate in conditions:
            res = run_on_chip(jax.random.fold_in(key, 1), array, tasks, exp.family, exp.config, jnp.asarray(h * 3600.0), adapt, pulses, compensate)
            mse = np.asarray(res.loss_after)
            rows.append({
                "hours": h, "condition": name, "mse": float(mse.mean()),
                "sem": float(mse.std(ddof=1) / np.sqrt(len(mse))) if len(mse) > 1 else float("nan"),
                "mse_last": float(np.asarray(res.loss_after_last).mean()), "pulses_per_task": float(np.asarray(res.pulses).mean()),
            })
            if progress:
                progress()
    return rows
