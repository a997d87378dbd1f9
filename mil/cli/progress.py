"""One progress display for every command: rich bars on a terminal, one plain line per step elsewhere.

Why: rich redraws its bars in place. Written to a file or a pipe (CI logs, `mil train ... > log`) the bars are
rendered once at the end, and a terminal narrower than the columns squeezes them into "━━ 9… 0…". So the
bars are live only on a terminal at least `MIN_WIDTH` columns wide; otherwise each step is one line: a task
that starts, a description that changes (a slide's next stage), a count that advances or reaches its total.
Updates that only move a count (the cells of one slide, the epochs of one fold) print at most every
`interval_s` seconds per task, so a log stays readable and still shows that a long step is alive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

MIN_WIDTH = 60  # narrower than this, the bar's columns no longer fit beside a slide name


def default_columns() -> tuple[ProgressColumn, ...]:
    return TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()


def is_live(console: Console) -> bool:
    """Bars only where they can be redrawn in place and fit: a real terminal, wide enough."""
    return console.is_terminal and not console.is_dumb_terminal and console.width >= MIN_WIDTH


@dataclass
class _Step:
    description: str
    total: float | None
    completed: float = 0
    fields: dict[str, Any] = field(default_factory=dict)
    printed_at: float = 0.0


class Steps:
    """`with Steps(console) as steps:` then `add`, `update`, `remove`, `print`, as with a rich Progress."""

    def __init__(
        self,
        console: Console,
        *columns: ProgressColumn,
        transient: bool = True,
        live: bool | None = None,
        interval_s: float = 10.0,
    ):
        self.console = console
        self.live = is_live(console) if live is None else live
        self.interval_s = interval_s
        self._bar = Progress(*(columns or default_columns()), console=console, transient=transient)
        self._steps: dict[int, _Step] = {}

    def __enter__(self) -> Steps:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.live:
            self._bar.start()

    def stop(self) -> None:
        if self.live:
            self._bar.stop()

    def add(self, description: str, total: float | None = None, **fields: Any) -> int:
        task = int(self._bar.add_task(description, total=total, start=True, **fields))
        if not self.live:
            self._steps[task] = _Step(description, total, fields=dict(fields))
            self._line(self._steps[task])
        return task

    def update(
        self,
        task: int,
        *,
        description: str | None = None,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        **fields: Any,
    ) -> None:
        if self.live:
            self._bar.update(
                task, description=description, total=total, completed=completed, advance=advance, **fields
            )
            return
        step = self._steps[task]
        renamed = description is not None and description != step.description
        was_done = step.total is not None and step.completed >= step.total
        step.description = step.description if description is None else description
        step.total = step.total if total is None else total
        step.completed = step.completed if completed is None else completed
        step.completed += advance or 0
        step.fields.update(fields)
        done = step.total is not None and step.completed >= step.total
        if renamed or advance or (done and not was_done):
            self._line(step)
        elif time.monotonic() - step.printed_at >= self.interval_s:
            self._line(step)

    def remove(self, task: int) -> None:
        self._bar.remove_task(task)
        self._steps.pop(task, None)

    def print(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def _line(self, step: _Step) -> None:
        count = ""
        if step.total is not None:
            count = f" {step.completed:g}/{step.total:g}"
        elif step.completed:
            count = f" {step.completed:g}"
        extra = "  ".join(str(v) for v in step.fields.values() if v not in (None, ""))
        self.print(f"{step.description}{count}" + (f"  {extra}" if extra else ""))
        step.printed_at = time.monotonic()
