"""A user's support set for `adapt --support`: a CSV whose columns the task family names
(`support_columns`), or a folder of class folders (image families)."""

from __future__ import annotations

from pathlib import Path

from pcmmeta.core.tasks import AbstractTaskFamily, TaskBatch
from pcmmeta.errors import UserInputError
from pcmmeta.io.imagedata import load_image_folder
from pcmmeta.io.measurements import read_columns_csv


def read_support(family: AbstractTaskFamily, path: str | Path) -> TaskBatch:
    """One task whose support (and query) set is the file's (`UserInputError` naming the path)."""
    if family.support_columns is None:
        return family.task_from_support(load_image_folder(Path(path), 1).images, str(path))
    if Path(path).is_dir():  # a folder of class folders is the image families' support, not this one's
        choices = " or ".join(",".join(c) for c in family.support_columns)
        raise UserInputError(f"{path}: is a folder; a {family.name} support set is a CSV with columns {choices}")
    columns = read_columns_csv(path, list(family.support_columns), family.support_rows)
    return family.task_from_support(columns, str(path))
