"""Task families: sample support/query sets; own the loss and the metrics."""

from .base import AbstractTaskFamily, TaskBatch
from .sinusoid import Sinusoid

#: Task families by the name a recipe gives in `task.family`.
TASK_FAMILIES: dict[str, type[AbstractTaskFamily]] = {f.name: f for f in (Sinusoid,)}

__all__ = ["AbstractTaskFamily", "Sinusoid", "TASK_FAMILIES", "TaskBatch"]
