"""`mil report`: one self-contained HTML file about a run and the cells behind its calls. Thin: parse flags,
call `mil.report.build.report` once, show progress and where the file is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from mil.cli.options import config_option, field_option, set_option, typed_flags
from mil.cli.progress import Steps
from mil.config.sections import ReportConfig

SHOWN = 3  # slides whose missing cells are named on screen; the report names every one


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        ctx: typer.Context,
        run: Path = typer.Argument(..., help="Run folder written by `mil train`."),
        bags: Path = typer.Option(..., "--bags", help="Bag store of the cohort (the run's encoder)."),
        output: Path = typer.Option(..., "-o", "--output", help="HTML file to write, e.g. report.html."),
        top_k: int = field_option(ReportConfig, "top_k", "--top-k"),
        clusters: int = field_option(ReportConfig, "clusters", "--clusters"),
        labels: Path = typer.Option(
            None, "--labels", help="Labels CSV mapping slide_id -> patient_id (default: the run's own)."
        ),
        seed: int = field_option(ReportConfig, "seed", "--seed"),
        config: str = config_option(),
        set_: list[str] = set_option(),
        cells: Path = typer.Option(
            None,
            "--cells",
            help="Cell model from `mil cells train`: add the differential count (stacked bars, table, 95 % "
            "intervals, flags) and label each discovery cluster with its cell types.",
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
    ) -> None:
        """One self-contained HTML report: metrics with CIs, plots, predictions, cell galleries, discovery."""
        from mil.config import load_config
        from mil.report.build import report

        cfg = load_config(config, set_, typed_flags(ctx, "report"))
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
                run, bags, output, labels=labels, config=cfg.report, overwrite=overwrite, progress=progress,
                cells=cells, cells_config=cfg.cells,
            )  # fmt: skip
        how = "attention" if summary.method == "attention" else f"attribution ({summary.method})"
        found = ", ".join(f"{k} {v}" for k, v in summary.clusters.items()) or "none"
        console.print(
            f"wrote {summary.out}: {summary.n_patients} patients, {summary.head} {how}, clusters per class: {found} "
            f"({summary.seconds:.1f} s)",
            highlight=False,
        )
        missing = list(summary.missing_sources.items())
        for slide, why in missing[:SHOWN]:  # a moved source folder is every slide: a few lines, then a count
            console.print(f"[yellow]cells of {slide} shown as grey tiles[/]: {why}", highlight=False)
        if len(missing) > SHOWN:
            console.print(
                f"[yellow]... and {len(missing) - SHOWN} more slides shown as grey tiles[/] (each named in the report's provenance)",
                highlight=False,
            )
