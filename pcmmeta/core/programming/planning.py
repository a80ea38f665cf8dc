"""Planning a programming policy: dynamic programming on the device model.

What the controller sees is three numbers — the target T, the last verify read r and the SET
pulses n since the last RESET — and the device model says, in closed form, where one pulse takes
a device: a Normal increment whose mean and std depend on G and on n (`set_increment_mean`,
`set_increment_std`), clipped to [g_min, g_max]; a verify read one tick after programming adds
Normal noise of the family's `read_std` at that time (linear in G for `nandakumar2018`, aihwkit's
1/f law for `joshi2020`); a RESET draws the family's `reset_normal`, clipped to the range. Only
the declared device interface is used, so every family plans. On a grid of conductances each of these is a matrix, and a blind burst of k
pulses is the product of k of them. So the expected cost of every action can be computed exactly
(up to the grid), and the best policy solves a Bellman equation:

    V(T, r, n) = min{ done:     E[penalty(G − T) | r]
                      burst k:  k·t_set + t_read + E[V(T, r', n + k) | r, n, k]
                      RESET:    W(T) }
    W(T)       = t_reset + min{ done: E[penalty(G − T) | RESET level],
                                burst k: k·t_set + t_read + E[V(T, r', k) | RESET] }

with penalty(e) = price·([|e| > tolerance] + error_share·min((e / tolerance)², 100)): the price
(µs) is what one device outside tolerance is worth in programming time; `training.py` sets it so
that the policy is as precise as write-verify. The controller's belief about G after a read is
the read's likelihood (flat prior): read noise is 0.13–0.5 µS and a pulse spreads ≥ 1 µS, so a
prior from earlier reads adds little (a Kalman belief was measured: no gain). SET counts at or
beyond `n_cap`, where the history term is below a quarter grid step, share one column. Value
iteration from "done everywhere" converges in 50–100 sweeps.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm
from jaxtyping import Array, Float

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.programming.base import TICK_S
from pcmmeta.core.programming.cost import ProgrammingCost
from pcmmeta.core.programming.learned import DONE, MAX_BURST, RESET, ProgrammingPolicy


@dataclasses.dataclass(frozen=True)
class Grid:
    """Conductance cells (µS, centres `origin + i·step`) for G and for reads; G lives in cells
    `g_lo … g_hi` (g_min … g_max), reads also below (down to 0) and above (read noise)."""

    origin: float
    step: float
    cells: int
    g_lo: int
    g_hi: int
    n_cap: int  # SET counts ≥ n_cap behave as n_cap
    target_stride: int  # a planned target every target_stride cells from g_min

    @property
    def x(self) -> np.ndarray:
        return self.origin + self.step * np.arange(self.cells)

    @property
    def targets(self) -> np.ndarray:
        return self.x[self.g_lo : self.g_hi + 1 : self.target_stride]


#: SET counts the planner tells apart at most.
MAX_COUNT = 32


def verify_read_std(device: AbstractPCMDevice, g: Float[Array, "..."]) -> Float[Array, "..."]:
    """Std (µS) of a verify read of a device at g, one programming tick after it was programmed
    there. Drift within that tick is left out: none before t0 on `nandakumar2018`, under 0.3 %
    of G on `joshi2020` (t0 = 20 s, ν ≤ 0.1), far below its read noise."""
    return device.read_std(jnp.asarray(g, jnp.float32), TICK_S)


def history_settled(device: AbstractPCMDevice, x: np.ndarray, within: float) -> int:
    """The SET count from which the pulse law no longer depends on the count: the first n ≥ 1
    whose increment mean and std are within `within` µS of the law's limit (n → ∞) at every
    conductance x (µS); `MAX_COUNT` if none is. Uses only the declared SET law, any family."""
    xs = jnp.asarray(x, jnp.float32)
    counts = jnp.arange(1, MAX_COUNT + 1, dtype=jnp.float32)[:, None]
    limit = jnp.asarray(1e9, jnp.float32)  # a count whose history term is 0
    far = jnp.maximum(
        jnp.abs(device.set_increment_mean(xs, counts) - device.set_increment_mean(xs, limit)),
        jnp.abs(device.set_increment_std(xs, counts) - device.set_increment_std(xs, limit)),
    ).max(axis=1)
    settled = np.flatnonzero(np.asarray(far) <= within)
    return int(settled[0]) + 1 if settled.size else MAX_COUNT


def make_grid(device: AbstractPCMDevice, cells: int = 240, target_stride: int = 4) -> Grid:
    """`cells` steps over [g_min, g_max], reads down to 0 and 5 read-noise stds above g_max."""
    step = (device.g_max - device.g_min) / cells
    g_lo = int(math.ceil(device.g_min / step))
    top = device.g_max + 5 * float(verify_read_std(device, device.g_max))
    n_above = int(math.ceil((top - device.g_max) / step))
    x = device.g_min - g_lo * step + step * np.arange(g_lo, g_lo + cells + 1)
    n_cap = history_settled(device, x, step / 4)
    stride = max(1, min(target_stride, cells))
    return Grid(
        float(device.g_min - g_lo * step), float(step), g_lo + cells + 1 + n_above, g_lo, g_lo + cells, n_cap, stride
    )


def rule_policy(
    device: AbstractPCMDevice, tolerance: float, burst: int, cells: int = 240, counts: int = 1
) -> ProgrammingPolicy:
    """A hand-written rule as a table: within `tolerance` of the target (by read cell) done,
    below a burst of `burst`, above RESET; after a RESET a burst of `burst`, or done when the
    mean RESET level is within tolerance. With `burst` 1 it is write-verify without the read
    right after each RESET."""
    grid = make_grid(device, cells)
    x = grid.x
    targets = grid.targets
    diff = x[None, :] - targets[:, None]
    table = np.where(np.abs(diff) <= tolerance, DONE, np.where(diff < 0, burst, RESET)).astype(np.int8)
    first = np.where(np.abs(device.reset_mean - targets) <= tolerance, DONE, burst).astype(np.int8)
    return ProgrammingPolicy(
        jnp.asarray(np.repeat(table[:, :, None], counts, axis=2)),
        jnp.asarray(first),
        grid.origin,
        grid.step,
        float(targets[0]),
        grid.step * grid.target_stride,
    )


def _cells_of_normal(grid: Grid, mean, std, lo_cell: int, hi_cell: int):
    """P(cell) of Normal(mean, std) (arrays of any shape, cells appended as the last axis); mass
    below `lo_cell` goes to it, above `hi_cell` to it (clipping), other cells get none."""
    x = jnp.asarray(grid.x, jnp.float32)
    idx = jnp.arange(grid.cells)
    lo = jnp.where(idx == lo_cell, -jnp.inf, x - grid.step / 2)
    hi = jnp.where(idx == hi_cell, jnp.inf, x + grid.step / 2)
    mean, std = jnp.asarray(mean)[..., None], jnp.maximum(jnp.asarray(std), 1e-6)[..., None]
    p = norm.cdf((hi - mean) / std) - norm.cdf((lo - mean) / std)
    return jnp.where((idx >= lo_cell) & (idx <= hi_cell), p, 0.0)


class Kernels(NamedTuple):
    burst: jax.Array  # (n_cap + 1, max_burst, read, read'): read after k pulses from a read at count n
    from_reset: jax.Array  # (max_burst, read'): read after k pulses from the RESET state
    belief: jax.Array  # (read, G): where a device read at r is (flat prior)
    reset: jax.Array  # (G,): the RESET state


@jax.jit
def _chain(start, pulses, read):
    """Read distributions after 1 … k pulses: start (a, G), pulses (k, G, G), read (G, r) → (k, a, r)."""

    def step(q, m):
        q = q @ m
        return q, q @ read

    return jax.lax.scan(step, start, pulses)[1]


def transition_kernels(device: AbstractPCMDevice, grid: Grid, max_burst: int = MAX_BURST) -> Kernels:
    """The device model as matrices on `grid` (float32)."""
    x = jnp.asarray(grid.x, jnp.float32)
    read = _cells_of_normal(grid, x, verify_read_std(device, x), 0, grid.cells - 1)  # (G, r); reads floor at 0
    valid = (jnp.arange(grid.cells) >= grid.g_lo) & (jnp.arange(grid.cells) <= grid.g_hi)
    belief = jnp.where(valid[None, :], read.T, 0.0)
    belief = belief / jnp.maximum(belief.sum(1, keepdims=True), 1e-30)

    def pulse(n):  # (G, G') for the n-th SET pulse since RESET
        return _cells_of_normal(
            grid, x + device.set_increment_mean(x, n), device.set_increment_std(x, n), grid.g_lo, grid.g_hi
        )

    pulses = [pulse(min(n, grid.n_cap)) for n in range(grid.n_cap + max_burst + 1)]

    burst = jnp.stack(
        [_chain(belief, jnp.stack(pulses[n + 1 : n + max_burst + 1]), read) for n in range(grid.n_cap + 1)]
    )
    reset_mean, reset_std = device.reset_normal
    reset = _cells_of_normal(grid, reset_mean, reset_std, grid.g_lo, grid.g_hi)
    from_reset = _chain(reset[None, :], jnp.stack(pulses[1 : max_burst + 1]), read)[:, 0]
    return Kernels(burst, from_reset, belief, reset)


def _continuations(v, burst, from_reset, done_at_reset, times):
    """Expected cost of every burst from every (target, read, count), of every first burst after
    a RESET, and the value W of a RESET, given the values v (T, r, n). The kernels are arguments,
    not constants closed over: XLA would fold them at compile time."""
    t_set, t_reset, t_read = times[0], times[1], times[2]
    n_counts, k_max = burst.shape[0], burst.shape[1]
    ks = jnp.arange(1, k_max + 1)
    n_next = jnp.minimum(jnp.arange(n_counts)[:, None] + ks[None, :], n_counts - 1)  # (n, k)
    burst_time = ks * t_set + t_read
    cont = jnp.einsum("nkij,tjnk->tink", burst, v[:, :, n_next]) + burst_time  # (T, r, n, k)
    first = jnp.einsum("kj,tjk->tk", from_reset, v[:, :, jnp.minimum(ks, n_counts - 1)]) + burst_time  # (T, k)
    w = t_reset + jnp.minimum(done_at_reset, first.min(1))  # (T,)
    return cont, first, w


_continuations = jax.jit(_continuations)


@jax.jit
def _sweep(v, burst, from_reset, accept, done_at_reset, times):
    """One value-iteration sweep; also the largest change."""
    cont, _, w = _continuations(v, burst, from_reset, done_at_reset, times)
    new = jnp.minimum(jnp.minimum(accept[:, :, None], cont.min(3)), w[:, None, None])
    return new, jnp.max(jnp.abs(new - v))


@dataclasses.dataclass
class Plan:
    policy: ProgrammingPolicy
    value: jax.Array  # V(T, r, n), µs + penalties; a warm start for the next price
    sweeps: int


def plan_policy(
    device: AbstractPCMDevice,
    grid: Grid,
    kernels: Kernels,
    tolerance: float,
    cost: ProgrammingCost,
    price_us: float,
    error_share: float = 0.25,
    error_cap: float = 100.0,
    value: jax.Array | None = None,
    max_sweeps: int = 500,
    converged_us: float = 1e-5,
) -> Plan:
    """The policy that minimises expected programming time + penalties (µs) per device."""
    t_set, t_reset, t_read = cost.set_s * 1e6, cost.reset_s * 1e6, cost.read_s * 1e6
    x = jnp.asarray(grid.x, jnp.float32)
    targets = jnp.asarray(grid.targets, jnp.float32)
    e = (x[None, :] - targets[:, None]) / tolerance  # (T, G)
    penalty = price_us * ((jnp.abs(e) > 1.0) + error_share * jnp.minimum(e**2, error_cap))
    accept = penalty @ kernels.belief.T  # (T, r): done after reading r
    done_at_reset = penalty @ kernels.reset  # (T,)
    n_counts = grid.n_cap + 1
    v = jnp.broadcast_to(accept[:, :, None], accept.shape + (n_counts,)) if value is None else value
    times = jnp.asarray([t_set, t_reset, t_read], jnp.float32)
    for sweeps in range(1, max_sweeps + 1):  # noqa: B007 (the count is returned below)
        v, delta = _sweep(v, kernels.burst, kernels.from_reset, accept, done_at_reset, times)
        if float(delta) < converged_us:
            break
    cont, from_reset, w = _continuations(v, kernels.burst, kernels.from_reset, done_at_reset, times)
    best_burst = cont.argmin(3) + 1
    options = jnp.stack(
        [jnp.broadcast_to(accept[:, :, None], v.shape), cont.min(3), jnp.broadcast_to(w[:, None, None], v.shape)]
    )
    which = options.argmin(0)
    decision = jnp.where(which == 0, DONE, jnp.where(which == 1, best_burst, RESET)).astype(jnp.int8)
    after_reset = jnp.where(done_at_reset <= from_reset.min(1), DONE, from_reset.argmin(1) + 1).astype(jnp.int8)
    policy = ProgrammingPolicy(
        decision, after_reset, grid.origin, grid.step, float(grid.targets[0]), grid.step * grid.target_stride
    )
    return Plan(policy, v, sweeps)
