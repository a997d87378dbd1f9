"""`mil cells train|count`: a cell-type classifier on stored embeddings, and the differential count it gives.
Thin: resolve the `cells` config, call `mil.cells.train.train_cells` or `mil.cells.differential.count_cells`,
print a rich table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from mil.cli.options import config_option, field_option, set_option, typed_flags
from mil.cli.progress import Steps
from mil.config.sections import CellsConfig

cells_app = typer.Typer(help="Cell types and the differential count.", no_args_is_help=True)


@cells_app.command("train")
def train(
    ctx: typer.Context,
    bags: Path = typer.Option(..., "--bags", help="Bag store whose cells the labels name."),
    labels: Path = typer.Option(
        ...,
        "--labels",
        help="Cell labels: a folder <patient>/<any folders>/<class>/<image>, a CSV (slide_id, file | instance "
        "| x,y, cell_type), or a `mil synth` cohort folder (its truth/ tables).",
    ),
    out: Path = typer.Option(..., "-o", "--out", help="Cell model folder to create."),
    classifier: str = field_option(CellsConfig, "classifier", "--classifier"),
    vocabulary: str = field_option(CellsConfig, "vocabulary", "--vocabulary"),
    folds: int = field_option(CellsConfig, "folds", "--folds"),
    min_cells_per_class: int = field_option(CellsConfig, "min_cells_per_class", "--min-cells-per-class"),
    seed: int = field_option(CellsConfig, "seed", "--seed"),
    config: str = config_option(),
    set_: list[str] = set_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing cell model folder."),
) -> None:
    """Train a cell-type classifier on the frozen embeddings; patient-grouped CV, calibrated probabilities."""
    from mil.cells.train import train_cells
    from mil.config import load_config

    cfg = load_config(config, set_, typed_flags(ctx, "cells")).cells
    console = Console()
    with Steps(console) as steps:
        task = steps.add("read labels", total=None)

        def progress(event: str, **info: Any) -> None:
            if event == "labels":
                steps.update(task, total=info["total"], completed=info["done"])
            elif event == "cv":
                steps.update(task, description="cross-validate", total=info["total"], completed=0)
            elif event == "fold":
                steps.update(task, total=info["total"], completed=info["done"])
            elif event == "final":
                steps.update(task, description="fit on all labelled cells")

        summary = train_cells(bags, labels, out, cfg, overwrite=overwrite, progress=progress)
    for line in summary.account.lines(cfg.min_cells_per_class):
        console.print(f"[yellow]note:[/] {line}", highlight=False, soft_wrap=True)
    console.print(_train_table(summary))
    m = summary.metrics
    console.print(
        f"{cfg.classifier} on {summary.account.used} cells of {summary.n_patients} patients, {m['n_folds']}-fold "
        f"patient-grouped CV: balanced accuracy {m['balanced_accuracy']:.3f}, temperature {m['temperature']:.2f} "
        f"(ECE {m['ece_uncalibrated']:.3f} -> {m['ece']:.3f}); written to {summary.out}",
        highlight=False,
        soft_wrap=True,
    )


def _train_table(summary: Any) -> Table:
    table = Table(title=f"mil cells train -> {summary.out}", title_justify="left")
    for col in ("class", "cells", "precision", "recall", "F1"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, row in summary.metrics["per_class"].items():
        table.add_row(name.replace("_", " "), str(row["support"]), f"{row['precision']:.3f}",
                      f"{row['recall']:.3f}", f"{row['f1']:.3f}")  # fmt: skip
    return table


@cells_app.command("count")
def count(
    ctx: typer.Context,
    cellmodel: Path = typer.Argument(..., help="Cell model folder written by `mil cells train`."),
    bags: Path = typer.Option(..., "--bags", help="Bag store to count (the cell model's encoder)."),
    out: Path = typer.Option(
        ..., "-o", "--out", help="Folder to create: slides.csv, patients.csv, counts.json."
    ),
    slide: list[str] = typer.Option(None, "--slide", help="Slide id to count (repeatable; default: all)."),
    labels: Path = typer.Option(
        None, "--labels", help="CSV mapping slide_id -> patient_id (default: each bag's own patient_id)."
    ),
    reference_ranges: str = field_option(CellsConfig, "reference_ranges", "--reference-ranges"),
    config: str = config_option(),
    set_: list[str] = set_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing counts folder."),
) -> None:
    """Differential count per slide and patient: % per type with 95 % intervals, blast %, M:E, flags."""
    from mil.cells.differential import count_cells
    from mil.config import load_config

    cfg = load_config(config, set_, typed_flags(ctx, "cells")).cells
    console = Console()
    with Steps(console) as steps:
        task = steps.add("count", total=None)

        def progress(event: str, **info: Any) -> None:
            if event in ("start", "slide"):
                steps.update(task, total=info["total"], completed=info.get("done", 0))

        summary = count_cells(
            cellmodel,
            bags,
            out,
            cfg,
            slides=slide or None,
            overwrite=overwrite,
            progress=progress,
            labels=labels,
        )
    console.print(_count_table(summary))
    console.print(
        "Percentages are of the counted nucleated cells, each with its 95 % Clopper-Pearson interval; flags are "
        f"for review, not diagnoses. Details: {summary.out}/slides.csv, patients.csv, counts.json",
        highlight=False,
        soft_wrap=True,
    )


def _count_table(summary: Any) -> Table:
    import numpy as np

    from mil.cells.count import interval_words

    result = summary.result
    counted = [c for c in result.model.classes if result.model.vocabulary.counted(c)]
    table = Table(title=f"mil cells count -> {summary.out}", title_justify="left")
    for col in ("patient", "cells", "counted", "blast %", "95% CI", "M:E", "most frequent", "flags"):
        table.add_column(col, justify="left" if col in ("patient", "most frequent") else "right")
    for r in result.patients:
        blast, me = r.measures.get("blast_pct"), r.measures.get("me_ratio")
        has_blast = blast is not None and blast.value is not None
        common = max(counted, key=lambda c: r.counts[c]) if counted and r.n_counted else ""
        table.add_row(
            r.id + (" *" if r.in_training else ""),
            str(r.n_cells),
            str(r.n_counted),
            f"{blast.value:.1f}" if has_blast else "–",
            f"{blast.lo:.1f}-{blast.hi:.1f}" if has_blast else "–",
            "–" if me is None or me.value is None else f"{me.value:.2f}",
            f"{common.replace('_', ' ')} {_pct(r.pct[common].value)}" if common else "",
            str(len(r.flags)) if r.flags else "",
        )
    n = int(np.median([r.n_counted for r in result.patients])) if result.patients else 0
    notes = [f"{len(result.slides)} slides, {len(result.patients)} patients"]
    if n:
        notes.append(interval_words(n))
    if any(r.in_training for r in result.patients):
        notes.append("* the cell model learnt from this patient's labels (not a test)")
    table.caption = "; ".join(notes)
    return table


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} %"


def register(app: typer.Typer) -> None:
    app.add_typer(cells_app, name="cells")
