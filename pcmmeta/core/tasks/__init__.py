"""Task families: sample support/query sets; own the loss and the metrics."""

from pcmmeta.core.tasks.arm import ArmTrajectories
from pcmmeta.core.tasks.base import SPLITS as SPLITS
from pcmmeta.core.tasks.base import AbstractTaskFamily, TaskBatch, sample_compiled
from pcmmeta.core.tasks.images import FewShotImages
from pcmmeta.core.tasks.sinusoid import Sinusoid

#: Task families by the name a recipe gives in `task.family`.
TASK_FAMILIES: dict[str, type[AbstractTaskFamily]] = {f.name: f for f in (Sinusoid, FewShotImages, ArmTrajectories)}

__all__ = [
    "AbstractTaskFamily",
    "ArmTrajectories",
    "FewShotImages",
    "Sinusoid",
    "TASK_FAMILIES",
    "TaskBatch",
    "sample_compiled",
]
