"""The data a task family is built from: image folders or the built-in glyphs for `images`;
nothing for the procedural families (sinusoids, arm trajectories)."""

from __future__ import annotations

from pathlib import Path

from pcmmeta.core.tasks import TASK_FAMILIES, AbstractTaskFamily
from pcmmeta.core.tasks.images import ImageSplits
from pcmmeta.errors import UserInputError
from pcmmeta.io import imagedata as D


def load_task_data(section: dict) -> ImageSplits | None:
    """What `TASK_FAMILIES[section["family"]].from_recipe` needs besides the section."""
    if section["family"] != "images":
        return None
    return load_image_splits(section)


def build_task_family(section: dict) -> AbstractTaskFamily:
    """The task family a validated `task:` section describes, with its data read."""
    return TASK_FAMILIES[section["family"]].from_recipe(section, load_task_data(section))


def load_image_splits(section: dict) -> ImageSplits:
    """Training, validation and test classes: the validation classes are carved out of the
    training classes (`validation_fraction`, by `split_seed`)."""
    need = section["shots"] + section["queries"]
    try:
        train, test = _train_and_test(section, need)
    except UserInputError as err:
        raise UserInputError(
            f"{err} ('task.data'/'task.eval_data'; pcmmeta downloads nothing: get the data yourself, or drop 'data' for the built-in glyphs)"
        ) from None
    try:
        train, validation = D.split_classes(
            train, 1 - section["validation_fraction"], section["split_seed"], "validation"
        )
    except UserInputError:
        ways = section["ways"]
        raise UserInputError(
            f"{section['data'] or 'glyphs'}: {train.n_classes} training classes are too few to carve out validation classes "
            f"('task.validation_fraction': {section['validation_fraction']}); a {ways}-way task needs at least {ways} classes in each split"
        ) from None
    skipped = train.skipped + test.skipped
    source = train.source + (f" ({skipped} unreadable files skipped)" if skipped else "")
    return ImageSplits(train.images, validation.images, test.images, source)


def _train_and_test(section: dict, need: int) -> tuple[D.ImageSet, D.ImageSet]:
    if section["data"] is None:
        full = D.cached_glyphs(
            section["glyph_classes"], section["glyph_drawings"], section["glyph_seed"], section["glyph_jitter"]
        )
        return D.split_classes(full, section["train_fraction"], section["split_seed"])
    if section["eval_data"] is None:
        return D.split_classes(
            D.load_image_folder(Path(section["data"]), need), section["train_fraction"], section["split_seed"]
        )
    return D.load_image_folder(Path(section["data"]), need), D.load_image_folder(Path(section["eval_data"]), need)
