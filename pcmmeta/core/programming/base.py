"""What every programming method shares: the result of programming and the method interface.

A method is an `AbstractProgrammingMethod` with one operation, `program(key, device, targets)`,
on a flat array of target conductances (µS), returning a `ProgramResult` that counts what a
chip controller spends per device: SET pulses, RESETs and verify reads. `cost.ProgrammingCost`
turns those counts into time and energy.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from pcmmeta.core.devices import AbstractPCMDevice, DeviceState
from pcmmeta.core.devices.base import RESET, SET_PULSES

#: Simulated time (s) of one programming tick: a verify read comes this long after the pulse
#: before it (write-verify and the learned policy; the planner's reads assume the same).
TICK_S = 1.0


class ProgramResult(eqx.Module):
    state: DeviceState  # devices after programming, times as programmed (t = 0 at the start)
    set_pulses: Int[Array, "..."]
    resets: Int[Array, "..."]  # RESETs after the initial one (overshoots)
    reads: Int[Array, "..."]  # verify reads
    converged: Bool[Array, "..."]  # ended by the method's own rule, not at the budget (True for blind methods)
    t_end: Float[Array, ""]  # s of simulated time: when the last device finished

    @property
    def pulses(self) -> Int[Array, "..."]:
        """SET pulses + RESETs: what the pulse budget counts."""
        return self.set_pulses + self.resets


class AbstractProgrammingMethod(eqx.Module):
    name: ClassVar[str]
    #: What the device family must be able to do (`DEVICE_CAPABILITIES`): every shipped method
    #: RESETs a device and then SET-pulses it up (blind, or verified after each burst).
    needs_device: ClassVar[frozenset[str]] = frozenset({SET_PULSES, RESET})

    @property
    def budget(self) -> int | None:
        """The pulse budget per device (SET + RESET) where one applies (devices that end at it
        are reported), else None."""
        return None

    def conductances(
        self, layers: dict[str, Float[Array, "2 ..."]], device: AbstractPCMDevice
    ) -> dict[str, Float[Array, "2 ..."]]:
        """The conductances (µS) to program for a network's layers, each (2, …) with G⁺ at 0:
        the trained ones; a method may choose others that give the same weights (G⁺ − G⁻)."""
        return layers

    @abc.abstractmethod
    def program(self, key: PRNGKeyArray, device: AbstractPCMDevice, target: Float[Array, " n"]) -> ProgramResult: ...
