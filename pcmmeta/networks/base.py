"""The network interface: named crossbar layers of differential PCM pairs, a body and a head.

A network is an `AbstractNetwork`: an Equinox module whose arrays are `layers`, a dict of
conductance pairs (µS, axis 0 = [G⁺, G⁻]) — the meta-parameters that Adam trains and `deploy`
programs — and, for some networks, float parameters that run off chip (the robot arm's
learning-signal generator): Adam trains them too (`train.offchip_learning_rate`), `deploy`
never programs them. Layers named in `head` are the ones the chip adapts; the rest are the body,
programmed offline and never changed on chip. The architecture is static (fields marked
`static=True`). A layer's weight is w = scale·(G⁺ − G⁻)/(g_max − g_min) with the layer's `scales`
entry: the weight a full-range pair carries.

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
from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..device import PCMDevice
from ..fields import Field


class AbstractNetwork(eqx.Module):
    #: Recipe keys of the `network:` section besides `kind` (docs/recipes.md).
    SCHEMA: ClassVar[dict[str, Field]] = {}
    kind: ClassVar[str]

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
    def init(cls, key: PRNGKeyArray, section: dict, family, device: PCMDevice) -> "AbstractNetwork":
        """A freshly initialised network for a validated `network:` section and a task family
        (`family.encode` and `family.n_outputs` fix the input and output sizes)."""

    @abc.abstractmethod
    def features(self, weights: dict[str, Array], x: Array) -> Array:
        """What the head reads, for the (encoded) inputs x of one task, from the body's weights."""

    @abc.abstractmethod
    def head_output(self, weights: dict[str, Array], features: Array) -> Array:
        """The prediction from the head's weights and the features."""

    def head_output_and_penalty(self, weights: dict[str, Array], features: Array) -> tuple[Array, Float[Array, ""]]:
        """The prediction and a regulariser added to the query loss (a spike-rate penalty, …)."""
        return self.head_output(weights, features), jnp.zeros(())

    @property
    def body(self) -> tuple[str, ...]:
        return tuple(n for n in self.layer_names if n not in self.head)

    def clip(self, device: PCMDevice) -> "AbstractNetwork":
        """Every conductance inside the device's range (devices cannot hold more)."""
        return eqx.tree_at(lambda net: net.layers, self, jax.tree.map(device.clip, self.layers))

    def n_devices(self) -> int:
        return sum(int(g.size) for g in self.layers.values())
