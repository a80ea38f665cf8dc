"""The network interface: named crossbar layers of differential PCM pairs, a body and a head.

A network is an `AbstractNetwork`: an Equinox module whose arrays are `layers`, a dict of
conductance pairs (µS, axis 0 = [G⁺, G⁻]) — the meta-parameters that Adam trains and `deploy`
programs — and, for some networks, float parameters that run off chip (the robot arm's
learning-signal generator): Adam trains them too (`train.offchip_learning_rate`), `deploy`
never programs them. Layers named in `head` are the ones the chip adapts; the rest are the body,
programmed offline and never changed on chip. The architecture is static (fields marked
`static=True`); its hyperparameters, the `network:` section's keys, are the fields of the
network's `architecture_class`, each declared once (`pcmmeta.core.fields.hyperparameter`). A
layer's weight is w = scale·(G⁺ − G⁻)/(g_max − g_min) with the layer's `scales` entry: the
weight a full-range pair carries.

The pipeline only calls:
- `features(body_weights, x)`: what the head reads, for inputs x of one task (computed once per
  task and phase — only the head adapts, so the inner steps never re-run the body);
- `head_output(head_weights, features)`: the prediction the task family scores;
- `head_output_and_penalty`: the same with a regulariser added to the outer loss (default 0).

Features are whatever the head needs besides its own weights: for a network whose adapted
layers come last, the body's activations; for one whose adapted layers come first (`rsnn`),
the inputs and the body's weights.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.fields import Field, from_section, schema_of


def encoded_support(family) -> jax.ShapeDtypeStruct:
    """Shape of one task's encoded support inputs (samples, …), traced: nothing is sampled."""
    return eqx.filter_eval_shape(lambda: family.encode(family.sample(jax.random.key(0), 1).x_support[0]))


class AbstractNetwork(eqx.Module):
    #: The module of the architecture's hyperparameters: the recipe keys of the `network:`
    #: section besides `kind`, in the order docs/recipes.md lists them.
    architecture_class: ClassVar[type[eqx.Module]]

    @classmethod
    def schema(cls) -> dict[str, Field]:
        """The recipe keys of the `network:` section besides `kind` (docs/recipes.md)."""
        return schema_of(cls.architecture_class)

    @classmethod
    def architecture_from(cls, section: dict) -> eqx.Module:
        """The architecture of a validated `network:` section, every hyperparameter by keyword."""
        return from_section(cls.architecture_class, section)

    kind: ClassVar[str]
    #: The task inputs it accepts, and what it offers an inner rule (`pcmmeta.core.compatibility`:
    #: `INPUTS`, `NETWORK_FEATURES`); checked when an experiment is built, not in `init`.
    reads: ClassVar[frozenset[str]]
    provides: ClassVar[frozenset[str]] = frozenset()
    #: Figures show the head's spikes (`spike_raster`).
    shows_spikes: ClassVar[bool] = False

    layers: eqx.AbstractVar[dict[str, Float[Array, "2 ..."]]]
    scale_items: eqx.AbstractVar[tuple[tuple[str, float], ...]]  # (layer, scale): hashable, static
    layer_names: eqx.AbstractVar[tuple[str, ...]]  # every layer, in order from input to output
    head: eqx.AbstractVar[tuple[str, ...]]  # the layers the chip adapts

    @property
    def scales(self) -> dict[str, float]:
        """The weight a full-range pair carries, per layer."""
        return dict(self.scale_items)

    @classmethod
    @abc.abstractmethod
    def init(cls, key: PRNGKeyArray, architecture: Any, family, device: AbstractPCMDevice) -> "AbstractNetwork":
        """A freshly initialised network of this architecture (an `architecture_class`, from
        `architecture_from`) for a task family (`family.encode` and `family.n_outputs` fix the
        input and output sizes)."""

    @abc.abstractmethod
    def features(self, weights: dict[str, Array], x: Array) -> Any:
        """What the head reads, for the (encoded) inputs x of one task, from the body's weights
        (an array, or a network's own pytree)."""

    @abc.abstractmethod
    def head_output(self, weights: dict[str, Array], features: Any) -> Array:
        """The prediction from the head's weights and the features."""

    def spike_raster(self, weights: dict[str, Array], features: Any) -> Array:
        """The head's spikes (time × neurons) on the first sample, for figures (a network with
        `shows_spikes`)."""
        raise NotImplementedError(f"{type(self).__name__} has no spike raster")

    def head_output_and_penalty(self, weights: dict[str, Array], features: Any) -> tuple[Array, Float[Array, ""]]:
        """The prediction and a regulariser added to the query loss (a spike-rate penalty, …)."""
        return self.head_output(weights, features), jnp.zeros(())

    @property
    def body(self) -> tuple[str, ...]:
        return tuple(n for n in self.layer_names if n not in self.head)

    def offline_layers(self) -> dict[str, Float[Array, "2 ..."]]:
        """The conductances (µS) programmed offline before each task: the layers as stored. A
        network whose starting point is tied (a head shared by every class) returns the tied
        form; its gradient then reaches every tied copy alike, so the stored copies stay equal."""
        return self.layers

    def clip(self, device: AbstractPCMDevice) -> "AbstractNetwork":
        """Every conductance inside the device's range (devices cannot hold more)."""
        return eqx.tree_at(lambda net: net.layers, self, jax.tree.map(device.clip, self.layers))

    def n_devices(self) -> int:
        return sum(int(g.size) for g in self.layers.values())

    #: Measured peak memory over `activation_bytes` (XLA's temporaries, fusion buffers, copies),
    #: with a margin: the memory check multiplies by it. lif: measured 1.2–1.6 → 2.
    ACTIVATION_OVERHEAD: ClassVar[float] = 2.0
    #: The default `activation_bytes` multiplies the features' size by this: what the body keeps
    #: for the backward pass is a few times its output in the networks measured (lif: 4–5, cnn:
    #: 10–20), so a network without its own estimate is not waved through.
    DEFAULT_ACTIVATION_FACTOR: ClassVar[int] = 32

    def activation_bytes(self, family, support: int, query: int, tasks: int, backward: bool) -> int:
        """Bytes of the activations the pipeline holds for `tasks` tasks of `support` + `query`
        inputs each: those kept for the backward pass when `backward` (a meta-training chunk),
        else the forward pass's (evaluation). Used by the memory check before anything is
        allocated (`pcmmeta.experiment.memory`), on a network traced with `eqx.filter_eval_shape`
        (its arrays are shapes), so it must not build arrays: the default traces `features` and
        scales the features' bytes by `DEFAULT_ACTIVATION_FACTOR`. Networks override it with
        their own dominant terms."""
        x = encoded_support(family)
        weights = {n: jax.ShapeDtypeStruct(self.layers[n].shape[1:], jnp.float32) for n in self.body}
        out = eqx.filter_eval_shape(self.features, weights, x)
        per_sample = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(out)) / max(x.shape[0], 1)
        factor = self.DEFAULT_ACTIVATION_FACTOR if backward else self.DEFAULT_ACTIVATION_FACTOR // 4
        return int(factor * per_sample * (support + query) * tasks)
