"""Task kinds: one registry (`TASKS`), one module per kind, one descriptor (`mil.tasks.base.Task`) per kind.

A kind owns everything that differs between classification, multi-label and survival: which label columns it
reads and how, the loss (heads never compute it), what the predictions table holds, its metrics with bootstrap
CIs, its headline and plots, the one-line summary, its report section and how cohort explanations group its
patients. Every layer reads the kind; none tests kind names. `mil list tasks` prints them.
"""

from __future__ import annotations

from features.core.errors import ConfigError
from features.core.registry import Registry
from mil.tasks.base import Task
from mil.tasks.spec import TaskSpec

TASKS = Registry(
    "task",
    modules=("mil.tasks.classification", "mil.tasks.multilabel", "mil.tasks.survival"),
)


def create_task(spec: TaskSpec) -> Task:
    """The task object for a resolved spec (`spec.kind` is the registry name)."""
    return TASKS.create(spec.kind, spec=spec)


def task_kind(name: str) -> type[Task]:
    """The descriptor class of kind `name` (what a kind is, before any labels are read)."""
    return TASKS.get(name).factory


def infer_kind(config) -> str:
    """`train.task`, or the one kind whose `infers` accepts a config that leaves it empty."""
    if config.task is not None:
        return config.task
    fits = [entry.name for entry in TASKS.entries() if entry.factory.infers(config)]
    if not fits:
        raise ConfigError("no target: pass --target COLUMN or set train.target in the config")
    if len(fits) > 1:
        raise ConfigError(f"the config fits the task kinds {', '.join(fits)}; set train.task (--task)")
    return fits[0]


__all__ = ["TASKS", "Task", "TaskSpec", "create_task", "infer_kind", "task_kind"]
