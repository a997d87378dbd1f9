"""The `fields` layout: OUT/fields/<patient_id>/<n>.jpg, microscope-camera photographs of a smear's reading area.

Labs without a slide scanner photograph fields at x50-x100 oil: a 4:3 JPEG a few hundred cells' worth of red
cells wide, with the nucleated cells of that field among them. A field is rendered like a smear
(`features.synth.slides.render_smear`) with one region throughout (the monolayer a morphologist reads, or the
hemodiluted look of peripheral blood), so red cells, platelets and nucleated cells have the same physical sizes
(red cells 7-8 µm, `features.synth.celltypes.RBC_DIAMETER_UM`) at any `mpp`: the pixel size is known exactly,
which is what the mpp estimator is measured against (benchmarks/fields.py).

Truth: OUT/truth/fields/<patient_id>.csv, one row per object whose centre lies in a field: file (relative to
fields/<patient_id>/), x, y (the field's own pixels), cell_type, diagnostic, defines, nucleated, diameter_um.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from features.synth import smear
from features.synth.cohort import Patient
from features.synth.config import SynthConfig
from features.synth.layout_cells import write_csv
from features.synth.slides import SmearKnobs, render_smear
from features.synth.stain import SiteStain, jitter

TRUTH_FIELD_COLUMNS = ["file", "x", "y", "cell_type", "diagnostic", "defines", "nucleated", "diameter_um"]
FIELD_REGIONS = {"monolayer": smear.MONOLAYER, "hemodiluted": smear.HEMODILUTED}
JPEG_QUALITY = 92  # what microscope cameras save by default


def field_layout(size_px: int, mpp: float, region: str = "monolayer") -> smear.SmearLayout:
    """A square layout holding one region everywhere (no particle, no glass, no feathered edge)."""
    code = FIELD_REGIONS[region]
    step_px = smear.STEP_UM / mpp
    n = int(np.ceil(size_px / step_px))
    regions = np.full((n, n), code, np.uint8)
    thickness = np.full((n, n), smear.THICKNESS[code], np.float32)
    return smear.SmearLayout(step_px, regions, np.zeros((n, n), bool), thickness)


def render_field(
    patient: Patient,
    stain: SiteStain,
    rng: np.random.Generator,
    width_px: int,
    height_px: int,
    mpp: float,
    region: str = "monolayer",
    knobs: SmearKnobs = SmearKnobs(),
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(height, width, 3) uint8 RGB of one field and the truth columns of the objects centred in it."""
    side = max(width_px, height_px)
    layout = field_layout(side, mpp, region)
    rgb, truth = render_smear(patient, stain, rng, side, mpp, layout=layout, knobs=knobs)
    inside = (truth["x"] < width_px) & (truth["y"] < height_px)
    return np.ascontiguousarray(rgb[:height_px, :width_px]), {k: v[inside] for k, v in truth.items()}


@dataclass(frozen=True)
class PatientFields:
    patient_id: str
    n_fields: int
    n_nucleated: int


def field_size(config: SynthConfig) -> tuple[int, int]:
    """(width, height) in px: a 4:3 camera frame `field_px` wide."""
    return config.field_px, round(config.field_px * 3 / 4)


def write_patient_fields(
    out: Path, patient: Patient, index: int, config: SynthConfig, stain: SiteStain
) -> PatientFields:
    """Render one patient's fields as JPEGs under OUT/fields/<patient_id>/ and their truth table."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(3, index)))
    stain = jitter(stain, rng)  # this patient's smear under that lab's microscope
    folder = out / "fields" / patient.patient_id
    folder.mkdir(parents=True)
    width, height = field_size(config)
    rows: list[list] = []
    for k in range(config.fields_per_patient):
        rgb, truth = render_field(patient, stain, rng, width, height, config.mpp, knobs=SmearKnobs.of(config))
        name = f"{k + 1}.jpg"
        Image.fromarray(rgb).save(folder / name, quality=JPEG_QUALITY)
        rows += [
            [name, *values[:-1], f"{values[-1]:.2f}"]
            for values in zip(*(truth[c] for c in TRUTH_FIELD_COLUMNS[1:]), strict=True)
        ]
    write_csv(out / "truth" / "fields" / f"{patient.patient_id}.csv", TRUTH_FIELD_COLUMNS, rows)
    nucleated = sum(int(r[6]) for r in rows)
    return PatientFields(patient.patient_id, config.fields_per_patient, nucleated)
