"""MAML through the chip: offline programming, a blind SET-pulse inner step, the outer loss.

Per task (all noise drawn per task, keys split explicitly):
1. offline programming at t = 0: meta-conductances + N(0, σ_prog²), clipped to [g_min, g_max];
   the noise and the clip pass gradients straight through;
2. at `t_read`: read every layer (drift since programming + read noise);
3. inner step (output layer only): the readout is linear in the output weights, so the support
   loss gradient is closed-form, 2·mean((W·z − y) z); a device gets one SET pulse where the gradient
   passes `pulse_threshold` — G⁺ where the weight should grow, G⁻ where it should shrink —
   with the device model's stochastic increment, no verify. The threshold is a Heaviside with a
   fast-sigmoid surrogate (`snn.spike`) so the outer gradient sees it;
4. at `t_prog + t_wait` (after the last pulse round): read again, query loss;
5. the outer loss is the mean query loss over the task batch.

Round r of `inner_steps` reads at t_read + r·Δ and pulses at t_prog + r·Δ, Δ = t_prog + t_wait −
t_read. Hidden layers are read once for the support set (at t_read) and once for the query set.
Modes: `pcm` (above), `quantized` (no noise or drift, each pulse a fixed step g_max/2^bits),
`ideal` (float weights, one SGD step on the output layer), `no-adapt` (`pcm` without step 3).
"""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .crossbar import weights_from_conductances
from .device import DeviceState, PCMDevice
from .snn import LIFConfig, readout_traces, spike
from .tasks import AbstractTaskFamily, TaskBatch

Mode = Literal["pcm", "quantized", "ideal", "no-adapt"]
MODES: tuple[str, ...] = ("pcm", "quantized", "ideal", "no-adapt")


class Conductances(eqx.Module):
    """Meta-parameters: the offline-programmed differential pairs of every layer, µS.

    Axis 0 of each array is the pair: [G⁺, G⁻].
    """

    g_in: Float[Array, "2 channels hidden1"]
    g_hidden: Float[Array, "2 hidden1 hidden2"]
    g_out: Float[Array, "2 hidden2"]

    def clip(self, device: PCMDevice) -> "Conductances":
        return jax.tree.map(device.clip, self)


class MAMLConfig(eqx.Module):
    device: PCMDevice
    lif: LIFConfig
    mode: str = eqx.field(static=True, default="pcm")
    inner_steps: int = eqx.field(static=True, default=1)
    pulse_threshold: float = eqx.field(static=True, default=0.02)
    mask_surrogate_beta: float = eqx.field(static=True, default=50.0)
    programming_noise: float = eqx.field(static=True, default=0.5)  # µS
    # Times (s after offline programming) are data, not static: the chip commands move the
    # clock to hours after deployment without recompiling.
    t_read: float | Array = 100.0
    t_prog: float | Array = 101.0
    t_wait: float | Array = 50.0
    quantized_bits: int = eqx.field(static=True, default=2)
    ideal_lr: float = eqx.field(static=True, default=0.3)
    scale_in: float = eqx.field(static=True, default=5.0)
    scale_hidden: float = eqx.field(static=True, default=1.0)
    scale_out: float = eqx.field(static=True, default=1.0)

    @property
    def noisy(self) -> bool:
        return self.mode in ("pcm", "no-adapt")

    @property
    def round_period(self) -> float:
        return self.t_prog + self.t_wait - self.t_read

    @property
    def t_query(self) -> float:
        return self.t_prog + (self.inner_steps - 1) * self.round_period + self.t_wait


def init_conductances(key: PRNGKeyArray, channels: int, hidden: tuple[int, int], config: MAMLConfig, g_base: float) -> Conductances:
    """Pairs around `g_base` µS whose weights start at ±gain/√fan_in (uniform)."""
    dev = config.device
    span = dev.g_max - dev.g_min

    def pair(k, shape, scale, fan_in):
        w = jax.random.uniform(k, shape, minval=-1.0, maxval=1.0) * (1.0 / jnp.sqrt(fan_in))
        dg = 0.5 * w * span / scale
        return dev.clip(jnp.stack([g_base + dg, g_base - dg]))

    k1, k2, k3 = jax.random.split(key, 3)
    return Conductances(
        g_in=pair(k1, (channels, hidden[0]), config.scale_in, 1.0),
        g_hidden=pair(k2, (hidden[0], hidden[1]), config.scale_hidden, hidden[0] / 4.0),
        g_out=pair(k3, (hidden[1],), config.scale_out, hidden[1]),
    )


def _straight_through(forward: Array, identity: Array) -> Array:
    """Value of `forward`, gradient of `identity`."""
    return identity + jax.lax.stop_gradient(forward - identity)


def program_offline(key: PRNGKeyArray, g: Float[Array, "..."], config: MAMLConfig) -> Float[Array, "..."]:
    """Offline programming: injected Normal noise and the clip, straight-through."""
    dev = config.device
    if config.mode == "ideal":
        return g
    noise = config.programming_noise * jax.random.normal(key, g.shape) if config.noisy else 0.0
    return _straight_through(dev.clip(g + noise), g)


def read_layer(key: PRNGKeyArray, state: DeviceState, t: float, config: MAMLConfig) -> Float[Array, "..."]:
    if config.noisy:
        return config.device.read(key, state, t)
    return state.g_prog  # quantized and ideal: no drift, no read noise


def _pair_weights(g: Float[Array, "2 ..."], device: PCMDevice, scale: float) -> Float[Array, "..."]:
    return weights_from_conductances(g[0], g[1], device, scale)


class ReadoutLoss(eqx.Module):
    """MSE of the readout y_t = W·z_t against targets held over time, as a function of the
    output weights W, averaged over samples and time steps. Linear in W inside the square, so
    its gradient is closed-form: 2·mean((W·z − y) z)."""

    z: Float[Array, "time samples hidden"]
    y: Float[Array, " samples"]

    def residual(self, w: Float[Array, " hidden"]) -> Float[Array, "time samples"]:
        return self.z @ w - self.y

    def __call__(self, w: Float[Array, " hidden"]) -> Float[Array, ""]:
        return jnp.mean(self.residual(w) ** 2)

    def grad(self, w: Float[Array, " hidden"]) -> Float[Array, " hidden"]:
        r = self.residual(w)
        return 2.0 * jnp.einsum("ts,tsh->h", r, self.z) / r.size


def _soft_pulse(state: DeviceState, outcome: DeviceState, mask: Float[Array, "..."]) -> DeviceState:
    """Pulsed where mask = 1: exact forward; the gradient reaches the mask through g_prog."""
    hard = mask > 0.5
    return DeviceState(
        g_prog=state.g_prog + mask * (outcome.g_prog - state.g_prog),
        t_prog=jnp.where(hard, outcome.t_prog, state.t_prog),
        nu=jnp.where(hard, outcome.nu, state.nu),
        n_set=jnp.where(hard, outcome.n_set, state.n_set),
    )


def pulse_masks(grad: Float[Array, " hidden"], config: MAMLConfig) -> Float[Array, "2 hidden"]:
    """[pulse G⁺ (weight should grow), pulse G⁻ (should shrink)], 0/1 with surrogate gradients."""
    thr, beta = config.pulse_threshold, config.mask_surrogate_beta
    return jnp.stack([spike(-grad - thr, beta), spike(grad - thr, beta)])


def inner_update(
    key: PRNGKeyArray, state: DeviceState, support: ReadoutLoss, config: MAMLConfig, out_scale: Array | float = 1.0
) -> tuple[DeviceState, Float[Array, "2 hidden"]]:
    """`inner_steps` rounds of blind single pulses on the output pairs; returns the new state and
    the number of pulses each device received."""
    dev = config.device
    pulses = jnp.zeros(state.shape)
    for r in range(config.inner_steps):
        k_read, k_pulse, key = jax.random.split(key, 3)
        g_read = read_layer(k_read, state, config.t_read + r * config.round_period, config)
        grad = support.grad(_pair_weights(g_read, dev, config.scale_out * out_scale))
        mask = pulse_masks(grad, config)
        t_pulse = config.t_prog + r * config.round_period
        if config.mode == "quantized":
            step = dev.g_max / 2**config.quantized_bits
            outcome = DeviceState(dev.clip(state.g_prog + step), jnp.full(state.shape, t_pulse), state.nu, state.n_set + 1)
        else:
            outcome = dev.set_pulse_outcome(k_pulse, state, t_pulse)
        state = _soft_pulse(state, outcome, mask)
        pulses = pulses + jax.lax.stop_gradient(mask)
    return state, pulses


class TaskResult(eqx.Module):
    loss_before: Float[Array, ""]  # query MSE with the weights read before adaptation
    loss_after: Float[Array, ""]  # query MSE after the inner update (all time steps)
    loss_before_last: Float[Array, ""]  # same, readout at the last time step only
    loss_after_last: Float[Array, ""]
    pulses: Float[Array, ""]  # SET pulses applied to the output layer


class ChipState(eqx.Module):
    """One task's chip after offline programming: the hidden layers as read for the support
    (index 0) and the query (index 1) phase, and the output layer's devices."""

    w_in: Float[Array, "2 channels hidden1"]
    w_hidden: Float[Array, "2 hidden1 hidden2"]
    out: DeviceState  # output-layer pairs, shape (2, hidden2)
    key: PRNGKeyArray  # for the output layer's reads and pulses
    out_scale: Float[Array, ""] | float = 1.0  # drift compensation of the output layer (chip.py)


def program_and_read_hidden(params: Conductances, key: PRNGKeyArray, config: MAMLConfig) -> ChipState:
    """Steps 1–2 for one task: program offline at t = 0, read the hidden layers."""
    dev = config.device
    keys = jax.random.split(key, 8)
    g_in, g_hidden, g_out = (program_offline(k, g, config) for k, g in zip(keys[:3], (params.g_in, params.g_hidden, params.g_out)))
    state_in, state_hidden, state_out = (dev.programmed_state(k, g, 0.0) for k, g in zip(keys[3:6], (g_in, g_hidden, g_out)))
    hidden_keys = jax.random.split(keys[6], 4)
    t_phase = (config.t_read, config.t_query)
    w_in = jnp.stack([_pair_weights(read_layer(hidden_keys[i], state_in, t_phase[i], config), dev, config.scale_in) for i in range(2)])
    w_hid = jnp.stack([_pair_weights(read_layer(hidden_keys[2 + i], state_hidden, t_phase[i], config), dev, config.scale_hidden) for i in range(2)])
    return ChipState(w_in, w_hid, state_out, keys[7], jnp.ones(()))


class OutputWeights(eqx.Module):
    before: Float[Array, " hidden2"]  # read at t_read
    after: Float[Array, " hidden2"]  # read at t_query, after the inner update
    pulses: Float[Array, ""]  # SET pulses applied
    devices_pulsed: Float[Array, ""]  # devices that received at least one
    state: DeviceState  # the output layer's devices afterwards


def adapt_output(chip: ChipState, support: ReadoutLoss, config: MAMLConfig) -> OutputWeights:
    """Steps 2–4 on the output layer of one task: read, blind pulses, read again."""
    dev = config.device
    k_before, k_inner, k_after = jax.random.split(chip.key, 3)
    scale = config.scale_out * chip.out_scale
    w_before = _pair_weights(read_layer(k_before, chip.out, config.t_read, config), dev, scale)
    none = jnp.zeros(())
    if config.mode == "ideal":
        return OutputWeights(w_before, w_before - config.ideal_lr * support.grad(w_before), none, none, chip.out)
    if config.mode == "no-adapt":
        w_after = _pair_weights(read_layer(k_after, chip.out, config.t_query, config), dev, scale)
        return OutputWeights(w_before, w_after, none, none, chip.out)
    new_state, pulse_count = inner_update(k_inner, chip.out, support, config, chip.out_scale)
    w_after = _pair_weights(read_layer(k_after, new_state, config.t_query, config), dev, scale)
    return OutputWeights(w_before, w_after, pulse_count.sum(), (pulse_count > 0).sum().astype(jnp.float32), new_state)


def batched_traces(config: MAMLConfig, chips: ChipState, x: Float[Array, "tasks 2 shots channels"]) -> Float[Array, "time tasks 2 shots hidden2"]:
    """Readout traces of every task's support (phase 0) and query (phase 1) inputs, time-major."""
    return jax.vmap(jax.vmap(readout_traces, (None, 0, 0, 0), 1), (None, 0, 0, 0), 1)(config.lif, chips.w_in, chips.w_hidden, x)


def adapt_chips(chips: ChipState, tasks: TaskBatch, family: AbstractTaskFamily, config: MAMLConfig):
    """Traces of every task's support and query inputs on its chip, and its adapted output layer."""
    x = jnp.stack([family.encode(tasks.x_support), family.encode(tasks.x_query)], axis=1)
    z = batched_traces(config, chips, x)
    supports = ReadoutLoss(jnp.moveaxis(z[:, :, 0], 1, 0), tasks.y_support)  # batch axis first
    return z, jax.vmap(adapt_output, in_axes=(0, 0, None))(chips, supports, config)


def batch_chips(params: Conductances, key: PRNGKeyArray, tasks: TaskBatch, family: AbstractTaskFamily, config: MAMLConfig):
    """Per-task chips (each task its own noise), traces, and adapted output weights."""
    n = tasks.y_query.shape[0]
    chips = jax.vmap(program_and_read_hidden, in_axes=(None, 0, None))(params, jax.random.split(key, n), config)
    z, outputs = adapt_chips(chips, tasks, family, config)
    return chips, z, outputs


def query_losses(z: Float[Array, "time tasks 2 shots hidden2"], tasks: TaskBatch, out: OutputWeights) -> TaskResult:
    """Per-task query MSE (all time steps and the last) with the output weights before and after."""
    z_query = jnp.moveaxis(z[:, :, 1], 1, 0)  # (tasks, time, shots, hidden)

    def losses(z_q, y_q, o):
        query, query_last = ReadoutLoss(z_q, y_q), ReadoutLoss(z_q[-1:], y_q)
        return TaskResult(query(o.before), query(o.after), query_last(o.before), query_last(o.after), o.pulses)

    return jax.vmap(losses)(z_query, tasks.y_query, out)


def batch_results(params: Conductances, key: PRNGKeyArray, tasks: TaskBatch, family: AbstractTaskFamily, config: MAMLConfig) -> TaskResult:
    """Steps 1–4 for a batch of tasks; per-task query losses before and after adaptation."""
    _, z, out = batch_chips(params, key, tasks, family, config)
    return query_losses(z, tasks, out)


def outer_loss(params: Conductances, key: PRNGKeyArray, tasks: TaskBatch, family: AbstractTaskFamily, config: MAMLConfig):
    """Mean query loss after adaptation over the batch (the MAML objective), with the results."""
    results = batch_results(params, key, tasks, family, config)
    return jnp.mean(results.loss_after), results


def grid_readout(config: MAMLConfig, chips: ChipState, out: OutputWeights, family: AbstractTaskFamily, x: Float[Array, "points in"]):
    """Time-averaged readout of every task at inputs x (query-phase hidden weights), with the
    output weights before and after adaptation: two (tasks, points) arrays, for plots."""
    encoded = family.encode(x)
    grid = jnp.broadcast_to(encoded, (out.before.shape[0], *encoded.shape))
    z = jax.vmap(readout_traces, (None, 0, 0, 0))(config.lif, chips.w_in[:, 1], chips.w_hidden[:, 1], grid).mean(1)
    return jnp.einsum("nph,nh->np", z, out.before), jnp.einsum("nph,nh->np", z, out.after)


def predict(params: Conductances, key: PRNGKeyArray, tasks: TaskBatch, family: AbstractTaskFamily, config: MAMLConfig, x: Float[Array, "points in"]):
    """`grid_readout` with the same noise draws as `batch_results` for this key."""
    chips, _, out = batch_chips(params, key, tasks, family, config)
    return grid_readout(config, chips, out, family, x)
