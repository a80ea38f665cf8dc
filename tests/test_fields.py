"""Recipe keys declared once as module fields (pcmmeta/core/fields.py)."""

import equinox as eqx
import pytest

from pcmmeta.core.fields import Field, from_section, hyperparameter, hyperparameter_group, schema_of
from pcmmeta.core.networks import NETWORKS
from pcmmeta.experiment.recipe import validate


class Dynamics(eqx.Module):
    dt: float = hyperparameter(1e-3, "float", "time step, s", positive=True)
    steps: int = hyperparameter(10, "int", "steps", low=1)


class Architecture(eqx.Module):
    sizes: tuple[int, int] = hyperparameter([4, 5], "ints", "layer sizes")
    dynamics: Dynamics = hyperparameter_group(Dynamics)
    scale: float = hyperparameter(2.0, "float", "scale", positive=True)


def test_a_group_lists_its_keys_where_it_is_declared():
    assert list(schema_of(Architecture)) == ["sizes", "dt", "steps", "scale"]
    assert schema_of(Architecture)["sizes"] == Field([4, 5], "ints", "layer sizes")  # the recipe's default: a list


def test_a_module_is_built_by_keyword_from_one_section_groups_included():
    built = from_section(Architecture, {"sizes": [7, 8], "dt": 0.5, "steps": 3, "scale": 1.5, "kind": "ignored"})
    assert built == Architecture(sizes=(7, 8), dynamics=Dynamics(dt=0.5, steps=3), scale=1.5)
    assert Architecture().sizes == (4, 5) and Architecture().dynamics == Dynamics()  # defaults: as a module holds them


def test_extra_keys_follow_and_named_keys_lead():
    extra = {"data": Field(None, "path", "where the data are")}
    assert list(schema_of(Architecture, extra)) == ["sizes", "dt", "steps", "scale", "data"]
    assert list(schema_of(Architecture, extra, first=("sizes", "data", "scale"))) == ["sizes", "data", "scale", "dt", "steps"]


def test_a_key_declared_twice_is_refused():
    class Twice(eqx.Module):
        dt: float = hyperparameter(1.0, "float", "again")
        dynamics: Dynamics = hyperparameter_group(Dynamics)

    with pytest.raises(TypeError, match="'dt' declared twice"):
        schema_of(Twice)


@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_a_networks_defaults_are_its_architectures(kind):
    """The `network:` section's keys are the architecture's fields: a recipe that sets none gives
    the architecture every default."""
    network = NETWORKS[kind]
    assert network.schema() == schema_of(network.architecture_class)
    assert network.architecture_from(validate({"network": {"kind": kind}})["network"]) == network.architecture_class()
