"""`mil heatmap`: per-slide attention tables, cell galleries, overlays and QuPath GeoJSON. Thin: parse flags,
call `mil.explain.heatmap.heatmap` once, show progress and a summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from mil.cli.options import config_option, field_option, set_option, typed_flags
from mil.cli.progress import Steps
from mil.config.sections import ExplainConfig


def register(app: typer.Typer) -> None:
    @app.command("heatmap")
    def heatmap_cmd(
        ctx: typer.Context,
        run: Path = typer.Argument(..., help="Run folder written by `mil train`."),
        bags: Path = typer.Option(
            ..., "--bags", help="Bag store with the slides to explain (the run's encoder)."
        ),
        output: Path = typer.Option(
            ..., "-o", "--output", help="Folder to create (one sub-folder per slide)."
        ),
        slide: list[str] = typer.Option(
            None, "--slide", help="Slide id to explain (repeatable; default: all)."
        ),
        top_k: int = field_option(ExplainConfig, "top_k", "--top-k"),
        config: str = config_option(),
        set_: list[str] = set_option(),
        labels: Path = typer.Option(
            None, "--labels", help="Labels CSV mapping slide_id -> patient_id (default: the run's own)."
        ),
        cells: Path = typer.Option(
            None,
            "--cells",
            help="Cell model from `mil cells train`: name each cell's type in attention.csv (cell_type, "
            "cell_type_p), gallery captions, an overlay by type and QuPath classifications.",
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    ) -> None:
        """Where the model looked, per slide: attention.csv, galleries, overlays and cells.geojson."""
        from mil.cli import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL
        from mil.config import load_config
        from mil.explain.heatmap import heatmap

        cfg = load_config(config, set_, typed_flags(ctx, "explain"))
        console = Console()
        with Steps(console) as steps:
            task = steps.add("explain", total=None)

            def progress(event: str, **info: Any) -> None:
                if event == "start":
                    steps.update(task, total=info["total"])
                elif event == "slide_done":
                    result = info["result"]
                    if result.status == "failed":
                        steps.print(f"[red]failed[/] {result.slide_id}: {result.error}")
                    steps.update(task, advance=1)

            summary = heatmap(
                run, bags, output, slides=slide or None, config=cfg.explain, overwrite=overwrite,
                progress=progress, labels=labels, cells=cells,
            )  # fmt: skip
        console.print(_table(summary))
        how = (
            "attention (head weights)" if summary.method == "attention" else f"attribution ({summary.method})"
        )
        rows = "one row shared by all classes" if summary.class_agnostic else "one row per class"
        written, failed = summary.count("written"), summary.count("failed")
        if written == 0:  # no heatmap.json of this run exists: the table above is the only record
            console.print(f"{summary.head}: {how}, {rows}", soft_wrap=True)
            console.print(
                f"[red]nothing written[/]: all {failed} slide(s) failed (errors above); {output} left unchanged",
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_FAILED)
        console.print(f"{summary.head}: {how}, {rows}; details in {output}/heatmap.json", soft_wrap=True)
        raise typer.Exit(EXIT_PARTIAL if failed else EXIT_OK)


def _table(summary: Any) -> Table:
    table = Table(title=f"mil heatmap -> {summary.out}", title_justify="left")
    for col in ("slide", "patient", "status", "cells", "files / error"):
        table.add_column(col, justify="right" if col == "cells" else "left")
    style = {"written": "green", "failed": "red"}
    for r in summary.slides:
        detail = _files(r.files) if r.status == "written" else r.error
        table.add_row(
            r.slide_id, r.patient_id, f"[{style[r.status]}]{r.status}[/]", str(r.n_instances), detail
        )
    table.caption = (
        f"{summary.count('written')} written, {summary.count('failed')} failed in {summary.seconds:.1f} s"
    )
    return table


def _files(files: list[str]) -> str:
    """The files of one slide; a fields bag's per-field files are counted, not listed (one line per bag)."""
    own = [f for f in files if not f.startswith("fields/")]
    fields = {f.split("/")[1] for f in files if f.startswith("fields/")}
    return ", ".join(own + ([f"fields/<field>/ for {len(fields)} field(s)"] if fields else []))
