"""`generate_cohort`: validate, build the whole cohort in a temporary folder beside OUT, then move it into place.

A failed or interrupted run leaves OUT exactly as it was (the temporary folder is removed), and `overwrite`
swaps the new cohort in and only then deletes the old one. Overwriting is refused for a folder that is not a
previous synthetic cohort (no cohort.json from this generator), so a mistyped OUT cannot wipe someone's data.

Every unit of work (one patient's crops, one slide) draws from its own seed, `SeedSequence(seed, spawn_key=...)`,
so the output is the same whatever the number of workers or the order in which they finish.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from features.core.errors import ConfigError
from features.core.outputs import check_output_folder, staged_dir, swap_in
from features.synth.cohort import DEFINES, DISEASE, LABEL_COLUMNS, Patient, build_cohort, labels_row
from features.synth.config import SynthConfig
from features.synth.contact_sheet import write_contact_sheet
from features.synth.field_images import write_patient_fields
from features.synth.layout_cells import write_csv, write_patient_cells
from features.synth.slides import write_slide
from features.synth.stain import site_stains

SYNTH_VERSION = 1  # bump when rendering or cohort logic changes what a seed produces
GENERATOR = "mil synth"
Progress = Callable[..., None]


@dataclass(frozen=True)
class CohortSummary:
    out: Path
    patients: int
    diagnoses: dict[str, int]
    sites: list[str]
    crops: int
    slides: int
    nucleated_on_slides: int
    fields: int = 0
    nucleated_in_fields: int = 0
    files: list[str] = field(default_factory=list)  # top-level entries written, relative to out


def check_out(out: Path, overwrite: bool) -> None:
    """Fail before anything is written when OUT cannot receive a cohort (`--overwrite` replaces only a cohort
    this generator wrote, never an arbitrary folder)."""
    check_output_folder(out, overwrite, _is_cohort, "synthetic cohort")


def _is_cohort(out: Path) -> bool:
    try:
        return json.loads((out / "cohort.json").read_text()).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def generate_cohort(
    out: Path,
    config: SynthConfig,
    overwrite: bool = False,
    progress: Progress | None = None,
    workers: int = 1,
) -> CohortSummary:
    """Write a synthetic cohort to `out`; see features.synth for the layout. Returns what was written."""
    out = Path(out)
    if workers < 1:
        raise ConfigError(f"synth workers: must be >= 1 (got {workers})")
    check_out(out, overwrite)
    report = progress or (lambda event, **info: None)
    patients = build_cohort(config)
    stains = site_stains(config.sites, config.seed)
    stain_of = {s.name: s for s in stains}
    tmp = staged_dir(out)
    try:
        jobs = _plan(tmp, patients, config, stain_of)
        report("plan", total=len(jobs) + 1)
        results = _run(jobs, workers, report)
        cells = {r.patient_id: r for kind, r in results if kind in ("cells", "fields")}
        slides = sorted((r for kind, r in results if kind == "slide"), key=lambda r: r.slide_id)
        _write_tables(tmp, config, patients, stains, cells, slides)
        if config.contact_sheet:
            write_contact_sheet(
                tmp / "contact_sheet.png", stains, config.seed, mpp=config.mpp, size_px=config.crop_px
            )
        report("job", kind="tables", name="labels.csv, cohort.json")
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report("done", out=str(out))
    return _summary(out, patients, stains, cells, slides)


def _run(jobs: list, workers: int, report: Progress) -> list:
    """Run the jobs (in worker processes when workers > 1); results come back tagged with their kind."""
    results = []
    if workers <= 1 or len(jobs) <= 1:
        for kind, name, fn, args in jobs:
            results.append((kind, fn(*args)))
            report("job", kind=kind, name=name)
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(fn, *args): (kind, name) for kind, name, fn, args in jobs}
        for future in as_completed(futures):
            kind, name = futures[future]
            results.append((kind, future.result()))
            report("job", kind=kind, name=name)
    return results


def _plan(tmp: Path, patients: list[Patient], config: SynthConfig, stain_of: dict) -> list[tuple]:
    """One job per patient's cell folder or fields, and per slide: (kind, name, function, arguments)."""
    jobs = []
    for i, p in enumerate(patients):
        stain = stain_of[p.site]
        if config.layout in ("cells", "both"):
            jobs.append(("cells", p.patient_id, write_patient_cells, (tmp, p, i, config, stain)))
        if config.layout == "fields":
            jobs.append(("fields", p.patient_id, write_patient_fields, (tmp, p, i, config, stain)))
        if config.layout in ("slides", "both"):
            for k in range(config.slides_per_patient):
                jobs.append(("slide", f"{p.patient_id}_s{k + 1}", write_slide, (tmp, p, i, k, config, stain)))
    return jobs


def _summary(out: Path, patients: list[Patient], stains: list, cells: dict, slides: list) -> CohortSummary:
    return CohortSummary(
        out=out,
        patients=len(patients),
        diagnoses=dict(Counter(p.diagnosis for p in patients)),
        sites=[s.name for s in stains],
        crops=sum(getattr(r, "n_cells", 0) for r in cells.values()),
        slides=len(slides),
        nucleated_on_slides=sum(r.n_nucleated for r in slides),
        fields=sum(getattr(r, "n_fields", 0) for r in cells.values()),
        nucleated_in_fields=sum(getattr(r, "n_nucleated", 0) for r in cells.values()),
        files=sorted(p.name for p in out.iterdir()),
    )


def _write_tables(
    tmp: Path, config: SynthConfig, patients: list[Patient], stains, cells: dict, slides: list
) -> None:
    rows = []
    slides_of: dict[str, list] = {}
    for s in slides:
        slides_of.setdefault(s.patient_id, []).append(s)
    for p in patients:
        if p.patient_id in cells:
            rows.append(labels_row(p, p.patient_id))
        rows.extend(labels_row(p, s.slide_id) for s in slides_of.get(p.patient_id, []))
    write_csv(tmp / "labels.csv", LABEL_COLUMNS, [[r[c] for c in LABEL_COLUMNS] for r in rows])
    meta = {
        "generator": GENERATOR,
        "synth_version": SYNTH_VERSION,
        "mil_version": _version(),
        "seed": config.seed,
        "mpp": config.mpp,
        "witness": config.witness,
        "config": config.recorded(),
        "sites": [s.to_dict() for s in stains],
        "conventions": {
            "labels.csv": "one row per slide; cells layout: slide_id = patient_id (the crop folder); slides layout: "
            "slide_id = <patient_id>_s<k>; apl_aml_healthy empty for MDS/AA, mds_aa_aml empty for APL/healthy, "
            "npm1 and cbfb_myh11 are 0/1 for AML and empty otherwise",
            "cells": "cells/<patient_id>/<n>.png, n = 1..cells_per_patient, cell centred, crop_px at mpp",
            "fields": "fields/<patient_id>/<n>.jpg, n = 1..fields_per_patient, 4:3 camera frames field_px "
            "wide at mpp (slide_id = patient_id in labels.csv)",
            "truth/fields/<patient_id>.csv": "file, x, y (the field's px), cell_type, diagnostic, defines, "
            "nucleated, diameter_um",
            "slides": "slides/<slide_id>.tiff, JPEG-tiled pyramid, level 0 at mpp, one page per level",
            "truth/cells/<patient_id>.csv": "file (relative to cells/<patient_id>/), cell_type, diagnostic, "
            "defines, nucleated, diameter_um",
            "truth/slides/<slide_id>.csv": "x, y (level-0 px, cell centre), cell_type, diagnostic, defines, "
            "nucleated (0 for rbc/platelet rows), region (particle/monolayer/hemodiluted), diameter_um",
        },
        "diagnostic_cells": {
            f"{dx}/{gen}": {t: DEFINES[t] for t in mix} for (dx, gen), (_, mix) in DISEASE.items()
        },
        "patients": [
            {
                **asdict(p),
                "n_crops": getattr(cells.get(p.patient_id), "n_cells", 0),
                "n_fields": getattr(cells.get(p.patient_id), "n_fields", 0),
                "slides": [s.slide_id for s in slides_of.get(p.patient_id, [])],
            }
            for p in patients
        ],  # fmt: skip
        "slides": [asdict(s) for s in slides],
        "versions": _library_versions(),
    }
    (tmp / "cohort.json").write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")


def _version() -> str:
    from features import __version__

    return __version__


def _library_versions() -> dict[str, str]:
    import imagecodecs
    import numpy
    import PIL
    import scipy
    import tifffile

    return {
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "tifffile": tifffile.__version__,
        "imagecodecs": imagecodecs.__version__,
        "pillow": PIL.__version__,
    }
