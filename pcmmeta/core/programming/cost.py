"""What programming costs: time and energy per SET pulse, RESET and verify read.

The defaults are order-of-magnitude values for the doped-GST mushroom cells the default device
was measured on (docs/programming.md gives the sources and the reasoning); every figure that
depends on them is reported with them, and every command takes other values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import numpy as np
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


def row_parallel_time(per_device_s: np.ndarray, layer_shapes: Sequence[tuple[int, ...]]) -> float:
    """Chip time (s) when every word line is programmed in one go: all devices of a crossbar
    row are pulsed and read together, so a row costs its slowest device, and rows follow one
    another. `per_device_s` is flat over the layers in order, each layer (2, rows, …): G⁺ and
    G⁻ of a weight sit on the same row (docs/chip-bridge.md's crossbar layout)."""
    total, start = 0.0, 0
    per_device_s = np.asarray(per_device_s, np.float64)
    for shape in layer_shapes:
        size = math.prod(shape)
        layer = per_device_s[start : start + size].reshape(shape[0], shape[1], -1)  # (2, rows, cols)
        total += float(np.sum(np.max(layer, axis=(0, 2))))
        start += size
    if start != per_device_s.size:
        raise ValueError(f"layer shapes hold {start} devices, the times {per_device_s.size}")
    return total
