"""Programming methods: how target conductances get into the devices (docs/programming.md).

- `WriteVerify`: iterative read → compare → one SET pulse (RESET on overshoot).
- `SingleShot`: the mean-trajectory pulse count, blind.
- `LearnedProgramming`: write-verify whose blind bursts between verify reads a trained
  `ProgrammingPolicy` chooses.
"""

from .base import AbstractProgrammingMethod, ProgramResult
from .cost import ProgrammingCost, counts_energy, counts_time
from .learned import (
    LearnedProgramming,
    PolicyInfo,
    PolicyTraining,
    ProgrammingPolicy,
    cached_policy_path,
    check_policy_fits,
    device_fingerprint,
    learn_policy,
    learned_program,
    load_policy,
    obtain_policy,
    save_policy,
    train_policy,
)
from .single_shot import SingleShot, single_shot
from .write_verify import WriteVerify, write_verify

#: Programming methods by the name `deploy --method` takes.
PROGRAMMING_METHODS: dict[str, type[AbstractProgrammingMethod]] = {
    m.name: m for m in (WriteVerify, SingleShot, LearnedProgramming)
}



def make_method(name: str, tolerance: float, max_pulses: int, policy: ProgrammingPolicy | None = None) -> AbstractProgrammingMethod:
    """The method `deploy --method NAME` means, with the options that apply to it."""
    if name == WriteVerify.name:
        return WriteVerify(tolerance, max_pulses)
    if name == LearnedProgramming.name:
        if policy is None:
            raise ValueError("the learned method needs a policy (obtain_policy)")
        return LearnedProgramming(policy, tolerance, max_pulses)
    return PROGRAMMING_METHODS[name]()


__all__ = [
    "AbstractProgrammingMethod", "ProgramResult", "ProgrammingCost", "counts_energy", "counts_time",
    "LearnedProgramming", "PolicyInfo", "PolicyTraining", "ProgrammingPolicy", "cached_policy_path",
    "check_policy_fits", "device_fingerprint", "learn_policy", "learned_program", "load_policy", "obtain_policy", "save_policy", "train_policy",
    "SingleShot", "single_shot", "WriteVerify", "write_verify", "PROGRAMMING_METHODS", "make_method",
]
