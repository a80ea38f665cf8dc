"""The meta-gradient is the gradient of the MAML objective, second-order terms included:
checked against central finite differences on a tiny CNN in software (`mode: ideal`: no device
noise, so the objective is a deterministic function of the weights)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from pcmmeta.core.maml import outer_loss
from pcmmeta.experiment.recipe import validate
from pcmmeta.experiment.train import build_experiment

RECIPE = {
    "name": "fd",
    "seed": 0,
    "mode": "ideal",
    "task": {
        "family": "images",
        "ways": 3,
        "shots": 2,
        "queries": 3,
        "rotations": False,
        "glyph_classes": 40,
        "glyph_drawings": 8,
    },
    "network": {"kind": "cnn", "channels": 4, "blocks": 2},
    "inner": {"rule": "quantized-sgd", "steps": 2, "lr": 0.4},
    "train": {"meta_batch": 2, "chunk_tasks": 2, "iterations": 1, "warmup": 0},
    "eval": {"tasks": 2, "plot_tasks": 0},
}


def objective_and_gradient():
    exp = build_experiment(validate(RECIPE))
    tasks = exp.family.sample(jax.random.key(1), 2)
    key = jax.random.key(2)
    params, static = eqx.partition(exp.network, eqx.is_inexact_array)
    # Off the initialisation's exact zeros (a bias of 0 puts every background pixel on ReLU's
    # kink, where a central difference sees half a slope): a generic point, 0.05 µS away.
    params = jax.tree.map(lambda a: a + 0.05 * jax.random.normal(jax.random.key(9), a.shape, a.dtype), params)

    def loss(p):
        return outer_loss(eqx.combine(p, static), key, tasks, exp.family, exp.meta)[0]

    return params, jax.jit(loss), jax.jit(jax.grad(loss))


def test_meta_gradient_matches_finite_differences():
    """Per layer (the body's gradient reaches it only through the inner update's second-order
    terms), the directional derivative <∇f, v> against (f(θ+εv) − f(θ−εv)) / 2ε."""
    params, loss, grad = objective_and_gradient()
    g = grad(params)
    leaves, treedef = jax.tree.flatten(params)
    assert len(leaves) == 3  # two convolutions and the head
    for i, leaf in enumerate(leaves):
        direction = [jnp.zeros_like(x) for x in leaves]
        direction[i] = jax.random.normal(jax.random.key(i), leaf.shape, leaf.dtype)
        v = jax.tree.unflatten(treedef, direction)
        predicted = float(sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(v))))
        eps = 1e-3
        plus = jax.tree.map(lambda p, d: p + eps * d, params, v)
        minus = jax.tree.map(lambda p, d: p - eps * d, params, v)
        measured = (float(loss(plus)) - float(loss(minus))) / (2 * eps)
        assert abs(predicted) > 1e-3, i  # a gradient that is there to check
        assert measured == pytest.approx(predicted, rel=0.01), i
