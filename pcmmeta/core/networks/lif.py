"""`lif`: two LIF layers and a leaky-integrator readout (Demirag et al. 2023), see `snn.py`.

Layers: `in` (channels × hidden1), `hidden` (hidden1 × hidden2) — the body — and `out`
(hidden2 × outputs, or a vector of hidden2 for one output) — the head. The features of an input
are the readout's filtered spike traces z (time × samples × hidden2); the head's output is
W_out z at every time step (time × samples), so the family scores every step.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.crossbar import pairs_around
from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.fields import hyperparameter, hyperparameter_group
from pcmmeta.core.networks.base import AbstractNetwork
from pcmmeta.core.snn import LIFConfig, readout_traces


class LIFArchitecture(eqx.Module):
    """The `network:` section of `lif`: the layers' sizes, the neurons' dynamics, the layers'
    weight scales."""

    hidden: tuple[int, int] = hyperparameter([40, 40], "ints", "sizes of the two LIF layers")
    dynamics: LIFConfig = hyperparameter_group(LIFConfig)
    scale_in: float = hyperparameter(5.0, "float", "weight of a full-range pair, input layer", positive=True)
    scale_hidden: float = hyperparameter(1.0, "float", "weight of a full-range pair, hidden layer", positive=True)
    scale_out: float = hyperparameter(1.0, "float", "weight of a full-range pair, output layer", positive=True)
    init_conductance: float = hyperparameter(3.0, "float", "µS around which pairs are initialised", positive=True)


class LIFNetwork(AbstractNetwork):
    architecture_class = LIFArchitecture
    kind = "lif"
    reads = frozenset({"vector"})

    layers: dict[str, Float[Array, "2 ..."]]
    scale_items: tuple[tuple[str, float], ...] = eqx.field(static=True)
    lif: LIFConfig
    layer_names: tuple[str, ...] = eqx.field(static=True)
    head: tuple[str, ...] = eqx.field(static=True)

    @classmethod
    def init(cls, key: PRNGKeyArray, architecture: LIFArchitecture, family, device: AbstractPCMDevice) -> "LIFNetwork":
        channels = int(family.encode(jnp.zeros((1, 1))).shape[-1])
        h1, h2 = architecture.hidden
        n_out = family.n_outputs
        scales = {"in": architecture.scale_in, "hidden": architecture.scale_hidden, "out": architecture.scale_out}

        def pair(k, shape, scale, fan_in):
            """Weights uniform in ±1/√fan_in."""
            w = jax.random.uniform(k, shape, minval=-1.0, maxval=1.0) * (1.0 / jnp.sqrt(fan_in))
            return pairs_around(w, device, scale, architecture.init_conductance)

        k1, k2, k3 = jax.random.split(key, 3)
        layers = {
            "in": pair(k1, (channels, h1), scales["in"], 1.0),
            "hidden": pair(k2, (h1, h2), scales["hidden"], h1 / 4.0),
            "out": pair(k3, (h2,) if n_out == 1 else (h2, n_out), scales["out"], h2),
        }
        return cls(
            layers=layers,
            scale_items=tuple(scales.items()),
            layer_names=("in", "hidden", "out"),
            head=("out",),
            lif=architecture.dynamics,
        )

    def activation_bytes(self, family, support: int, query: int, tasks: int, backward: bool) -> int:
        """time_steps × samples × hidden floats per task: backward, the two membranes the
        hand-written backward pass keeps (hidden1 + hidden2), the readout traces and their
        cotangents (2 × hidden2), the head's outputs (time × samples × outputs, ×2); forward,
        the traces and the outputs. (The scan's carry is one step: negligible.)"""
        h1, h2 = self.layers["hidden"].shape[1:]
        per_step = (h1 + 3 * h2 + 2 * family.n_outputs) if backward else (h2 + family.n_outputs)
        return 4 * self.lif.time_steps * (support + query) * tasks * per_step

    def features(self, weights, x: Float[Array, "samples channels"]) -> Float[Array, "time samples hidden2"]:
        return readout_traces(self.lif, weights["in"], weights["hidden"], x)

    def head_output(self, weights, features: Float[Array, "time samples hidden2"]) -> Array:
        return features @ weights["out"]
