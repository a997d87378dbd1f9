"""`mil report`: one self-contained HTML file about a run and the cells behind its calls. Thin: parse flags,
call `mil.report.build.report` once, show progress and where the file is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from mil.cli.progress import Steps


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        run: Path = typer.Argument(..., help="Run folder written by `mil train`."),
        bags: Path = typer.Option(..., "--bags", help="Bag store of the cohort (the run's encoder)."),
        output: Path = typer.Option(..., "-o", "--output", help="HTML file to write, e.g. report.html."),
        top_k: int = typer.Option(24, "--top-k", min=1, help="Cells per class gallery."),
        clusters: int = typer.Option(6, "--clusters", min=1, help="k-means clusters per class (discovery)."),
        labels: Path = typer.Option(
            None, "--labels", help="Labels CSV mapping slide_id -> patient_id (default: the run's own)."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the discovery sampling and k-means."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
    ) -> None:
        """One self-contained HTML report: metrics with CIs, plots, predictions, cell galleries, discovery."""
        from mil.report.build import report

        console = Console()
        with Steps(console) as steps:
            task = steps.add("explain patients", total=None)

            def progress(event: str, **info: Any) -> None:
                if event in ("start", "patient"):
                    steps.update(task, total=info["total"], completed=info.get("done", 0))
                elif event in ("discovery", "images"):
                    steps.update(
                        task, description={"discovery": "cluster cells", "images": "read cells"}[event]
                    )

            summary = report(
                run, bags, output, labels=labels, top_k=top_k, n_clusters=clusters, overwrite=overwrite,
                progress=progress, seed=seed,
            )  # fmt: skip
        how = "attention" if summary.method == "attention" else f"attribution ({summary.method})"
        found = ", ".join(f"{k} {v}" for k, v in summary.clusters.items()) or "none"
        console.print(
            f"wrote {summary.out}: {summary.n_patients} patients, {summary.head} {how}, clusters per class: {found} "
            f"({summary.seconds:.1f} s)",
            highlight=False,
        )
        for slide, why in summary.missing_sources.items():
            console.print(f"[yellow]cells of {slide} shown as grey tiles[/]: {why}", highlight=False)
