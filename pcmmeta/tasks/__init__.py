"""Task families: sample support/query sets; own the loss and the metrics."""

from .arm import ArmTrajectories
from .base import SPLITS, AbstractTaskFamily, TaskBatch, sample_compiled
from .images import FewShotImages
from .sinusoid import Sinusoid

#: Task families by the name a recipe gives in `task.family`.
TASK_FAMILIES: dict[str, type[AbstractTaskFamily]] = {f.name: f for f in (Sinusoid, FewShotImages, ArmTrajectories)}

__all__ = ["AbstractTaskFamily", "ArmTrajectories", "FewShotImages", "Sinusoid", "TASK_FAMILIES", "TaskBatch", "sample_compiled"]
