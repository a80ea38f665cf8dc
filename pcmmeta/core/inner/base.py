"""The inner-rule interface: how the head's support gradient becomes chip operations.

A rule is an `AbstractInnerRule`. The generic loop (`on_chip`) is written once: for each inner
step r, read the head at `clock.read_time(r)`, ask the rule what its pulses need (`pulse_input`: by
default the update's direction, `direction` — the gradient of the support loss with respect to
the head's weights, or e-prop's learning signals for `eprop-lsg`; `planned-pulse` adds the
support loss's curvature), and let the rule's `pulse` turn it into SET pulses at
`clock.pulse_time(r)`. A rule also says what it becomes without a device (`in_float`: plain SGD
with its step size, the `ideal` mode) and when the head is not adapted (`frozen`).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.clock import ChipClock
from pcmmeta.core.compute_once import compute_once
from pcmmeta.core.crossbar import layer_keys, pair_weights
from pcmmeta.core.devices import AbstractPCMDevice, DeviceState
from pcmmeta.core.devices.base import PROGRAMMED_STATE, SET_PULSES, where_state
from pcmmeta.core.fields import Field, from_section, schema_of
from pcmmeta.core.modes import AbstractMode
from pcmmeta.core.networks.base import AbstractNetwork
from pcmmeta.core.tasks.base import AbstractTaskFamily

Weights = dict[str, Array]


class SupportSet(eqx.Module):
    """One task's support set as the head sees it; calling it gives the support loss of head
    weights. Rules that need more than the loss's gradient (e-prop) read its fields."""

    network: AbstractNetwork
    features: Any  # what the head reads besides its weights (`network.features`)
    y: Array  # the support targets
    family: AbstractTaskFamily

    def __call__(self, weights: Weights) -> Float[Array, ""]:
        return self.family.loss(self.network.head_output(weights, self.features), self.y)


SupportLoss = Callable[[Weights], Float[Array, ""]]  # a SupportSet, or any loss of head weights


class HeadChip(eqx.Module):
    """What the head's update needs to know about the chip."""

    device: AbstractPCMDevice
    mode: AbstractMode
    clock: ChipClock
    scales: dict[str, Float[Array, ""]]  # weight of a full-range pair per head layer (× drift compensation)

    def read(self, key: PRNGKeyArray, states: dict[str, DeviceState], t: Float[Array, ""]) -> dict[str, Array]:
        keys = layer_keys(key, tuple(states))
        return {n: self.mode.read(keys[n], s, t, self.device) for n, s in states.items()}

    def weights(self, g: dict[str, Array]) -> Weights:
        return compute_once({n: pair_weights(g[n], self.device, self.scales[n]) for n in g})


class HeadAdaptation(eqx.Module):
    weights: list[Weights]  # the head's weights after 0, 1, …, steps inner steps (0: before)
    state: dict[str, DeviceState]  # the head's devices afterwards
    pulses: Float[Array, ""]  # SET pulses applied
    devices_pulsed: Float[Array, ""]  # devices that received at least one


class AbstractInnerRule(eqx.Module):
    """An inner rule's hyperparameters are its fields, each declared once with
    `pcmmeta.core.fields.hyperparameter` (the recipe key's default, kind, bounds and help)."""

    #: Recipe keys of the `inner:` section that are not fields of the rule (none so far).
    SCHEMA: ClassVar[dict[str, Field]] = {}
    name: ClassVar[str]
    #: What the rule needs from the network (`pcmmeta.core.compatibility.NETWORK_FEATURES`).
    needs_network: ClassVar[frozenset[str]] = frozenset()
    steps: eqx.AbstractVar[int]

    @property
    def adapts_by_set_pulses(self) -> bool:
        """Whether the rule changes devices by SET pulses alone (no RESET, no write-verify): what
        a pulse plan for a lab can express (`pcmmeta adapt --plan`, docs/chip-bridge.md)."""
        return True

    @property
    def needs_device(self) -> frozenset[str]:
        """What the device family must be able to do for this rule on the chip
        (`DEVICE_CAPABILITIES`): SET pulses for a rule that adapts by them, else programming to
        a target (verified re-programming)."""
        return frozenset({SET_PULSES} if self.adapts_by_set_pulses else {PROGRAMMED_STATE})

    def check_head(self, head: dict[str, tuple[int, ...]]) -> None:
        """Raise `UserInputError` naming `inner.rule` if the rule cannot adapt a head of these
        layers (name → weight shape); called when the experiment is built. Default: any head."""

    @classmethod
    def schema(cls) -> dict[str, Field]:
        """The recipe keys of the `inner:` section besides `rule` (docs/recipes.md)."""
        return {**schema_of(cls), **cls.SCHEMA}

    @classmethod
    def from_recipe(cls, section: dict) -> "AbstractInnerRule":
        """The rule of a validated `inner:` section: every hyperparameter by keyword."""
        return from_section(cls, section)

    @abc.abstractmethod
    def float_lr(self) -> float:
        """SGD step size of this rule in the `ideal` mode."""

    @abc.abstractmethod
    def pulse(
        self,
        key: PRNGKeyArray,
        state: DeviceState,
        g_read: Array,
        grad: Array,
        scale: Array,
        t: Float[Array, ""],
        chip: HeadChip,
    ) -> tuple[DeviceState, Array]:
        """One layer's pulses for one inner step: the new state and the pulses per device."""

    def direction(self, support_loss: SupportLoss, weights: Weights) -> Weights:
        """What the update descends, per head layer: the support loss's gradient by default."""
        return jax.grad(support_loss)(weights)

    def pulse_input(self, support_loss: SupportLoss, weights: Weights) -> dict[str, Any]:
        """What `pulse` receives per head layer on the chip (its `grad` argument): `direction` by
        default; a rule that plans its pulses may want more (`planned-pulse`: the curvature)."""
        return self.direction(support_loss, weights)

    def with_steps(self, steps: int) -> "AbstractInnerRule":
        return dataclasses.replace(self, steps=steps)

    # ------------------------------------------------------------------ written once
    def on_chip(
        self, key: PRNGKeyArray, states: dict[str, DeviceState], support_loss: SupportLoss, chip: HeadChip
    ) -> HeadAdaptation:
        """Read, `steps` inner steps, read again (the query read at `clock.t_query`)."""
        k_before, k_inner, k_after = jax.random.split(key, 3)
        trajectory = [chip.weights(chip.read(k_before, states, chip.clock.t_read))]
        counts = {n: jnp.zeros(s.shape) for n, s in states.items()}
        key = k_inner
        for r in range(chip.clock.steps):
            k_read, k_pulse, key = jax.random.split(key, 3)
            g_read = chip.read(k_read, states, chip.clock.read_time(r))
            if r > 0:
                trajectory.append(chip.weights(g_read))
            # once per weight, value and cotangent (`compute_once`: else XLA recomputes the
            # device model for every time step and sample of the features' cotangent)
            grads = compute_once(self.pulse_input(support_loss, chip.weights(g_read)))
            pulse_keys = layer_keys(k_pulse, tuple(states))
            new_states = {}
            for n, s in states.items():
                new_states[n], count = self.pulse(
                    pulse_keys[n], s, g_read[n], grads[n], chip.scales[n], chip.clock.pulse_time(r), chip
                )
                counts[n] = counts[n] + jax.lax.stop_gradient(count)
            states = new_states
        trajectory.append(chip.weights(chip.read(k_after, states, chip.clock.t_query)))
        total = sum(c.sum() for c in counts.values())
        pulsed = jnp.asarray(sum((c > 0).sum() for c in counts.values())).astype(jnp.float32)
        return HeadAdaptation(trajectory, states, total, pulsed)

    def in_float(self, states: dict[str, DeviceState], support_loss: SupportLoss, chip: HeadChip) -> HeadAdaptation:
        """Plain SGD on float weights (no device): `steps` steps of size `float_lr()`."""
        w = chip.weights({n: s.g_prog for n, s in states.items()})
        trajectory = [w]
        for _ in range(chip.clock.steps):
            grads = self.direction(support_loss, w)
            w = jax.tree.map(lambda a, g: a - self.float_lr() * g, w, grads)
            trajectory.append(w)
        none = jnp.zeros(())
        return HeadAdaptation(trajectory, states, none, none)

    def frozen(self, key: PRNGKeyArray, states: dict[str, DeviceState], chip: HeadChip) -> HeadAdaptation:
        """No update: the head read before and at the query time."""
        k_before, _, k_after = jax.random.split(key, 3)
        before = chip.weights(chip.read(k_before, states, chip.clock.t_read))
        after = chip.weights(chip.read(k_after, states, chip.clock.t_query))
        none = jnp.zeros(())
        # as long as an adapted trajectory, so per-step reports line up across modes
        return HeadAdaptation([before] + [after] * chip.clock.steps, states, none, none)


def apply_pulses(
    key: PRNGKeyArray,
    state: DeviceState,
    counts: Array,
    want: Array,
    t: Float[Array, ""],
    chip: HeadChip,
    max_pulses: int,
) -> DeviceState:
    """`counts` (whole, ≤ `max_pulses`) blind SET pulses per device at t, one after another with
    the mode's pulse outcome; straight-through: the value is what the pulses did, the gradient
    that of the intended change `want` (µS) on top of the old state."""
    frozen = jax.lax.stop_gradient(state)

    def one_pulse(i, s):
        outcome = chip.mode.pulse_outcome(jax.random.fold_in(key, i), s, t, chip.device)
        return where_state(i < counts, outcome, s)

    after = jax.lax.fori_loop(0, max_pulses, one_pulse, frozen)
    intended = state.g_prog + want
    g_prog = jax.lax.stop_gradient(after.g_prog) + (intended - jax.lax.stop_gradient(intended))
    return DeviceState(g_prog, after.t_prog, after.nu, after.n_set)


def soft_pulse(state: DeviceState, outcome: DeviceState, mask: Float[Array, "..."]) -> DeviceState:
    """Pulsed where mask = 1: exact forward; the gradient reaches the mask through g_prog."""
    hard = mask > 0.5
    return DeviceState(
        g_prog=state.g_prog + mask * (outcome.g_prog - state.g_prog),
        t_prog=jnp.where(hard, outcome.t_prog, state.t_prog),
        nu=jnp.where(hard, outcome.nu, state.nu),
        n_set=jnp.where(hard, outcome.n_set, state.n_set),
    )
