"""Programming methods: how target conductances get into the devices (docs/programming.md).

- `WriteVerify`: iterative read → compare → one SET pulse (RESET on overshoot);
  `WriteVerifySetOnFlat` SETs instead of RESETting on an overshoot where the SET law is flat,
  `WriteVerifyBurst` also starts after every RESET with an open-loop burst to one pulse short of
  the mean trajectory's tolerance band (the stronger baselines).
- `SingleShot`: the mean-trajectory pulse count, blind.
- `LearnedProgramming`: a `ProgrammingPolicy` chooses, after each verify read, done, a blind
  burst of SET pulses or RESET; planned on the device model (`planning.py`) and calibrated to
  write-verify's precision (`training.py`).
- `NetworkAwareProgramming`: blind for every device, verified where the network's objective is
  sensitive (`sensitivity.py`), within a budget of total device time (`network_aware.py`);
  planned for a network (`plan_network_aware`), so not among `PROGRAMMING_METHODS`, which
  `make_method` builds from a name alone.
"""

from pcmmeta.core.programming.base import AbstractProgrammingMethod, ProgramResult
from pcmmeta.core.programming.cost import ProgrammingCost, counts_energy, counts_time
from pcmmeta.core.programming.learned import MAX_BURST, LearnedProgramming, ProgrammingPolicy, learned_program
from pcmmeta.core.programming.network_aware import NetworkAwareProgramming, plan_network_aware
from pcmmeta.core.programming.planning import make_grid, plan_policy, rule_policy, transition_kernels
from pcmmeta.core.programming.policy_info import POLICY_FORMAT, PolicyInfo, device_fingerprint
from pcmmeta.core.programming.single_shot import SingleShot, single_shot
from pcmmeta.core.programming.training import PolicyTraining, learn_policy, sample_targets, train_policy
from pcmmeta.core.programming.write_verify import WriteVerify, WriteVerifyBurst, WriteVerifySetOnFlat, write_verify

#: Programming methods by the name `deploy --method` takes.
PROGRAMMING_METHODS: dict[str, type[AbstractProgrammingMethod]] = {
    m.name: m for m in (WriteVerify, WriteVerifySetOnFlat, WriteVerifyBurst, SingleShot, LearnedProgramming)
}


def make_method(
    name: str, tolerance: float, max_pulses: int, policy: ProgrammingPolicy | None = None
) -> AbstractProgrammingMethod:
    """The method `deploy --method NAME` means, with the options that apply to it."""
    cls = PROGRAMMING_METHODS[name]
    if issubclass(cls, WriteVerify):
        return cls(tolerance, max_pulses)
    if name == LearnedProgramming.name:
        if policy is None:
            raise ValueError("the learned method needs a policy (obtain_policy)")
        return LearnedProgramming(policy, tolerance, max_pulses)
    return cls()


__all__ = [
    "AbstractProgrammingMethod",
    "ProgramResult",
    "ProgrammingCost",
    "counts_energy",
    "counts_time",
    "MAX_BURST",
    "LearnedProgramming",
    "ProgrammingPolicy",
    "learned_program",
    "NetworkAwareProgramming",
    "plan_network_aware",
    "make_grid",
    "plan_policy",
    "rule_policy",
    "transition_kernels",
    "POLICY_FORMAT",
    "PolicyInfo",
    "device_fingerprint",
    "PolicyTraining",
    "learn_policy",
    "sample_targets",
    "train_policy",
    "SingleShot",
    "single_shot",
    "WriteVerify",
    "WriteVerifyBurst",
    "WriteVerifySetOnFlat",
    "write_verify",
    "PROGRAMMING_METHODS",
    "make_method",
]
