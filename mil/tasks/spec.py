"""`TaskSpec`: the resolved answer to "what is predicted", in plain data.

The kind (a `TASKS` name), the label column(s) and the output order. It is written into every fold checkpoint
and into the predictions sidecar (`<predictions.csv>.spec.json`), so prediction and evaluation never re-infer
it from data. What a kind *does* with a spec (loss, columns, metrics, ...) is its `Task` (`create_task(spec)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from features.core.errors import ConfigError, InputError


@dataclass(frozen=True)
class TaskSpec:
    """kind: a `TASKS` name; target: label column (classification), label columns (multilabel) or
    [time_col, event_col] (survival); classes: output order (class names; label names; [] for survival).

    Built specs are valid: names become text, and the kind checks the shape (`Task.check_spec`)."""

    kind: str
    target: str | list[str]
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from mil.tasks import TASKS

        try:
            kind = TASKS.get(self.kind).factory
        except ConfigError:
            raise InputError(
                f"task spec: kind {self.kind!r} is not one of {', '.join(TASKS.names())}"
            ) from None
        classes = [str(c) for c in self.classes]
        object.__setattr__(self, "classes", classes)
        target = self.target if isinstance(self.target, str) else [str(t) for t in self.target]
        object.__setattr__(self, "target", target)
        if len(set(classes)) != len(classes):
            raise InputError(f"task spec: duplicate class names in {classes}")
        kind.check_spec(self)

    def label_columns(self) -> list[str]:
        """The labels-CSV column(s) this task reads."""
        return [self.target] if isinstance(self.target, str) else list(self.target)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "target": self.target, "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, data: dict, source: str = "spec") -> TaskSpec:
        try:
            return cls(kind=data["kind"], target=data["target"], classes=list(data.get("classes") or []))
        except (KeyError, TypeError) as exc:
            raise InputError(f"{source}: not a task spec (needs kind, target, classes): {exc}") from exc
