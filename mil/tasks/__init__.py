"""Tasks: what a head's logits mean, which loss trains them and how labels become targets.

One registry (`TASKS`), one short file per task kind. A task owns the loss (heads never compute it), the
conversion of logits to the predictions table (probabilities or risk) and the main validation metric used for
early stopping and the progress display. `mil list tasks` prints them.
"""

from __future__ import annotations

from features.core.registry import Registry
from mil.tasks.base import Task, TaskSpec

TASKS = Registry(
    "task",
    modules=("mil.tasks.classification", "mil.tasks.multilabel", "mil.tasks.survival"),
)


def create_task(spec: TaskSpec) -> Task:
    """The task object for a resolved spec (`spec.kind` is the registry name)."""
    return TASKS.create(spec.kind, spec=spec)


__all__ = ["TASKS", "Task", "TaskSpec", "create_task"]
