"""When the chip reads and pulses: the inner loop's schedule, in seconds.

Times are counted from offline programming during meta-training and from the end of deployment
on a deployed array. Inner step r (r = 0 … steps − 1) reads the head at `read_time(r)` and pulses
at `pulse_time(r)`; the query read comes `t_wait` after the last pulse. With Δ = t_prog + t_wait −
t_read, step r's read and pulse are those of step 0 moved by r·Δ.

The times are arrays, not static fields: the chip commands move the clock to hours after
deployment without recompiling.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float


class ChipClock(eqx.Module):
    t_read: Float[Array, ""]  # s: the head's read before the first inner step (and the body's support read)
    t_prog: Float[Array, ""]  # s: the first inner step's pulses
    t_wait: Float[Array, ""]  # s: from the last pulses to the query read
    steps: int = eqx.field(static=True, default=1)  # inner steps (pulse rounds)

    def __init__(self, t_read, t_prog, t_wait, steps: int = 1):
        self.t_read = jnp.asarray(t_read, jnp.float32)
        self.t_prog = jnp.asarray(t_prog, jnp.float32)
        self.t_wait = jnp.asarray(t_wait, jnp.float32)
        self.steps = int(steps)

    @property
    def period(self) -> Float[Array, ""]:
        return self.t_prog + self.t_wait - self.t_read

    def read_time(self, step: int) -> Float[Array, ""]:
        return self.t_read + step * self.period

    def pulse_time(self, step: int) -> Float[Array, ""]:
        return self.t_prog + step * self.period

    @property
    def t_query(self) -> Float[Array, ""]:
        return self.t_prog + (self.steps - 1) * self.period + self.t_wait

    @classmethod
    def on_deployed_chip(cls, t: float | Array, t_wait: float | Array, steps: int) -> "ChipClock":
        """The clock of an adaptation at time t on a deployed array: read at t, the first
        pulses 1 s later, the query read `t_wait` after the last."""
        t = jnp.asarray(t, jnp.float32)
        return cls(t, t + 1.0, t_wait, steps)
