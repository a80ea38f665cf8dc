"""`planned-pulse`: at most one blind SET pulse per device per step, the set of pulses chosen
to minimise the support loss the controller expects after them.

`blind-pulse` decides each weight alone, from the sign and size of its own gradient; but the
readout's weights act together (their features overlap), so pulsing every weight whose gradient
passes a threshold overshoots along shared directions and undershoots elsewhere. The controller
that computes the gradient can as well compute the support loss's curvature and plan: after a
read, each weight w_i has three choices — no pulse, a pulse on G⁺ (w_i grows by a_i) or a pulse on
G⁻ (w_i shrinks by b_i), where a_i, b_i are the device model's expected increments at the read
conductances (`mode.pulse_step`, converted to weight) — and the rule picks the combination d that
minimises the second-order model of the support loss, with the pulses' spread added:

    E[L(w + d)] ≈ L(w) + gᵀd + ½ dᵀHd + ½ Σ_i H_ii Var(d_i)

(g, H: the support loss's gradient and the diagonal block of its Hessian per head layer; exact
for a linear head under MSE, as the LIF readout is; Var(d_i): the pulse's increment variance,
`mode.pulse_spread`², zero in the quantized mode). The minimisation is a greedy search: from no
pulses, repeatedly make the single change (one weight's choice) that lowers the model most,
until none does or after `search_moves` changes. Still one round of blind pulses: the plan is
digital, before any pulse; nothing is verified.

Gradient: the plan (which devices are pulsed) is held fixed (`stop_gradient`); the outer loop
sees what the chosen pulses do — the devices' increments at their conductances and the features
they weight. The choice is piecewise constant in the meta-parameters, so this is the exact
gradient almost everywhere.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from pcmmeta.core.fields import hyperparameter
from pcmmeta.core.inner.base import AbstractInnerRule, SupportLoss, Weights, soft_pulse
from pcmmeta.errors import UserInputError

#: Largest head layer (weights) the rule plans over: its Hessian block holds n² floats per task
#: (4,096 weights: 64 MiB per task), and the search costs n per move.
MAX_PLANNED_WEIGHTS = 4096


class Curvature(eqx.Module):
    """What the plan needs of the support loss at the read weights, for one head layer."""

    grad: Float[Array, "..."]  # ∂L/∂w, the layer's shape
    hessian: Float[Array, "n n"]  # ∂²L/∂w², n = the layer's size (flattened)


def pulse_sizes(
    mode, device, g: Float[Array, "2 ..."], n_next: Array, scale: Float[Array, ""] | float
) -> tuple[Array, Array]:
    """What the controller expects of one SET pulse on each device of a layer read at g (µS):
    the weight change (mean, capped so that no device passes g_max — a noisy read may even lie
    above it) and its variance (weight²), per device [G⁺, G⁻]."""
    to_weight = scale / (device.g_max - device.g_min)  # weight per µS
    headroom = jnp.maximum(device.g_max - g, 0.0)  # µS
    step = jnp.minimum(mode.pulse_step(device, g, n_next), headroom) * to_weight
    var = (mode.pulse_spread(device, g, n_next) * to_weight) ** 2
    return step, var


def plan_pulses(
    grad: Float[Array, " n"],
    hessian: Float[Array, "n n"],
    up: Float[Array, " n"],
    down: Float[Array, " n"],
    var_up: Float[Array, " n"],
    var_down: Float[Array, " n"],
    moves: int,
) -> Float[Array, " n"]:
    """Greedy minimisation of gᵀd + ½dᵀHd + ½Σ H_ii Var(d_i) over d_i ∈ {0, +up_i, −down_i}.

    Returns the choice per weight: 0 (no pulse), +1 (pulse G⁺), −1 (pulse G⁻). Each move changes
    one weight's choice to the one that lowers the model most; the search stops when no change
    lowers it, or after `moves` moves.
    """
    steps = jnp.stack([jnp.zeros_like(up), up, -down], -1)  # (n, 3): the weight's change per choice
    spread = jnp.stack([jnp.zeros_like(up), var_up, var_down], -1)  # its variance per choice
    diag = jnp.diagonal(hessian)[:, None]
    # the spread costs ½·H_ii·Var(d_i) only where the loss curves upwards; a negative H_ii (a
    # non-convex loss) must not make noisy pulses look attractive
    spread_cost = 0.5 * jnp.maximum(diag, 0.0)

    def move(carry):
        choice, residual, moves_made, _ = carry  # residual = g + H d: the model's gradient at d
        d_now = jnp.take_along_axis(steps, choice[:, None], 1)
        v_now = jnp.take_along_axis(spread, choice[:, None], 1)
        delta = steps - d_now
        gain = residual[:, None] * delta + 0.5 * diag * delta**2 + spread_cost * (spread - v_now)  # (n, 3)
        best = jnp.argmin(gain.reshape(-1))
        i, c = best // 3, best % 3
        better = gain.reshape(-1)[best] < 0.0
        change = jnp.where(better, delta[i, c], 0.0)
        choice = choice.at[i].set(jnp.where(better, c, choice[i]))
        return choice, residual + hessian[:, i] * change, moves_made + 1, better

    def searching(carry):
        _, _, moves_made, improved = carry
        return (moves_made < moves) & improved

    start = (jnp.zeros(grad.shape, jnp.int32), grad, jnp.zeros((), jnp.int32), jnp.ones((), bool))
    choice, _, _, _ = jax.lax.while_loop(searching, move, start)
    return jnp.where(choice == 1, 1.0, jnp.where(choice == 2, -1.0, 0.0))


class PlannedPulse(AbstractInnerRule):
    name = "planned-pulse"

    steps: int = hyperparameter(1, "int", "pulse rounds (inner steps)", low=1, high=10)
    search_moves: int = hyperparameter(
        0,
        "int",
        "greedy plan: single-weight changes at most per round (0: three per weight of the layer)",
        low=0,
        high=100_000,
    )
    ideal_lr: float = hyperparameter(0.3, "float", "ideal mode: SGD step size instead of pulses", positive=True)

    def float_lr(self) -> float:
        return self.ideal_lr

    def check_head(self, head: dict[str, tuple[int, ...]]) -> None:
        """Each head layer's curvature block (n² entries) must fit: at most
        `MAX_PLANNED_WEIGHTS` weights per layer."""
        for name, shape in head.items():
            size = math.prod(shape)
            if size > MAX_PLANNED_WEIGHTS:
                raise UserInputError(
                    f"'inner.rule': planned-pulse plans over each head layer's curvature (n² entries); head layer "
                    f"'{name}' has {size:,} weights, more than {MAX_PLANNED_WEIGHTS:,} (use blind-pulse or quantized-sgd)"
                )

    def pulse_input(self, support_loss: SupportLoss, weights: Weights) -> dict[str, Curvature]:
        """The gradient and the Hessian's diagonal block per head layer, both held fixed: they
        only choose the pulses. (`direction` stays the gradient: the `ideal` mode's SGD.)"""
        weights = jax.lax.stop_gradient(weights)
        grads = jax.grad(support_loss)(weights)
        out = {}
        for name, w in weights.items():
            flat, unravel = ravel_pytree(w)

            def layer_loss(v, name=name, unravel=unravel):
                return support_loss({**weights, name: unravel(v)})

            out[name] = Curvature(grads[name], jax.hessian(layer_loss)(flat))
        return jax.lax.stop_gradient(out)

    def pulse(self, key, state, g_read, curvature, scale, t, chip):
        dev, mode = chip.device, chip.mode
        g = jax.lax.stop_gradient(g_read)
        step, var = pulse_sizes(mode, dev, g, state.n_set + 1, jax.lax.stop_gradient(scale))  # (2, …): [G⁺, G⁻]
        flat = lambda a: a.reshape(-1)
        moves = self.search_moves or 3 * curvature.grad.size
        choice = plan_pulses(
            flat(curvature.grad), curvature.hessian, flat(step[0]), flat(step[1]), flat(var[0]), flat(var[1]), moves
        ).reshape(curvature.grad.shape)
        mask = jax.lax.stop_gradient(jnp.stack([choice > 0, choice < 0]).astype(g.dtype))
        outcome = mode.pulse_outcome(key, state, t, dev)
        return soft_pulse(state, outcome, mask), mask
