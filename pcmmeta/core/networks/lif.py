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
from jaxtyping import Array, Float

from pcmmeta.core.crossbar import pairs_around
from pcmmeta.core.fields import Field, from_section, schema_of
from pcmmeta.core.networks.base import AbstractNetwork
from pcmmeta.core.snn import LIFConfig, readout_traces
from pcmmeta.errors import UserInputError


class LIFNetwork(AbstractNetwork):
    SCHEMA = {
        "hidden": Field([40, 40], "ints", "sizes of the two LIF layers"),
        "scale_in": Field(5.0, "float", "weight of a full-range pair, input layer", positive=True),
        "scale_hidden": Field(1.0, "float", "weight of a full-range pair, hidden layer", positive=True),
        "scale_out": Field(1.0, "float", "weight of a full-range pair, output layer", positive=True),
        "init_conductance": Field(3.0, "float", "µS around which pairs are initialised", positive=True),
    }
    kind = "lif"

    @classmethod
    def schema(cls) -> dict[str, Field]:
        """`hidden`, the LIF dynamics (`LIFConfig`'s hyperparameters), the layers' scales."""
        return {
            "hidden": cls.SCHEMA["hidden"],
            **schema_of(LIFConfig),
            **{k: v for k, v in cls.SCHEMA.items() if k != "hidden"},
        }

    layers: dict[str, Float[Array, "2 ..."]]
    scale_items: tuple[tuple[str, float], ...] = eqx.field(static=True)
    lif: LIFConfig
    layer_names: tuple[str, ...] = eqx.field(static=True)
    head: tuple[str, ...] = eqx.field(static=True)

    @classmethod
    def init(cls, key, section, family, device):
        if family.name == "images":
            raise UserInputError(
                "'network.kind': lif reads a vector of input currents, but task family 'images' gives images (use network.kind: cnn)"
            )
        if family.name == "arm":
            raise UserInputError(
                "'network.kind': lif reads a vector of input currents, but task family 'arm' gives a clock and a demonstration (use network.kind: rsnn)"
            )
        channels = int(family.encode(jnp.zeros((1, 1))).shape[-1])
        h1, h2 = section["hidden"]
        n_out = family.n_outputs
        scales = {"in": section["scale_in"], "hidden": section["scale_hidden"], "out": section["scale_out"]}

        def pair(k, shape, scale, fan_in):
            """Weights uniform in ±1/√fan_in."""
            w = jax.random.uniform(k, shape, minval=-1.0, maxval=1.0) * (1.0 / jnp.sqrt(fan_in))
            return pairs_around(w, device, scale, section["init_conductance"])

        k1, k2, k3 = jax.random.split(key, 3)
        layers = {
            "in": pair(k1, (channels, h1), scales["in"], 1.0),
            "hidden": pair(k2, (h1, h2), scales["hidden"], h1 / 4.0),
            "out": pair(k3, (h2,) if n_out == 1 else (h2, n_out), scales["out"], h2),
        }
        lif = from_section(LIFConfig, section)
        return cls(
            layers=layers,
            scale_items=tuple(scales.items()),
            layer_names=("in", "hidden", "out"),
            head=("out",),
            lif=lif,
        )

    @classmethod
    def activation_bytes(cls, section, family, device, support, query, tasks, backward):
        """time_steps × samples × hidden floats per task: backward, the two membranes the
        hand-written backward pass keeps (hidden1 + hidden2), the readout traces and their
        cotangents (2 × hidden2), the head's outputs (time × samples × outputs, ×2); forward,
        the traces and the outputs. (The scan's carry is one step: negligible.)"""
        h1, h2 = section["hidden"]
        per_step = (h1 + 3 * h2 + 2 * family.n_outputs) if backward else (h2 + family.n_outputs)
        return 4 * section["time_steps"] * (support + query) * tasks * per_step

    def features(self, weights, x: Float[Array, "samples channels"]) -> Float[Array, "time samples hidden2"]:
        return readout_traces(self.lif, weights["in"], weights["hidden"], x)

    def head_output(self, weights, features: Float[Array, "time samples hidden2"]) -> Array:
        return features @ weights["out"]
