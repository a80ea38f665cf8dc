"""Which plug-ins work together: what each declares, and the one check of a combination.

Every kind of plug-in declares, as class variables, what it gives and what it needs:

| plug-in | declares | values |
|---|---|---|
| task family | `inputs`: what its tasks give a network | `INPUTS` |
| network | `reads`: the task inputs it accepts; `provides`: what it offers an inner rule | `INPUTS`; `NETWORK_FEATURES` |
| inner rule | `needs_network`; `needs_device` (an instance property: `eprop-lsg` needs what its `update` does) | `NETWORK_FEATURES`; `DEVICE_CAPABILITIES` |
| mode | `needs_device`: the chip modes program offline with the family's programmed state | `DEVICE_CAPABILITIES` |
| programming method | `needs_device` | `DEVICE_CAPABILITIES` |
| device family | `capabilities`: what its laws let a controller do | `DEVICE_CAPABILITIES` |

`check_experiment` is called once, when an experiment is built from a validated recipe
(`pcmmeta.experiment.train.build_experiment`), before any network is initialised (a rule's
limits on the head's size, `check_head`, right after: only the network knows its sizes), and
`check_programming` when a method is chosen for `deploy`: an unsupported combination is one
`UserInputError` naming the recipe key (or flag) to change and what would fit, never a traceback
from deep inside a compiled function.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.devices.base import DEVICE_CAPABILITIES
from pcmmeta.core.inner import AbstractInnerRule
from pcmmeta.core.modes import AbstractMode
from pcmmeta.core.networks import NETWORKS, AbstractNetwork
from pcmmeta.core.programming import AbstractProgrammingMethod
from pcmmeta.core.tasks import TASK_FAMILIES, AbstractTaskFamily
from pcmmeta.errors import UserInputError

#: What a task family's tasks give a network (`AbstractTaskFamily.inputs`, `AbstractNetwork.reads`).
INPUTS = {
    "vector": "a vector of input currents",
    "images": "images",
    "clock": "a clock and a demonstration to imitate",
}
#: What a network can offer an inner rule (`AbstractNetwork.provides`, `AbstractInnerRule.needs_network`).
NETWORK_FEATURES = {"learning-signal": "a learning-signal generator"}


def _names(items: Iterable[str]) -> str:
    return ", ".join(sorted(items)) or "none"


def declared(plugin: object, name: str) -> Any:
    """The plug-in's declaration `name` (a class variable); a plug-in class that leaves it out
    is a programming error named in one line, not an `AttributeError` deep in the check."""
    try:
        return getattr(plugin, name)
    except AttributeError:
        cls = plugin if isinstance(plugin, type) else type(plugin)
        raise TypeError(
            f"plug-in {cls.__module__}.{cls.__qualname__} does not declare '{name}' (docs/plugins.md, "
            "'Which plug-ins fit together')"
        ) from None


def check_network(family: type[AbstractTaskFamily] | AbstractTaskFamily, network: type[AbstractNetwork]) -> None:
    """The network reads what the task family's tasks give."""
    inputs, reads = declared(family, "inputs"), declared(network, "reads")
    if inputs in reads:
        return
    kinds = [n.kind for n in NETWORKS.values() if inputs in getattr(n, "reads", ())]
    families = [f.name for f in TASK_FAMILIES.values() if getattr(f, "inputs", None) in reads]
    ways = [f"use network.kind: {' or '.join(kinds)} with this task family"] if kinds else []
    ways += [f"use task.family: {' or '.join(families)} with this network"] if families else []
    raise UserInputError(
        f"'network.kind': {network.kind} reads {' or '.join(INPUTS.get(r, r) for r in sorted(reads))}, "
        f"but task family {family.name!r} gives {INPUTS.get(inputs, inputs)}"
        + (f" ({'; or '.join(ways)})" if ways else "")
    )


def check_rule(rule: AbstractInnerRule, network: type[AbstractNetwork]) -> None:
    """The network offers what the inner rule needs from it."""
    missing = rule.needs_network - declared(network, "provides")
    if missing:
        kinds = [n.kind for n in NETWORKS.values() if rule.needs_network <= getattr(n, "provides", frozenset())]
        raise UserInputError(
            f"'inner.rule': {rule.name} needs a network with {' and '.join(NETWORK_FEATURES.get(m, m) for m in sorted(missing))}"
            + (f" (network.kind: {' or '.join(kinds)})" if kinds else "")
        )


def check_device(device: AbstractPCMDevice, needs: frozenset[str], what: str) -> None:
    """The device family can do what `what` (a recipe key and value, or a flag) needs."""
    capabilities = declared(type(device), "capabilities")
    missing = needs - capabilities
    if missing:
        raise UserInputError(
            f"{what} needs a device that can {' and '.join(DEVICE_CAPABILITIES.get(m, m) for m in sorted(missing))}, "
            f"which device {device.name!r} (family {device.family}) cannot; its family can {_names(capabilities)}"
        )


def check_experiment(
    family: AbstractTaskFamily,
    network: type[AbstractNetwork],
    rule: AbstractInnerRule,
    mode: AbstractMode,
    device: AbstractPCMDevice,
) -> None:
    """Every pair of the recipe's plug-ins fits: network and task family, inner rule and
    network, inner rule and mode against the device family (the rule's needs also for a
    software mode: `deploy` puts every run on the chip)."""
    check_network(family, network)
    check_rule(rule, network)
    # also for a run trained in software: a deployed run adapts on the chip (the `pcm` mode)
    check_device(device, rule.needs_device, f"'inner.rule': {rule.name}")
    check_device(device, mode.needs_device, f"'mode': {mode.name}")


def check_programming(
    method: AbstractProgrammingMethod | type[AbstractProgrammingMethod], device: AbstractPCMDevice
) -> None:
    """The device family can be programmed by `method` (`deploy --method`)."""
    check_device(device, method.needs_device, f"--method {method.name}")
