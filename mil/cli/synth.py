"""`mil synth`: write a synthetic bone-marrow smear cohort (crops and/or pyramidal slides, labels, truth)."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def _default(name: str):
    from features.synth.config import SynthConfig

    return SynthConfig.model_fields[name].default


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth(
        out: Path = typer.Argument(..., help="Cohort folder to create (must be empty unless --overwrite)."),
        patients: int = typer.Option(_default("patients"), help="Number of patients."),
        layout: str = typer.Option(
            _default("layout"), help="cells | slides | both (cells and slides) | fields (camera JPEGs)."
        ),
        sites: int = typer.Option(_default("sites"), help="Number of sites (stain/scanner shifts)."),
        seed: int = typer.Option(
            _default("seed"), help="Seed: same seed, same labels and truth, byte for byte."
        ),
        witness: float = typer.Option(_default("witness"), help="0..1: share of disease-defining cells."),
        cells_per_patient: int = typer.Option(
            _default("cells_per_patient"), help="Crops per patient (cells)."
        ),
        crop_px: int = typer.Option(
            _default("crop_px"), help="Crop side in px (cells; 96 px = 24 µm at 0.25)."
        ),
        slide_px: int = typer.Option(_default("slide_px"), help="Slide side in px at level 0 (slides)."),
        slides_per_patient: int = typer.Option(_default("slides_per_patient"), help="Slides per patient."),
        fields_per_patient: int = typer.Option(
            _default("fields_per_patient"), help="Microscope fields per patient (fields)."
        ),
        field_px: int = typer.Option(_default("field_px"), help="Field width in px, 4:3 frames (fields)."),
        mpp: float = typer.Option(_default("mpp"), help="Microns per pixel of crops and slide level 0."),
        contact_sheet: bool = typer.Option(False, "--contact-sheet", help="Also write contact_sheet.png."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous cohort in OUT."),
        workers: int = typer.Option(
            min(2, os.cpu_count() or 1), help="Worker processes (the output does not depend on it)."
        ),
    ) -> None:
        """Write a synthetic cohort: labels.csv, cells/ and/or slides/ (or fields/), truth/, cohort.json."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from features.synth import generate_cohort, make_config

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
            contact_sheet=contact_sheet,
        )
        console = Console()
        columns = (
            TextColumn("synth"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("", total=None)

            def progress(event: str, **info) -> None:
                if event == "plan":
                    bar.update(task, total=info["total"])
                elif event == "job":
                    bar.update(task, advance=1, description=f"{info['kind']} {info['name']}")

            summary = generate_cohort(out, config, overwrite=overwrite, progress=progress, workers=workers)
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
        console.print(table)
