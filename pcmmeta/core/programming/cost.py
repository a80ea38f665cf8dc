"""What programming costs: time and energy per SET pulse, RESET and verify read.

The defaults are order-of-magnitude values for the doped-GST mushroom cells the default device
was measured on (docs/programming.md gives the sources and the reasoning); every figure that
depends on them is reported with them, and every command takes other values.
"""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Float


class ProgrammingCost(eqx.Module):
    set_s: float = 50e-9  # one partial-SET pulse (Nandakumar et al. 2018: 50 ns pulses)
    reset_s: float = 50e-9  # one RESET (melt-quench) pulse
    read_s: float = 200e-9  # one verify read: switch to read bias, settle, convert (ADC)
    set_pj: float = 10.0  # the order of magnitude reported for PCM SET pulses (~10 pJ)
    reset_pj: float = 30.0
    read_pj: float = 1.0

    def time_s(self, set_pulses: Array, resets: Array, reads: Array) -> Float[Array, "..."]:
        """Programming time (s) spent on each device."""
        return self.set_s * set_pulses + self.reset_s * resets + self.read_s * reads

    def energy_pj(self, set_pulses: Array, resets: Array, reads: Array) -> Float[Array, "..."]:
        """Programming energy (pJ) spent on each device."""
        return self.set_pj * set_pulses + self.reset_pj * resets + self.read_pj * reads

    def to_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in ("set_s", "reset_s", "read_s", "set_pj", "reset_pj", "read_pj")}


def counts_time(cost: ProgrammingCost, result) -> Float[Array, "..."]:
    """Per-device programming time (s) of a `ProgramResult`; the initial RESET is included."""
    return cost.time_s(result.set_pulses, result.resets + 1, result.reads)


def counts_energy(cost: ProgrammingCost, result) -> Float[Array, "..."]:
    """Per-device programming energy (pJ) of a `ProgramResult`; the initial RESET is included."""
    return cost.energy_pj(result.set_pulses, result.resets + 1, result.reads)
