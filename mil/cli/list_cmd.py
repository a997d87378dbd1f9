"""`mil list`: what each registry holds (names come from the registries, never re-typed)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table


def registries() -> dict:
    from mil.registries import all_registries

    return all_registries()


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_(
        axis: str = typer.Argument(
            None, help="sources | encoders | heads | tasks | baselines | cell-classifiers (default: all)"
        ),
    ) -> None:
        """List the registered sources, encoders, MIL heads, tasks, baselines and cell classifiers."""
        regs = registries()
        if axis is not None and axis not in regs:
            from features.core.errors import InputError

            raise InputError(f"unknown registry {axis!r}; choose one of: {', '.join(regs)}")
        console = Console()
        for name, reg in regs.items():
            if axis is not None and name != axis:
                continue
            table = Table(title=name, show_header=True, title_justify="left")
            table.add_column("name", style="bold")
            table.add_column("what it is")
            for entry in reg.entries():
                table.add_row(entry.name, entry.summary)
            console.print(table)
