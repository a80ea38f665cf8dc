"""Learned programming: a controller that knows when a verify read is worth its time.

Write-verify reads after every SET pulse and RESETs on every overshoot. The learned controller
looks at what a chip controller sees — the target, the last verify read and the SET pulses since
the last RESET — and chooses one action: **done** (0), a **blind burst** of k SET pulses before
the next verify read (1 … `MAX_BURST`), or **RESET**. Right after a RESET (the initial one
included) the device sits at the RESET level, which the controller knows, so it chooses without
reading: a first burst, or done when the RESET level already meets the target. A SET pulse can
lower a conductance (its increment's spread exceeds its mean above a few µS), so a read above the
target does not have to mean RESET. Every device respects the pulse budget (SET and RESET both
count); a device whose budget runs out mid-way still gets a verify read after its last pulse.

The `ProgrammingPolicy` is a table of those actions over (target, read, SET count), planned on
the device model by dynamic programming and calibrated against write-verify on the exact
simulation below (`planning.py`, `training.py`, docs/programming.md).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Int8, PRNGKeyArray

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.programming.base import TICK_S, AbstractProgrammingMethod, ProgramResult

#: Most SET pulses one blind burst may hold.
MAX_BURST = 24
#: The action codes of `ProgrammingPolicy.decision` besides bursts (k > 0).
DONE, RESET = 0, -1


class ProgrammingPolicy(eqx.Module):
    """What to do after a verify read, by target, read and SET count since the last RESET.

    `decision[t, r, n]`: 0 done, k > 0 a blind burst of k SET pulses then a verify read, −1 RESET;
    `after_reset[t]`: the burst right after a RESET (0 = done). Targets index a grid of
    `target_step` µS from `target_origin`; a target between grid points uses the nearest one with
    the read shifted by the difference (the decision depends on the read relative to the target).
    Reads index a grid of `read_step` µS from `read_origin` (cell centres); SET counts beyond the
    last column use the last (the history term has died out there).
    """

    decision: Int8[Array, "targets reads counts"]
    after_reset: Int8[Array, " targets"]
    read_origin: float = eqx.field(static=True)
    read_step: float = eqx.field(static=True)
    target_origin: float = eqx.field(static=True)
    target_step: float = eqx.field(static=True)

    def _target_cell(self, target: Float[Array, " n"]) -> tuple[Int[Array, " n"], Float[Array, " n"]]:
        t = jnp.round((target - self.target_origin) / self.target_step)
        t = jnp.clip(t, 0, self.after_reset.shape[0] - 1).astype(jnp.int32)
        return t, target - (self.target_origin + t * self.target_step)

    def choose(
        self, target: Float[Array, " n"], g_read: Float[Array, " n"], n_set: Int[Array, " n"]
    ) -> Int[Array, " n"]:
        """The action after a verify read of `g_read` (µS) at `n_set` SET pulses since RESET."""
        t, shift = self._target_cell(target)
        r = jnp.round((g_read - shift - self.read_origin) / self.read_step)
        r = jnp.clip(r, 0, self.decision.shape[1] - 1).astype(jnp.int32)
        n = jnp.minimum(n_set, self.decision.shape[2] - 1)
        return self.decision[t, r, n].astype(jnp.int32)

    def first(self, target: Float[Array, " n"]) -> Int[Array, " n"]:
        """The burst right after a RESET (0 = done: the RESET level is the answer)."""
        return self.after_reset[self._target_cell(target)[0]].astype(jnp.int32)

    def grid(self) -> dict:
        """The static part, for the policy file's header."""
        return {
            "shape": list(self.decision.shape),
            "read_origin": self.read_origin,
            "read_step": self.read_step,
            "target_origin": self.target_origin,
            "target_step": self.target_step,
        }

    @classmethod
    def like(cls, grid: dict) -> "ProgrammingPolicy":
        """An all-zero policy with `grid`'s shape, to read a file's leaves into."""
        t, r, n = (int(v) for v in grid["shape"])
        return cls(
            jnp.zeros((t, r, n), jnp.int8),
            jnp.zeros((t,), jnp.int8),
            float(grid["read_origin"]),
            float(grid["read_step"]),
            float(grid["target_origin"]),
            float(grid["target_step"]),
        )


def learned_program(
    key: PRNGKeyArray,
    device: AbstractPCMDevice,
    target: Float[Array, " n"],
    policy: ProgrammingPolicy,
    max_pulses: int = 100,
    step_s: float = TICK_S,
) -> ProgramResult:
    """Program every device with the policy's actions, all devices in parallel.

    One tick (`step_s` of simulated time) per pulse; a verify read happens at the start of a tick
    whose device has no burst pulses left and was not RESET on the tick before, and the pulse that
    follows it in the same tick. `converged` marks devices the policy declared done (the others
    ended at the pulse budget).
    """
    k_reset, k_loop = jax.random.split(key)
    state = device.initial_state(k_reset, target.shape, t=0.0)
    zeros = jnp.zeros(target.shape, jnp.int32)
    first = policy.first(target)

    def cond(carry):
        active, i = carry[-2], carry[-1]
        return jnp.any(active) & (i <= 2 * max_pulses + 2)

    def body(carry):
        state, sets, resets, reads, converged, burst_left, fresh, active, i = carry
        t = (i + 1).astype(jnp.float32) * step_s
        k_read, k_set, k_reset = jax.random.split(jax.random.fold_in(k_loop, i), 3)
        spent = sets + resets
        has_budget = spent < max_pulses
        # a device RESET on the tick before sits at the RESET level: it chooses unread
        verify = active & (burst_left == 0) & ~fresh
        deciding = verify | (active & fresh)
        g_read = device.read(k_read, state, t)
        reads = reads + verify
        choice = jnp.where(fresh, first, policy.choose(target, g_read, state.n_set))
        done = deciding & (choice == DONE)
        converged = converged | done
        do_reset = verify & (choice == RESET) & has_budget
        start = deciding & (choice > 0) & has_budget
        burst_left = jnp.where(start, jnp.minimum(choice, max_pulses - spent), burst_left)
        do_set = active & ~do_reset & (burst_left > 0) & has_budget
        state = device.set_pulse(k_set, state, do_set, t)
        state = device.reset(k_reset, state, do_reset, t)
        sets, resets = sets + do_set, resets + do_reset
        burst_left = burst_left - do_set
        active = active & ~done & (has_budget | ~verify)
        return state, sets, resets, reads, converged, burst_left, do_reset, active, i + 1

    no = jnp.zeros(target.shape, bool)
    init = (state, zeros, zeros, zeros, no, zeros, ~no, ~no, jnp.zeros((), jnp.int32))
    state, sets, resets, reads, converged, _, _, _, i = jax.lax.while_loop(cond, body, init)
    return ProgramResult(state, sets, resets, reads, converged, i.astype(jnp.float32) * step_s)


class LearnedProgramming(AbstractProgrammingMethod):
    name: ClassVar[str] = "learned"
    policy: ProgrammingPolicy
    tolerance: float = eqx.field(static=True, default=0.5)  # µS: what the policy was asked for (reports)
    max_pulses: int = eqx.field(static=True, default=100)

    @property
    def budget(self) -> int:
        return self.max_pulses

    def program(self, key, device, target):
        return learned_program(key, device, target, self.policy, self.max_pulses)
