"""The meta-training memory estimate and the refusal of recipes too large (pcmmeta/experiment/memory.py)."""

import glob
import re
from pathlib import Path

import equinox as eqx
import jax
import pytest
import yaml
from typer.testing import CliRunner

from pcmmeta.cli.app import app
from pcmmeta.core.networks import NETWORKS, AbstractNetwork
from pcmmeta.errors import UserInputError
from pcmmeta.experiment.memory import check_training_memory, estimate_training_memory
from pcmmeta.experiment.recipe import load_recipe, validate
from pcmmeta.experiment.train import EvalConfig, TrainConfig
from pcmmeta.io.device_file import load_device
from pcmmeta.io.task_data import build_task_family

RECIPES = Path(__file__).parent.parent / "recipes"


def typed(recipe: dict) -> dict:
    """The typed pieces of a validated recipe that `build_experiment` gives the memory check."""
    network_class = NETWORKS[recipe["network"]["kind"]]
    return {
        "network_class": network_class,
        "architecture": network_class.architecture_from(recipe["network"]),
        "family": build_task_family(recipe["task"]),
        "device": load_device(recipe["device"]),
        "tasks_per_chip": recipe["maml"]["tasks_per_chip"],
        "train": TrainConfig(**recipe["train"]),
        "evaluation": EvalConfig(**recipe["eval"]),
        "recipe": recipe,
    }


def estimate(recipe: dict):
    pieces = typed(recipe)
    return estimate_training_memory(**pieces), pieces["family"]


@pytest.mark.parametrize(
    "sizes",
    [
        {"network": {"hidden": [100_000, 100_000], "time_steps": 10_000}},
        {"task": {"shots": 1_000_000}},
        {"train": {"chunk_tasks": 100_000, "meta_batch": 100_000}, "network": {"time_steps": 100_000}},
        {"task": {"family": "images", "queries": 15}, "network": {"kind": "cnn", "channels": 50_000}, "train": {"chunk_tasks": 64}},
    ],
)
def test_absurd_recipes_are_refused_before_anything_is_created(tmp_path, monkeypatch, sizes):
    monkeypatch.delenv("PCMMETA_MEMORY_LIMIT", raising=False)
    recipe = tmp_path / "huge.yaml"
    recipe.write_text(yaml.safe_dump({"name": "huge", **sizes}))
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["meta-train", str(recipe), "--runs-dir", str(runs)])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and line.startswith(f"error: {recipe}: meta-training needs an estimated "), line
    assert re.search(r"needs an estimated [\d.]+ (TB|GB), more than the [\d.]+ (TB|GB|MB) of ", line), line  # estimate, unit
    assert "PCMMETA_MEMORY_LIMIT overrides" in line
    assert not runs.exists()


def test_shipped_recipes_are_accepted(monkeypatch):
    # Every shipped recipe fits in 8 GB (the largest estimate is ≈ 4.5 GB: glyphs 5-way 5-shot).
    monkeypatch.setenv("PCMMETA_MEMORY_LIMIT", "8G")
    checked = 0
    for path in sorted(glob.glob(str(RECIPES / "*.yaml"))):
        recipe = load_recipe(path)
        if recipe["task"].get("data"):
            continue  # needs the Omniglot folder; its sizes equal glyphs-5way-5shot's
        estimate = check_training_memory(**typed(recipe), origin=path)
        assert 0.5e9 < estimate.total < 6e9, (path, estimate)
        checked += 1
    assert checked >= 9


def test_estimate_grows_with_the_sizes_that_drive_it():
    base, _ = estimate(validate({"network": {"hidden": [40, 40], "time_steps": 100}, "train": {"meta_batch": 32}}))
    longer, _ = estimate(validate({"network": {"hidden": [40, 40], "time_steps": 200}, "train": {"meta_batch": 32}}))
    # ×2 up to each task's chip (device states: independent of time)
    assert longer.parts["activations"] == pytest.approx(2 * base.parts["activations"], rel=0.05)
    assert longer.parts["activations"] < 2 * base.parts["activations"]
    wider, _ = estimate(validate({"network": {"hidden": [400, 400], "time_steps": 100}, "train": {"meta_batch": 32}}))
    assert wider.parts["activations"] > 9 * base.parts["activations"]
    assert wider.parts["parameters"] > 50 * base.parts["parameters"]  # hidden × hidden


def test_the_default_estimate_is_conservative_for_the_lif_network():
    pieces = typed(validate({"network": {"hidden": [40, 60], "time_steps": 50}}))
    family = pieces["family"]
    # as the memory check sees it: traced, its arrays are shapes
    net = eqx.filter_eval_shape(
        lambda: pieces["network_class"].init(jax.random.key(0), pieces["architecture"], family, pieces["device"])
    )
    args = (family, 20, 20, 16)
    default = AbstractNetwork.activation_bytes(net, *args, backward=True)
    own = net.activation_bytes(*args, backward=True)
    assert default >= own > 0


def test_a_network_estimates_its_activations_from_its_own_sizes():
    """The sizes come from the network (traced or not), not from the recipe: the estimate of
    an initialised network is the memory check's."""
    for sizes in (
        {"network": {"hidden": [8, 12], "time_steps": 7}},
        {"task": {"family": "images", "glyph_classes": 40}, "network": {"kind": "cnn", "channels": 6, "blocks": 3}},
        {"task": {"family": "arm"}, "network": {"kind": "rsnn", "neurons": 9, "lsg_neurons": 11}, "inner": {"rule": "eprop-lsg"}},
    ):
        pieces = typed(validate(sizes))
        family = pieces["family"]

        def init():
            return pieces["network_class"].init(jax.random.key(0), pieces["architecture"], family, pieces["device"])

        traced, built = eqx.filter_eval_shape(init), init()
        for backward in (True, False):
            assert traced.activation_bytes(family, 5, 6, 3, backward) == built.activation_bytes(family, 5, 6, 3, backward)


@pytest.mark.parametrize("value, refused", [("off", False), ("1K", True), ("1e15", False), ("lots", None)])
def test_the_limit_can_be_overridden(monkeypatch, value, refused):
    monkeypatch.setenv("PCMMETA_MEMORY_LIMIT", value)
    pieces = typed(validate({}))
    if refused is None:
        with pytest.raises(UserInputError, match="PCMMETA_MEMORY_LIMIT='lots': give bytes"):
            check_training_memory(**pieces, origin="r.yaml")
    elif refused:
        with pytest.raises(UserInputError, match="more than the 1 kB of PCMMETA_MEMORY_LIMIT"):
            check_training_memory(**pieces, origin="r.yaml")
    else:
        check_training_memory(**pieces, origin="r.yaml")
