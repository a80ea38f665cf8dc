"""`cnn`: convolutional blocks and a dense head for few-shot image classification.

After Ortner et al. (Nat. Commun. 16, 2025) and MAML's Omniglot model: `blocks` blocks of 3×3
convolution (`channels` filters, same padding) + ReLU + 2×2 max-pooling, then a dense layer to
the N classes — the head, the only layer the chip adapts. With `batch_norm`, each
convolution's output is normalised per channel over the set's images before the ReLU (computed
in the periphery, not on the crossbar; no learned scale).

Every layer is a crossbar of PCM pairs. A convolution is a matrix-vector product on the im2col
view of its input: the crossbar `conv<i>` holds a (9·c_in + 1) × c_out matrix (rows: the 3×3×c_in
patch, then a bias row driven by a constant input of 1), and every output pixel is that matrix
times its patch — the same conductances a chip would hold, so deploy, adapt and drift treat
them like any layer. The head `out` is (features + 1) × N, with a bias row too.

Weight scales: a full-range pair carries `weight_range` × √(2/fan_in) (He's standard deviation)
in the body and `head_range` in the head; weights start He-normal (body) or at zero (head).

With `shared_head_init` the head's meta-learned starting point is one column shared by every
class (Ye & Chao, "How to train your MAML to excel in few-shot classification", ICLR 2022):
labels are permuted per task, so a class-specific start only biases every task towards some
label, and the first inner steps are spent undoing it. Every class then starts with the same
logit. The head is programmed as its class mean (`offline_layers`); the columns start equal
and get the same gradient, so the stored head stays one column repeated.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.crossbar import pairs_around
from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.fields import hyperparameter
from pcmmeta.core.networks.base import AbstractNetwork, encoded_support


def im2col(x: Float[Array, "n h w c"]) -> Float[Array, "n h w 9c"]:
    """3×3 patches with zero padding ('same'): the input rows of a crossbar convolution."""
    h, w = x.shape[1], x.shape[2]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = [padded[:, i : i + h, j : j + w, :] for i in range(3) for j in range(3)]
    return jnp.concatenate(patches, axis=-1)


def crossbar_conv(x: Float[Array, "n h w c_in"], w: Float[Array, "rows c_out"]) -> Float[Array, "n h w c_out"]:
    """im2col(x) · W[:-1] + W[-1] (the bias row)."""
    return im2col(x) @ w[:-1] + w[-1]


def max_pool(x: Float[Array, "n h w c"]) -> Float[Array, "n h//2 w//2 c"]:
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, : 2 * h2, : 2 * w2].reshape(n, h2, 2, w2, 2, c).max(axis=(2, 4))


def set_norm(y: Float[Array, "n h w c"], eps: float = 1e-5) -> Float[Array, "n h w c"]:
    """Each channel normalised to zero mean and unit variance over the set's images and pixels
    (batch norm with the set's own statistics, as MAML's networks use it, no affine)."""
    mean = y.mean(axis=(0, 1, 2), keepdims=True)
    var = y.var(axis=(0, 1, 2), keepdims=True)
    return (y - mean) * jax.lax.rsqrt(var + eps)


class ConvArchitecture(eqx.Module):
    """The `network:` section of `cnn`."""

    channels: int = hyperparameter(
        32, "int", "filters per convolution (Ortner et al. / MAML: 64; 32 trains faster on a CPU)", low=1
    )
    blocks: int = hyperparameter(
        4, "int", "convolution blocks (each halves the image: 28 → 14 → 7 → 3 → 1)", low=1, high=4
    )
    weight_range: float = hyperparameter(
        3.0, "float", "body: weight of a full-range pair, in units of √(2/fan_in)", positive=True
    )
    head_range: float = hyperparameter(1.0, "float", "head: weight of a full-range pair", positive=True)
    init_conductance: float = hyperparameter(3.0, "float", "µS around which pairs are initialised", positive=True)
    batch_norm: bool = hyperparameter(
        False,
        "bool",
        "normalise each convolution's output per channel over the set's images (transductive batch norm, no learned scale, in the periphery: Ortner et al.'s network has BatchNorm); it makes a channel's gain, so a uniform drift of its conductances, irrelevant",
    )
    shared_head_init: bool = hyperparameter(
        False,
        "bool",
        "the head's learned starting point is one column shared by every class (Ye & Chao 2022): with labels permuted per task, no class is favoured before adaptation",
    )


class ConvNet(AbstractNetwork):
    architecture_class = ConvArchitecture
    kind = "cnn"
    reads = frozenset({"images"})

    layers: dict[str, Float[Array, "2 ..."]]
    scale_items: tuple[tuple[str, float], ...] = eqx.field(static=True)
    layer_names: tuple[str, ...] = eqx.field(static=True)
    head: tuple[str, ...] = eqx.field(static=True)
    batch_norm: bool = eqx.field(static=True, default=False)
    shared_head_init: bool = eqx.field(static=True, default=False)

    @classmethod
    def init(cls, key: PRNGKeyArray, architecture: ConvArchitecture, family, device: AbstractPCMDevice) -> "ConvNet":
        example = family.encode(jnp.zeros((1, 28, 28), jnp.uint8))
        h, w, c_in = example.shape[1:]
        c, blocks = architecture.channels, architecture.blocks
        g_base = architecture.init_conductance
        keys = jax.random.split(key, blocks + 1)
        layers, scales = {}, {}
        for b in range(blocks):
            fan_in = 9 * c_in
            scale = architecture.weight_range * math.sqrt(2.0 / fan_in)
            weights = jax.random.normal(keys[b], (fan_in, c)) * math.sqrt(2.0 / fan_in)
            weights = jnp.concatenate([weights, jnp.zeros((1, c))])  # bias row starts at 0
            name = f"conv{b + 1}"
            layers[name], scales[name] = pairs_around(weights, device, scale, g_base), scale
            c_in, h, w = c, h // 2, w // 2
        features = h * w * c_in
        layers["out"] = pairs_around(
            jnp.zeros((features + 1, family.n_outputs)), device, architecture.head_range, g_base
        )
        scales["out"] = architecture.head_range
        names = tuple(layers)
        return cls(
            layers=layers,
            scale_items=tuple(scales.items()),
            layer_names=names,
            head=("out",),
            batch_norm=architecture.batch_norm,
            shared_head_init=architecture.shared_head_init,
        )

    def offline_layers(self) -> dict[str, Float[Array, "2 ..."]]:
        """The stored layers; with `shared_head_init`, the head as its mean over classes."""
        if not self.shared_head_init:
            return self.layers
        g = self.layers["out"]  # (2, features + 1, ways)
        return self.layers | {"out": jnp.broadcast_to(g.mean(axis=-1, keepdims=True), g.shape)}

    #: Measured peak RSS over `activation_bytes` was 0.9–1.05 (glyphs recipes, 16–64 channels).
    ACTIVATION_OVERHEAD = 1.3

    def activation_bytes(self, family, support: int, query: int, tasks: int, backward: bool) -> int:
        """Image maps per input. Per block b the im2col patches (h·w·9·c_in) and the
        convolution's output before and after ReLU (2·h·w·c): m_b. Backward: every block's maps
        and their cotangents, 2·Σ m_b. Forward: the two largest blocks' maps (one block's output
        feeds the next) and ≈ 25 input-sized maps (the encoded image, its padded copy, shifted
        slices). Calibrated on measured peaks (docs/recipes.md, "Memory")."""
        h, w, c_in = encoded_support(family).shape[1:]
        c = self.layers["conv1"].shape[-1]  # every block's filters (`channels`)
        inputs = 25 * h * w * c_in
        maps = []
        for _ in self.body:  # one crossbar per block
            maps.append(h * w * (9 * c_in + 2 * c))
            c_in, h, w = c, h // 2, w // 2
        per_input = 2 * sum(maps) if backward else sum(sorted(maps)[-2:]) + inputs
        return 4 * per_input * (support + query) * tasks

    def features(self, weights, x: Float[Array, "n 28 28 1"]) -> Float[Array, "n features"]:
        for name in self.body:
            y = crossbar_conv(x, weights[name])
            if self.batch_norm:
                y = set_norm(y)
            x = max_pool(jax.nn.relu(y))
        return x.reshape(x.shape[0], -1)

    def head_output(self, weights, features: Float[Array, "n features"]) -> Float[Array, "n ways"]:
        w = weights["out"]
        return features @ w[:-1] + w[-1]
