"""A tiny recipe for fast tests: small network, few steps, few tasks."""

from pcmmeta.experiment.recipe import validate


def tiny_recipe(**overrides) -> dict:
    user = {
        "name": "tiny",
        "seed": 0,
        "task": {"shots": 5},
        "network": {"hidden": [8, 8], "time_steps": 12},
        "inner": {"pulse_threshold": 0.01},
        "train": {"iterations": 6, "meta_batch": 8, "chunk_tasks": 4, "checkpoint_every": 3, "log_every": 1, "warmup": 0, "learning_rate": 0.05},
        "eval": {"tasks": 20, "plot_tasks": 2},
    }
    for key, value in overrides.items():
        section, _, leaf = key.partition("__")
        if leaf:
            user.setdefault(section, {})[leaf] = value
        else:
            user[section] = value
    return validate(user)


def assert_png_drawn(path, min_width: int = 300, min_height: int = 200) -> None:
    """`path` is a PNG of at least this many pixels with something drawn on it (a blank canvas
    has a single colour)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG", image.format
        width, height = image.size
        pixels = np.asarray(image.convert("L"))
    assert width >= min_width and height >= min_height, (width, height)
    assert len(np.unique(pixels)) > 8 and pixels.std() > 5, "the image is (nearly) blank"
