"""How much the network's held-out objective cares about each conductance.

The sensitivity of device i is the diagonal of the empirical Fisher (Gauss-Newton) matrix of
the meta-objective with respect to the conductances,

    s_i = E_tasks[(∂L_task/∂g_i)²]   (µS⁻² in the loss's units squared),

where L_task is one task's query loss after the inner adaptation on the chip: the quantity
MAML minimises, differentiated through the same device model (`maml.batch_results`, one task
on its own chip).
A programming error δ_i on device i then costs about ½·s_i·δ_i² of expected loss, so
`s_i · E[δ_i²]` ranks what imprecision on each device costs the network.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.maml import MetaConfig, batch_results
from pcmmeta.core.networks import AbstractNetwork
from pcmmeta.core.tasks import AbstractTaskFamily, TaskBatch


def conductance_sensitivity(
    network: AbstractNetwork, key: PRNGKeyArray, tasks: TaskBatch, family: AbstractTaskFamily, cfg: MetaConfig
) -> dict[str, Float[Array, "2 ..."]]:
    """s_i per layer (the layers' shapes): the mean over `tasks` of each task's squared gradient
    of its query loss after adaptation, each task on its own programmed chip (`key` split per
    task). Tasks run one after another (`lax.map`): memory is one task's backward pass."""

    def one_task(args) -> dict[str, Array]:
        task_key, task = args
        single = jax.tree.map(lambda a: a[None], task)

        def loss(layers):
            net = eqx.tree_at(lambda m: m.layers, network, layers)
            # one task on its own chip, whatever `cfg.tasks_per_chip` meta-training shared
            return jnp.mean(batch_results(net, task_key, single, family, cfg, tasks_per_chip=1).loss_after)

        grad = jax.grad(loss)(dict(network.layers))
        return {name: g**2 for name, g in grad.items()}

    keys = jax.random.split(key, tasks.n_tasks)
    squared = jax.lax.map(one_task, (keys, tasks))
    return {name: jnp.mean(s, axis=0) for name, s in squared.items()}
