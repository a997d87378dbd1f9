"""The `cells` layout: OUT/cells/<patient_id>/<n>.png crops, like a CellaVision export, and their truth table.

The patient folder is the "slide" of this layout: a cell-folder source uses the folder name (= patient_id) as
slide id, and labels.csv lists it with slide_id = patient_id. Crops are numbered 1..N in drawing order; the
truth table OUT/truth/cells/<patient_id>.csv names each file relative to the patient folder.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from features.synth.cohort import Patient
from features.synth.config import SynthConfig
from features.synth.crops import render_cells
from features.synth.stain import SiteStain, jitter

TRUTH_CELLS_COLUMNS = ["file", "cell_type", "diagnostic", "defines", "nucleated", "diameter_um"]
BATCH = 256


@dataclass(frozen=True)
class PatientCells:
    patient_id: str
    n_cells: int
    n_diagnostic: int


def draw_types(rng: np.random.Generator, composition: dict[str, float], n: int) -> list[str]:
    names = sorted(composition)
    p = np.array([composition[k] for k in names])
    return [names[i] for i in rng.choice(len(names), size=n, p=p / p.sum())]


def write_patient_cells(
    out: Path, patient: Patient, index: int, config: SynthConfig, stain: SiteStain
) -> PatientCells:
    """Render and write one patient's crops and truth table under `out` (the cohort folder being built)."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1, index)))
    types = draw_types(rng, patient.composition, config.cells_per_patient)
    stain = jitter(stain, rng)  # this patient's smear in that lab
    folder = out / "cells" / patient.patient_id
    folder.mkdir(parents=True)
    diagnostic = patient.diagnostic_types
    rows = []
    for start in range(0, len(types), BATCH):
        batch = render_cells(
            types[start : start + BATCH], rng, stain=stain, mpp=config.mpp, size_px=config.crop_px
        )
        for j, image in enumerate(batch.images):
            name = f"{start + j + 1}.png"
            Image.fromarray(image).save(folder / name, compress_level=1)
            t = batch.types[j]
            rows.append(
                [name, t, int(t in diagnostic), diagnostic.get(t, ""), 1, f"{batch.diameter_um[j]:.2f}"]
            )
    write_csv(out / "truth" / "cells" / f"{patient.patient_id}.csv", TRUTH_CELLS_COLUMNS, rows)
    return PatientCells(patient.patient_id, len(rows), sum(r[2] for r in rows))


def write_csv(path: Path, columns: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
