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
    t_read: float = eqx.field(static=True, default=100.0)  # s after offline programming
    t_prog: float = eqx.field(static=True, default=101.0)
    t_wait: float = eqx.field(static=True, default=50.0)
    quantized_bits: int = eqx.field(static=True, default=2)
    ideal_lr: float = eqx.field(static=True, default=0.05)
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
    key: PRNGKeyArray, state: DeviceState, support: ReadoutLoss, config: MAMLConfig
) -> tuple[DeviceState, Float[Array, "2 hidden"]]:
    """`inner_steps` rounds of blind single pulses on the output pairs; returns the new state and
    the number of pulses each device received."""
    dev = config.device
    pulses = jnp.zeros(state.shape)
    for r in range(config.inner_steps):
        k_read, k_pulse, key = jax.random.split(key, 3)
        g_read = read_layer(k_read, state, config.t_read + r * config.round_period, config)
        grad = support.grad(_pair_weights(g_read, dev, config.scale_out))
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


class ChipWeights(eqx.Module):
    """The weights one task sees on the chip: hidden layers as read for the support (index 0)
    and the query (index 1) phase; the output layer before and after adaptation."""

    w_in: Float[Array, "2 channels hidden1"]
    w_hidden: Float[Array, "2 hidden1 hidden2"]
    w_before: Float[Array, " hidden2"]
    w_after: Float[Array, " hidden2"]
    pulses: Float[Array, ""]
    support: ReadoutLoss
    z_query: Float[Array, "time shots hidden2"]


def adapt_on_chip(params: Conductances, key: PRNGKeyArray, task: TaskBatch, family: AbstractTaskFamily, config: MAMLConfig) -> ChipWeights:
    """Steps 1–4 for one task (fields of `task` without a batch axis)."""
    dev = config.device
    keys = jax.random.split(key, 8)
    g_in, g_hidden, g_out = (program_offline(k, g, config) for k, g in zip(keys[:3], (params.g_in, params.g_hidden, params.g_out)))
    states = [dev.programmed_state(k, g, 0.0) for k, g in zip(keys[3:6], (g_in, g_hidden, g_out))]
    hidden_keys = jax.random.split(keys[6], 4)
    t_phase = (config.t_read, config.t_query)
    w_in = jnp.stack([_pair_weights(read_layer(hidden_keys[i], states[0], t_phase[i], config), dev, config.scale_in) for i in range(2)])
    w_hid = jnp.stack([_pair_weights(read_layer(hidden_keys[2 + i], states[1], t_phase[i], config), dev, config.scale_hidden) for i in range(2)])
    x = jnp.stack([family.encode(task.x_support), family.encode(task.x_query)])
    z = jax.vmap(readout_traces, in_axes=(None, 0, 0, 0))(config.lif, w_in, w_hid, x)  # (2, T, K, H)
    support = ReadoutLoss(z[0], task.y_support)
    k_before, k_inner, k_after = jax.random.split(keys[7], 3)
    w_before = _pair_weights(read_layer(k_before, states[2], config.t_read, config), dev, config.scale_out)
    if config.mode == "ideal":
        w_after = w_before - config.ideal_lr * support.grad(w_before)
        pulses = jnp.zeros(())
    elif config.mode == "no-adapt":
        w_after = _pair_weights(read_layer(k_after, states[2], config.t_query, config), dev, config.scale_out)
        pulses = jnp.zeros(())
    else:
        new_state, pulse_count = inner_update(k_inner, states[2], support, config)
        w_after = _pair_weights(read_layer(k_after, new_state, config.t_query, config), dev, config.scale_out)
        pulses = pulse_count.sum()
    return ChipWeights(w_in, w_hid, w_before, w_after, pulses, support, z[1])


def task_result(params: Conductances, key: PRNGKeyArray, task: TaskBatch, family: AbstractTaskFamily, config: MAMLConfig) -> TaskResult:
    chip = adapt_on_chip(params, key, task, family, config)
    query = ReadoutLoss(chip.z_query, task.y_query)
    query_last = ReadoutLoss(chip.z_query[-1:], task.y_query)
    return TaskResult(query(chip.w_before), query(chip.w_after), query_last(chip.w_before), query_last(chip.w_after), chip.pulses)


def predict(params: Conductances, key: PRNGKeyArray, task: TaskBatch, family: AbstractTaskFamily, config: MAMLConfig, x: Float[Array, "points in"]):
    """Time-averaged readout at inputs x before and after adaptation, with the same noise draws
    as `task_result` for this key (for plots)."""
    chip = adapt_on_chip(params, key, task, family, config)
    z = readout_traces(config.lif, chip.w_in[1], chip.w_hidden[1], family.encode(x)).mean(0)
    return z @ chip.w_before, z @ chip.w_after


def batch_results(params: Conductances, key: PRNGKeyArray, tasks: TaskBatch, family: AbstractTaskFamily, config: MAMLConfig) -> TaskResult:
    """`task_result` over a batch of tasks, each with its own key (its own noise)."""
    keys = jax.random.split(key, tasks.y_query.shape[0])
    return jax.vmap(task_result, in_axes=(None, 0, 0, None, None))(params, keys, tasks, family, config)


def outer_loss(params: Conductances, key: PRNGKeyArray, tasks: TaskBatch, family: AbstractTaskFamily, config: MAMLConfig):
    """Mean query loss after adaptation over the batch (the MAML objective), with the results."""
    results = batch_results(params, key, tasks, family, config)
    return jnp.mean(results.loss_after), results
