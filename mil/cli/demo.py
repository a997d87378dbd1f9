"""`mil demo`: every stage on a small synthetic cohort, offline. Thin: `mil.demo.run_demo` does the work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from mil.demo import DEMO_PATIENTS, DEMO_SEED, DEMO_SLIDE_PX


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(
            Path("demo-out"), "--out", "-o", help="Folder for every output of the demo."
        ),
        patients: int = typer.Option(
            DEMO_PATIENTS, min=15, help="Synthetic patients (APL, AML, healthy in equal shares)."
        ),
        slide_px: int = typer.Option(
            DEMO_SLIDE_PX, min=1000, help="Side of each synthetic smear in px (0.25 µm/px)."
        ),
        seed: int = typer.Option(
            DEMO_SEED,
            min=0,
            max=2**32 - 1,
            help="Seed of the cohort, the extraction subsample, the training and its bootstrap.",
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace the outputs of an earlier demo in OUT."
        ),
    ) -> None:
        """Run synth -> extract -> train -> cells -> count -> heatmap -> report on a synthetic cohort; print where."""
        from rich.progress import SpinnerColumn, TextColumn

        from mil.cli.progress import Steps
        from mil.demo import run_demo

        console = Console()
        steps = Steps(console, SpinnerColumn(), TextColumn("{task.description}"))
        task = None

        def progress(event: str, **info: Any) -> None:
            nonlocal task
            if event == "stage_start":
                if task is None:
                    task = steps.add(f"[bold]{info['stage']}[/] ...")
                else:
                    steps.update(task, description=f"[bold]{info['stage']}[/] ...")
            elif event == "stage_done":
                steps.print(f"[green]done[/] {info['stage']:<8} {info['seconds']:6.1f} s  {info['wrote']}")

        with steps:
            result = run_demo(out, patients=patients, slide_px=slide_px, seed=seed, overwrite=overwrite,
                              progress=progress)  # fmt: skip
        table = Table(title=f"mil demo -> {out}", title_justify="left")
        for col in ("stage", "seconds", "output"):
            table.add_column(col)
        for name, seconds, wrote in result.stages:
            table.add_row(name, f"{seconds:.1f}", wrote)
        console.print(table)
        console.print(f"Open the report: [bold]{result.report}[/]", highlight=False, soft_wrap=True)
