"""Synthetic bone-marrow smear cohorts: MGG-like cells rendered procedurally, patients, sites, survival.

Real cohorts cannot be shipped, so tests, the demo and the benchmarks stand on this generator. It draws cells
from physical sizes (µm) at a given mpp, with the features morphologists use (chromatin, nucleoli, granules,
Auer rods and faggot cells, nuclear shape, cup-like invaginations, pseudo-Pelger), assigns each patient a
diagnosis and genetics that set the cell composition, and shifts stain and scanner per site.

Public API (stable; other modules test with it):
    SynthConfig                  every knob, pydantic, extra="forbid" (features.synth.config)
    generate_cohort(out, config, overwrite=False, progress=None, workers=1) -> CohortSummary
    render_cells(types, rng, *, stain=None, site=None, mpp=0.25, size_px=96, background=True) -> CellBatch
        CellBatch.images (N, S, S, 3) uint8, .cell_mask / .nucleus_mask (N, S, S) bool, .types, .diameter_um
    render_smear(patient, stain, rng, size_px, mpp) -> (RGB (size, size, 3) uint8, truth columns dict)
        one whole smear in memory (no TIFF), for detector tests
    site_stains(n_sites, seed) -> list[SiteStain]     site1 = reference stain
    CELL_TYPES (name -> CellType), build_cohort(config) -> list[Patient], contact_sheet(stains, seed) -> RGB

Output layout (OUT):
    labels.csv                         patient_id, slide_id, site, diagnosis, genetic, apl_aml_healthy,
                                       mds_aa_aml, npm1, cbfb_myh11, os_months, os_event; one row per slide.
                                       cells layout: slide_id = patient_id (the crop folder is the slide);
                                       slides layout: slide_id = <patient_id>_s<k>; with both, both rows.
                                       apl_aml_healthy is empty for MDS/AA, mds_aa_aml empty for APL/healthy,
                                       npm1/cbfb_myh11 are 0/1 for AML patients and empty for everyone else.
    cells/<patient_id>/<n>.png         crops, n = 1..cells_per_patient, cell centred (96 px = 24 µm default)
    slides/<slide_id>.tiff             JPEG-tiled pyramidal TIFF, one page per level, openslide.mpp-x = mpp
    truth/cells/<patient_id>.csv       file, cell_type, diagnostic, defines, nucleated, diameter_um
    truth/slides/<slide_id>.csv        x, y (level-0 px centre), cell_type, diagnostic, defines, nucleated,
                                       region, diameter_um; red cells and platelets are rows with nucleated 0
    clinical.csv                       patient_id, wbc (G/L), hemoglobin (g/dL), platelets (G/L), age, sex: one
                                       row per patient, drawn per diagnosis with overlap, ~3% of counts empty
                                       (features.synth.clinical; `mil train --clinical clinical.csv
                                       --covariates wbc,hemoglobin,platelets,age,sex`)
    cohort.json                        config, seed, version, site stains, per-patient composition, survival
    contact_sheet.png                  with contact_sheet=True

The diagnostic-cell mapping is documented in features.synth.cohort.
"""

from __future__ import annotations

import importlib

# name -> module; resolved on first access so `import features.synth.config` (the CLI's option defaults) does not
# pull in scipy, tifffile and PIL
_EXPORTS = {
    "CELL_TYPES": "celltypes",
    "CellType": "celltypes",
    "Patient": "cohort",
    "build_cohort": "cohort",
    "SynthConfig": "config",
    "make_config": "config",
    "contact_sheet": "contact_sheet",
    "CellBatch": "crops",
    "render_cells": "crops",
    "CohortSummary": "generate",
    "generate_cohort": "generate",
    "render_smear": "slides",
    "SiteStain": "stain",
    "site_stains": "stain",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'features.synth' has no attribute {name!r}")
    return getattr(importlib.import_module(f"features.synth.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
