"""The example inputs shipped in examples/ (the README's commands use them): each is what
tools/make_examples.py draws, and each is read as the support set of the family it is for."""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pcmmeta.io.imagedata import load_image_folder
from pcmmeta.io.support_file import read_support

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _tool():
    spec = importlib.util.spec_from_file_location("make_examples", ROOT / "tools" / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _tool()


def test_the_glyph_classes_are_the_tools_draw_and_not_training_glyphs():
    drawn = tool.glyph_images()
    folder = EXAMPLES / tool.GLYPH_FOLDER
    shipped = np.stack(
        [
            np.stack([np.asarray(Image.open(folder / f"class{c + 1}" / f"{d + 1}.png")) for d in range(tool.DRAWINGS)])
            for c in range(tool.CLASSES)
        ]
    )
    np.testing.assert_array_equal(shipped, drawn)
    assert len({image.tobytes() for image in shipped.reshape(-1, 28 * 28)}) == tool.CLASSES * tool.DRAWINGS
    from pcmmeta.io.imagedata import glyphs

    # another generator seed: no example is a drawing of the recipes' glyph set (seed 0; its
    # first 200 classes × 20 drawings here, a prefix of the full set). The same seed would put
    # every example at distance 0 from a training drawing; other characters are ≥ 4 apart.
    trained = (1.0 - glyphs(200, 20, seed=0).images).reshape(-1, 28 * 28).astype(np.float32)
    examples = drawn.reshape(-1, 28 * 28).astype(np.float32) / 255
    squared = (examples**2).sum(1)[:, None] + (trained**2).sum(1)[None] - 2 * examples @ trained.T
    assert float(np.sqrt(np.maximum(squared, 0)).min()) > 2.0


def test_the_glyph_classes_load_as_a_5_way_5_shot_support_set():
    images = load_image_folder(EXAMPLES / tool.GLYPH_FOLDER, 1).images
    assert images.shape == (5, 5, 28, 28)
    assert 0.02 < float(images.mean()) < 0.5  # ink (1 after inversion) on a white page


def test_the_arm_demonstration_is_the_tools_draw_and_reads_back_as_its_velocities():
    import jax

    from pcmmeta.experiment.recipe import load_recipe
    from pcmmeta.io.task_data import build_task_family

    shipped = np.loadtxt(EXAMPLES / tool.ARM_DEMONSTRATION, delimiter=",", skiprows=1)
    np.testing.assert_allclose(shipped, tool.arm_demonstration(), atol=1e-6)
    family = build_task_family(load_recipe(ROOT / "recipes" / "arm-quick.yaml")["task"])
    task = read_support(family, EXAMPLES / tool.ARM_DEMONSTRATION)
    drawn = family.sample(jax.random.key(tool.SEED), 1)
    # six decimals of position give the angular velocities back to about 1e-3 (rad per step / step_size)
    np.testing.assert_allclose(np.asarray(task.y_support), np.asarray(drawn.y_query), atol=5e-3)
    assert float(np.abs(np.asarray(drawn.y_query)).max()) > 0.1  # a trajectory that moves


@pytest.mark.parametrize("name", ["README.md", "docs/arm.md", "docs/classification.md"])
def test_every_example_path_in_the_docs_exists(name):
    text = (ROOT / name).read_text()
    paths = set(re.findall(r"examples/[\w./-]+", text))
    assert paths or name != "README.md"
    for path in paths:
        assert (ROOT / path.rstrip("/.")).exists(), path
    assert not re.search(r"my-measurements\.csv|my-classes/|\bdemo\.csv", text)  # no placeholders that cannot run
