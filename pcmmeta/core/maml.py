"""MAML through the chip, for any network, task family, inner rule and mode.

Per task (all noise drawn per task, keys split explicitly):
1. offline programming at t = 0 of every layer (`mode.program_offline`: for `pcm`, the
   meta-conductances + N(0, σ_prog²), clipped to [g_min, g_max], straight-through; then
   `mode.programmed_state`: the device family's programmed state on the chip, the exact
   targets in the software modes);
2. the body is read twice — at `clock.t_read` for the support set and at `clock.t_query` for
   the query set — and computes each set's features once (only the head adapts);
3. the inner rule adapts the head from the support loss's gradient (`mode.adapt` → the rule's
   chip operations; plain SGD in the `ideal` mode; nothing in `no-adapt`);
4. the head read at `clock.t_query` scores the query set: the family's loss and metrics (the
   loss after adaptation plus the network's regulariser, `head_output_and_penalty`);
5. the outer loss is the mean query loss after adaptation over the task batch.

Keys: a task's key is split into 2L + 2 (L layers, in `network.layer_names` order): L for
offline programming, L for the programmed states' drift exponents, one for the body's reads
(split 2 per body layer: support, query), one for the head (`inner.base.AbstractInnerRule`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.clock import ChipClock
from pcmmeta.core.crossbar import pair_weights
from pcmmeta.core.devices import AbstractPCMDevice, DeviceState
from pcmmeta.core.inner import AbstractInnerRule, HeadAdaptation, HeadChip
from pcmmeta.core.inner.base import SupportSet
from pcmmeta.core.modes import AbstractMode
from pcmmeta.core.networks import AbstractNetwork
from pcmmeta.core.tasks import AbstractTaskFamily, TaskBatch


class MetaConfig(eqx.Module):
    """Everything the bi-level objective needs besides the network and the tasks."""

    device: AbstractPCMDevice
    mode: AbstractMode
    rule: AbstractInnerRule
    clock: ChipClock  # `clock.steps` equals `rule.steps`
    programming_noise: float = eqx.field(static=True, default=0.5)  # µS, std of offline-programming noise
    tasks_per_chip: int = eqx.field(static=True, default=1)  # meta-training: tasks sharing one programmed chip

    def with_clock(self, clock: ChipClock, mode: AbstractMode | None = None) -> "MetaConfig":
        """The same configuration on another schedule (and mode), e.g. hours after deployment."""
        rule = self.rule.with_steps(clock.steps)
        return MetaConfig(
            self.device, self.mode if mode is None else mode, rule, clock, self.programming_noise, self.tasks_per_chip
        )


class ChipState(eqx.Module):
    """One task's chip after offline programming."""

    body: dict[str, Float[Array, "2 ..."]]  # body weights as read for the support (0) and query (1) set
    head: dict[str, DeviceState]  # the head's devices
    key: PRNGKeyArray  # for the head's reads and pulses
    head_scale: dict[str, Float[Array, ""]]  # drift compensation per head layer (1: none)


def program_and_read(network: AbstractNetwork, key: PRNGKeyArray, cfg: MetaConfig) -> ChipState:
    """Steps 1–2 for one task: program every layer offline at t = 0, read the body."""
    dev, mode = cfg.device, cfg.mode
    names = network.layer_names
    n = len(names)
    keys = jax.random.split(key, 2 * n + 2)
    offline = network.offline_layers()
    programmed = {
        name: mode.program_offline(keys[i], offline[name], dev, cfg.programming_noise) for i, name in enumerate(names)
    }
    states = {name: mode.programmed_state(keys[n + i], programmed[name], dev, 0.0) for i, name in enumerate(names)}
    body = network.body
    read_keys = jax.random.split(keys[2 * n], 2 * len(body))
    times = (cfg.clock.t_read, cfg.clock.t_query)
    scales = network.scales
    weights = {
        name: jnp.stack(
            [
                pair_weights(mode.read(read_keys[2 * i + p], states[name], times[p], dev), dev, scales[name])
                for p in range(2)
            ]
        )
        for i, name in enumerate(body)
    }
    head = {name: states[name] for name in network.head}
    return ChipState(weights, head, keys[2 * n + 1], {name: jnp.ones(()) for name in network.head})


def task_features(
    network: AbstractNetwork, body: dict[str, Array], x_support: Array, x_query: Array
) -> tuple[Array, Array]:
    """The support and query features of one task, each set with its own read of the body.
    Sets of equal shape run as one batched call."""
    if x_support.shape == x_query.shape:
        both = jax.vmap(network.features)(body, jnp.stack([x_support, x_query]))
        return jax.tree.map(lambda a: a[0], both), jax.tree.map(lambda a: a[1], both)
    support = network.features({n: w[0] for n, w in body.items()}, x_support)
    query = network.features({n: w[1] for n, w in body.items()}, x_query)
    return support, query


def head_chip(network: AbstractNetwork, chip: ChipState, cfg: MetaConfig) -> HeadChip:
    scales = network.scales
    return HeadChip(cfg.device, cfg.mode, cfg.clock, {n: scales[n] * chip.head_scale[n] for n in network.head})


def adapt_task(
    network: AbstractNetwork,
    chip: ChipState,
    features: Array,
    y_support: Array,
    family: AbstractTaskFamily,
    cfg: MetaConfig,
) -> HeadAdaptation:
    """Step 3 for one task: the head's inner update from the support features."""

    return cfg.mode.adapt(
        cfg.rule, chip.key, chip.head, SupportSet(network, features, y_support, family), head_chip(network, chip, cfg)
    )


def adapt_chips(
    network: AbstractNetwork, chips: ChipState, tasks: TaskBatch, family: AbstractTaskFamily, cfg: MetaConfig
):
    """Every task on its chip: query features and the adapted head (batched over tasks)."""
    x_s, x_q = family.encode(tasks.x_support), family.encode(tasks.x_query)
    f_s, f_q = jax.vmap(lambda b, s, q: task_features(network, b, s, q))(chips.body, x_s, x_q)
    adaptations = jax.vmap(lambda c, f, y: adapt_task(network, c, f, y, family, cfg))(chips, f_s, tasks.y_support)
    return f_q, adaptations


def program_chips(network: AbstractNetwork, key: PRNGKeyArray, n_tasks: int, cfg: MetaConfig) -> ChipState:
    """One freshly programmed chip per task, each with its own noise."""
    return jax.vmap(program_and_read, in_axes=(None, 0, None))(network, jax.random.split(key, n_tasks), cfg)


def adapt_shared_chips(
    network: AbstractNetwork,
    chips: ChipState,
    tasks: TaskBatch,
    family: AbstractTaskFamily,
    cfg: MetaConfig,
    per_chip: int,
):
    """`adapt_chips` with `per_chip` consecutive tasks on each chip (chips: n_tasks / per_chip).

    A chip is programmed once and its body read once per set time, as a physical chip serving
    several tasks at the same times would be; the tasks' support (and query) inputs pass
    through that one read of the body together, so each body layer is one matmul over the
    group's samples instead of `per_chip` small ones. Each task adapts its own copy of the
    chip's programmed head, with its own reads and pulses (the head's key split per task).
    Results are per task, in the batch's order.
    """
    x_s, x_q = family.encode(tasks.x_support), family.encode(tasks.x_query)
    group = lambda a: a.reshape(a.shape[0] // per_chip, per_chip, *a.shape[1:])
    x_s, x_q, y_s = (jax.tree.map(group, t) for t in (x_s, x_q, tasks.y_support))

    def one_chip(chip: ChipState, xs, xq, ys):
        # the body is not mapped over the group: one read serves every task on the chip
        f_s, f_q = jax.vmap(lambda s, q: task_features(network, chip.body, s, q))(xs, xq)
        keys = jax.random.split(chip.key, per_chip)
        adapt = lambda k, f, y: adapt_task(
            network, ChipState(chip.body, chip.head, k, chip.head_scale), f, y, family, cfg
        )
        return f_q, jax.vmap(adapt)(keys, f_s, ys)

    f_q, adaptations = jax.vmap(one_chip)(chips, x_s, x_q, y_s)
    ungroup = lambda a: a.reshape(-1, *a.shape[2:])
    return jax.tree.map(ungroup, f_q), jax.tree.map(ungroup, adaptations)


class TaskResult(eqx.Module):
    """Per task (axis 0 when batched)."""

    loss_before: Float[Array, ""]  # query loss with the head as read before adaptation
    loss_after: Float[Array, ""]  # query loss after the inner update
    metrics: dict[str, Float[Array, " steps"]]  # the family's metrics after 0, 1, … inner steps
    pulses: Float[Array, ""]  # SET pulses applied to the head
    devices_pulsed: Float[Array, ""]


def query_results(
    network: AbstractNetwork, features: Array, y_query: Array, adaptation: HeadAdaptation, family: AbstractTaskFamily
) -> TaskResult:
    """Step 4 for one task: query loss before/after and the metrics after every inner step."""
    predictions = [network.head_output(w, features) for w in adaptation.weights[:-1]]
    last, penalty = network.head_output_and_penalty(adaptation.weights[-1], features)
    predictions.append(last)
    per_step = [family.metrics(p, y_query) for p in predictions]
    metrics = {k: jnp.stack([m[k] for m in per_step]) for k in per_step[0]}
    return TaskResult(
        family.loss(predictions[0], y_query),
        family.loss(last, y_query) + penalty,
        metrics,
        adaptation.pulses,
        adaptation.devices_pulsed,
    )


def results_of(
    network: AbstractNetwork, features: Array, tasks: TaskBatch, adaptations: HeadAdaptation, family: AbstractTaskFamily
) -> TaskResult:
    return jax.vmap(lambda f, y, a: query_results(network, f, y, a, family))(features, tasks.y_query, adaptations)


def batch_results(
    network: AbstractNetwork,
    key: PRNGKeyArray,
    tasks: TaskBatch,
    family: AbstractTaskFamily,
    cfg: MetaConfig,
    tasks_per_chip: int = 1,
) -> TaskResult:
    """Steps 1–4 for a batch of tasks: a chip per task, or one per `tasks_per_chip` tasks."""
    if tasks_per_chip == 1:
        chips = program_chips(network, key, tasks.n_tasks, cfg)
        features, adaptations = adapt_chips(network, chips, tasks, family, cfg)
    else:
        chips = program_chips(network, key, tasks.n_tasks // tasks_per_chip, cfg)
        features, adaptations = adapt_shared_chips(network, chips, tasks, family, cfg, tasks_per_chip)
    return results_of(network, features, tasks, adaptations, family)


def outer_loss(
    network: AbstractNetwork, key: PRNGKeyArray, tasks: TaskBatch, family: AbstractTaskFamily, cfg: MetaConfig
):
    """The MAML objective: mean query loss after adaptation over the batch, with the results.
    Tasks share chips `cfg.tasks_per_chip` at a time (held-out evaluation keeps a chip per task)."""
    results = batch_results(network, key, tasks, family, cfg, cfg.tasks_per_chip)
    return jnp.mean(results.loss_after), results


def head_outputs(
    network: AbstractNetwork, chips: ChipState, adaptations: HeadAdaptation, family: AbstractTaskFamily, x: Array
) -> Array:
    """(tasks, steps + 1, …): each task's head output at raw inputs x (tasks, points, …) after
    0, 1, … inner steps, with the body as read for the query set (for plots)."""
    encoded = family.encode(x)
    features = jax.vmap(lambda b, e: network.features({n: w[1] for n, w in b.items()}, e))(chips.body, encoded)
    outs = [jax.vmap(network.head_output)(w, features) for w in adaptations.weights]
    return jnp.stack(outs, axis=1)


def predict(
    network: AbstractNetwork, key: PRNGKeyArray, tasks: TaskBatch, family: AbstractTaskFamily, cfg: MetaConfig, x: Array
) -> Array:
    """`head_outputs` with the same noise draws as `batch_results` for this key."""
    chips = program_chips(network, key, tasks.n_tasks, cfg)
    _, adaptations = adapt_chips(network, chips, tasks, family, cfg)
    return head_outputs(network, chips, adaptations, family, x)
