"""Write the small SYNTHETIC example inputs shipped in examples/, for the README's commands:

- examples/glyph-classes-SYNTHETIC/: 5 classes × 5 drawings (28 × 28 PNG) of procedural glyphs
  drawn with seed 2026, so none is one of the glyphs a recipe trains on (seed 0): for
  `pcmmeta adapt --support examples/glyph-classes-SYNTHETIC/` on a 5-way 5-shot run.
- examples/arm-demonstration-SYNTHETIC.csv: one trajectory of `recipes/arm-quick.yaml`'s task
  family (100 steps; columns t,x,y: the step and the end effector's position, in the units of
  `task.link_lengths`), drawn with PRNG key 2026: for
  `pcmmeta adapt --support examples/arm-demonstration-SYNTHETIC.csv` on an arm-quick run.

The files are deterministic: `python tools/make_examples.py` rewrites them byte for byte
(tests/test_examples.py checks the contents against a fresh draw).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GLYPH_FOLDER = "glyph-classes-SYNTHETIC"
ARM_DEMONSTRATION = "arm-demonstration-SYNTHETIC.csv"
SEED = 2026
CLASSES, DRAWINGS = 5, 5
ARM_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "arm-quick.yaml"


def glyph_images() -> np.ndarray:
    """(classes, drawings, 28, 28) uint8: ink is dark on white, as a scan of a drawing."""
    from pcmmeta.io.imagedata import glyphs

    images = glyphs(CLASSES, DRAWINGS, seed=SEED).images  # float in [0, 1], ink = 1
    return np.round(255 * (1.0 - images)).astype(np.uint8)


def arm_demonstration() -> np.ndarray:
    """(time_steps, 3): t (step 1 … T), x, y (end effector, units of `task.link_lengths`)."""
    import jax

    from pcmmeta.experiment.recipe import load_recipe
    from pcmmeta.io.task_data import build_task_family

    family = build_task_family(load_recipe(ARM_RECIPE)["task"])
    task = family.sample(jax.random.key(SEED), 1)
    xy = np.asarray(family.positions(task.y_query[0, 0]), np.float64)
    steps = np.arange(1, xy.shape[0] + 1, dtype=np.float64)
    return np.column_stack([steps, xy])


def write(out: Path = EXAMPLES) -> None:
    from PIL import Image

    for c, drawings in enumerate(glyph_images()):
        folder = out / GLYPH_FOLDER / f"class{c + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        for d, image in enumerate(drawings):
            Image.fromarray(image, mode="L").save(folder / f"{d + 1}.png", optimize=True)
    rows = ["t,x,y"] + [f"{int(t)},{x:.6f},{y:.6f}" for t, x, y in arm_demonstration()]
    (out / ARM_DEMONSTRATION).write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EXAMPLES, help="folder to write into (default: examples/)")
    write(parser.parse_args().out)
