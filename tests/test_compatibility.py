"""Plug-ins declare what they give and need; one check refuses a combination that does not fit,
when the experiment is built (before any network is initialised or compiled)."""

import pytest

from pcmmeta.core.compatibility import (
    INPUTS,
    NETWORK_FEATURES,
    check_device,
    check_experiment,
    check_programming,
)
from pcmmeta.core.devices import Joshi2020, Nandakumar2018
from pcmmeta.core.devices.base import DEVICE_CAPABILITIES, PROGRAMMED_STATE
from pcmmeta.core.inner import INNER_RULES
from pcmmeta.core.modes import MODES
from pcmmeta.core.networks import NETWORKS
from pcmmeta.core.programming import PROGRAMMING_METHODS, make_method
from pcmmeta.core.tasks import TASK_FAMILIES, Sinusoid
from pcmmeta.errors import UserInputError
from pcmmeta.experiment.recipe import validate
from pcmmeta.experiment.train import build_experiment


class PresetOnly(Nandakumar2018):
    """A family a lab can only program to targets (no SET-increment law, no RESET statistics)."""

    capabilities = frozenset({PROGRAMMED_STATE})


def test_every_plugin_declares_what_it_gives_and_needs_in_the_known_terms():
    for family in TASK_FAMILIES.values():
        assert family.inputs in INPUTS, family.name
    for network in NETWORKS.values():
        assert network.reads and network.reads <= set(INPUTS), network.kind
        assert network.provides <= set(NETWORK_FEATURES), network.kind
    for rule in INNER_RULES.values():
        assert rule.needs_network <= set(NETWORK_FEATURES) and rule().needs_device <= set(DEVICE_CAPABILITIES)
    # each task family has a network that reads it
    assert all(any(f.inputs in n.reads for n in NETWORKS.values()) for f in TASK_FAMILIES.values())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"task": {"family": "images"}},
            "'network.kind': lif reads a vector of input currents, but task family 'images' gives images "
            "(use network.kind: cnn with this task family; or use task.family: sinusoid with this network)",
        ),
        ({"network": {"kind": "cnn"}}, "'network.kind': cnn reads images, but task family 'sinusoid' gives a vector"),
        ({"network": {"kind": "rsnn"}}, "use network.kind: lif with this task family; or use task.family: arm"),
        (
            {"inner": {"rule": "eprop-lsg"}},
            "'inner.rule': eprop-lsg needs a network with a learning-signal generator (network.kind: rsnn)",
        ),
        # planned-pulse plans over the head's curvature: a head of 4,097 weights is refused at build
        (
            {"inner": {"rule": "planned-pulse"}, "network": {"hidden": [4, 4097]}},
            "head layer 'out' has 4,097 weights, more than 4,096",
        ),
    ],
)
def test_a_combination_that_does_not_fit_is_refused_when_the_experiment_is_built(overrides, message):
    with pytest.raises(UserInputError) as err:
        build_experiment(validate(overrides))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_device_family_without_set_pulses_refuses_the_rules_and_methods_that_pulse():
    device = PresetOnly(name="preset-only")
    family = Sinusoid()
    lif = NETWORKS["lif"]
    pcm = MODES["pcm"]()
    # verified re-programming only needs programming to a target: accepted
    check_experiment(family, lif, INNER_RULES["reprogram-sgd"](), pcm, device)
    for name in ("blind-pulse", "quantized-sgd", "planned-pulse"):
        with pytest.raises(UserInputError, match=f"'inner.rule': {name} needs a device that can take SET pulses"):
            check_experiment(family, lif, INNER_RULES[name](), pcm, device)
    # the same rule in software is still checked: a deployed run adapts on the chip
    with pytest.raises(UserInputError, match="which device 'preset-only' \\(family nandakumar2018\\) cannot"):
        check_experiment(family, lif, INNER_RULES["blind-pulse"](), MODES["ideal"](), device)
    for name in PROGRAMMING_METHODS:
        if name == "learned":
            continue  # needs a policy; the same class variable as the others
        with pytest.raises(UserInputError, match=f"--method {name} needs a device that can"):
            check_programming(make_method(name, 0.5, 100), device)
    # the built-in families can do everything every plug-in needs
    for full in (Nandakumar2018(), Joshi2020()):
        for rule in INNER_RULES.values():
            for mode in MODES.values():
                check_device(full, rule().needs_device | mode().needs_device, "a recipe")
        for name in PROGRAMMING_METHODS:
            if name != "learned":
                check_programming(make_method(name, 0.5, 100), full)


def test_a_plugin_that_leaves_out_a_declaration_is_named():
    class Undeclared(NETWORKS["lif"]):
        pass

    del_reads = type("NoReads", (), {"kind": "noreads"})  # a network class without `reads`
    with pytest.raises(TypeError, match="NoReads does not declare 'reads'"):
        check_experiment(Sinusoid(), del_reads, INNER_RULES["blind-pulse"](), MODES["pcm"](), Nandakumar2018())
    check_experiment(Sinusoid(), Undeclared, INNER_RULES["blind-pulse"](), MODES["pcm"](), Nandakumar2018())
