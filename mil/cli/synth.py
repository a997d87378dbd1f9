"""`mil synth`: write a synthetic bone-marrow smear cohort (crops and/or pyramidal slides, labels, truth)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from features.synth.config import SynthConfig
from mil.cli.options import field_option


def summary_table(summary: Any) -> Table:
    """What `generate_cohort` wrote, one row per kind of output."""
    table = Table(title=f"wrote {summary.out}", title_justify="left", show_header=False)
    table.add_row("patients", str(summary.patients))
    table.add_row("diagnoses", ", ".join(f"{k} {v}" for k, v in sorted(summary.diagnoses.items())))
    table.add_row("sites", ", ".join(summary.sites))
    if summary.crops:
        table.add_row("crops", f"{summary.crops} in cells/<patient_id>/")
    if summary.slides:
        table.add_row(
            "slides", f"{summary.slides} in slides/ ({summary.nucleated_on_slides} nucleated cells)"
        )
    if summary.fields:
        table.add_row(
            "fields",
            f"{summary.fields} in fields/<patient_id>/ ({summary.nucleated_in_fields} nucleated cells)",
        )
    table.add_row("files", ", ".join(summary.files))
    return table


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth(
        out: Path = typer.Argument(..., help="Cohort folder to create (must be empty unless --overwrite)."),
        patients: int = field_option(SynthConfig, "patients"),
        layout: str = field_option(SynthConfig, "layout"),
        sites: int = field_option(SynthConfig, "sites"),
        seed: int = field_option(SynthConfig, "seed"),
        witness: float = field_option(SynthConfig, "witness"),
        cells_per_patient: int = field_option(SynthConfig, "cells_per_patient"),
        crop_px: int = field_option(SynthConfig, "crop_px"),
        slide_px: int = field_option(SynthConfig, "slide_px"),
        slides_per_patient: int = field_option(SynthConfig, "slides_per_patient"),
        fields_per_patient: int = field_option(SynthConfig, "fields_per_patient"),
        field_px: int = field_option(SynthConfig, "field_px"),
        mpp: float = field_option(SynthConfig, "mpp"),
        blast_share: str = field_option(SynthConfig, "blast_share"),
        cellularity_scale: float = field_option(SynthConfig, "cellularity_scale"),
        cell_size_scale: float = field_option(SynthConfig, "cell_size_scale"),
        particles: int = field_option(SynthConfig, "particles"),
        particle_size_scale: float = field_option(SynthConfig, "particle_size_scale"),
        contact_sheet: bool = field_option(SynthConfig, "contact_sheet", "--contact-sheet"),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous cohort in OUT."),
        workers: int = typer.Option(
            min(2, os.cpu_count() or 1), help="Worker processes (the output does not depend on it)."
        ),
    ) -> None:
        """Write a synthetic cohort: labels.csv, cells/ and/or slides/ (or fields/), truth/, cohort.json."""
        from features.synth import generate_cohort, make_config
        from mil.cli.progress import Steps

        config = make_config(
            patients=patients,
            layout=layout,
            sites=sites,
            seed=seed,
            witness=witness,
            cells_per_patient=cells_per_patient,
            crop_px=crop_px,
            slide_px=slide_px,
            slides_per_patient=slides_per_patient,
            fields_per_patient=fields_per_patient,
            field_px=field_px,
            mpp=mpp,
            blast_share=blast_share,
            cellularity_scale=cellularity_scale,
            cell_size_scale=cell_size_scale,
            particles=particles,
            particle_size_scale=particle_size_scale,
            contact_sheet=contact_sheet,
        )
        console = Console()
        with Steps(console) as steps:
            task = steps.add("synth", total=None)

            def progress(event: str, **info) -> None:
                if event == "plan":
                    steps.update(task, total=info["total"])
                elif event == "job":
                    steps.update(task, advance=1, description=f"synth {info['kind']} {info['name']}")

            summary = generate_cohort(out, config, overwrite=overwrite, progress=progress, workers=workers)
        console.print(summary_table(summary))
