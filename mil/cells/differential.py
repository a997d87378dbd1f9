"""`mil cells count`: every stored cell typed by a cell model, counted per slide and per patient, flagged.

COUNTS/ (built in a temporary sibling, renamed into place when complete):

    slides.csv     one row per slide: n_cells, n_counted, blast % / M:E / % dysplastic neutrophils with 95 %
                   intervals, n_<type> for every class, pct_<type> (+ _lo, _hi) for counted classes, flags,
                   in_training (the cell model learnt from this slide's labels: its count is not a test)
    patients.csv   the same per patient (its slides summed)
    counts.json    both, with the model, the reference ranges, the cells section and versions

A patient is the labels CSV's patient_id of a slide (`--labels`, as `mil train` reads it), else the bag's own. Predicting reads one slide's embeddings at a time (memory
bounded by the largest bag) and is a matrix product for the linear probe (benchmarks/cells_classify.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.bagstore import BagStore
from features.core.errors import InputError
from mil.cells.count import Differential, differentials
from mil.cells.flags import ReferenceRanges, load_reference_ranges
from mil.cells.model import CellModel
from mil.config import CellsConfig

MEASURES = ("blast_pct", "me_ratio", "dysplastic_neutrophil_pct")


@dataclass
class CountResult:
    """Counts of a store under a cell model (what `count_store` returns and the report draws)."""

    model: CellModel
    ranges: ReferenceRanges
    slides: list[Differential]
    patients: list[Differential]


@dataclass
class CountSummary:
    out: Path
    result: CountResult
    seconds: float


def slug(name: str) -> str:
    """A class name as a column fragment: `Lymphocyte, variant` -> `lymphocyte_variant`."""
    return re.sub(r"\W+", "_", name.casefold()).strip("_") or "class"


def count_store(
    model: CellModel,
    store: BagStore,
    ranges: ReferenceRanges,
    slides: list[str] | None = None,
    progress: Callable[..., None] | None = None,
    owners: dict[str, str] | None = None,
) -> CountResult:
    """Type every cell of the slides (all by default) and count them per slide and per patient (`owners`:
    slide -> patient, else each bag's own patient_id)."""
    emit = progress or (lambda event, **info: None)
    model.check_store(store)
    metas = {m.slide_id: m for m in store.metas()}
    if not metas:
        raise InputError(f"{store.path}: the store holds no bags")
    wanted = sorted(metas) if not slides else list(dict.fromkeys(slides))
    unknown = [s for s in wanted if s not in metas]
    if unknown:
        raise InputError(
            f"{store.path}: no slide {unknown[0]!r} in the store (see `mil bags info {store.path}`)"
        )
    emit("start", total=len(wanted))
    counts = np.zeros((len(wanted), len(model.classes)), np.int64)
    for i, slide in enumerate(wanted):
        counts[i] = model.type_counts(store.read_features(slide))
        emit("slide", done=i + 1, total=len(wanted), slide_id=slide)
    owners = owners or {}
    same_store = model.trained_on.get("bags") == str(Path(store.path).resolve())
    return tally(
        model, ranges, counts, wanted, [owners.get(s, metas[s].patient_id) for s in wanted], same_store
    )


def tally(
    model: CellModel,
    ranges: ReferenceRanges,
    counts: np.ndarray,
    slides: list[str],
    patients: list[str],
    same_store: bool = True,
) -> CountResult:
    """Slide and patient differentials (with flags) from K x C type counts of the slides. `same_store`: the
    slides are of the store the model learnt from, so its trained slides are marked `in_training`."""
    by_slide = differentials(counts, slides, patients, model.classes, model.vocabulary)
    owners = sorted(set(patients))
    owner_index = np.searchsorted(owners, patients)
    per_patient = np.zeros((len(owners), counts.shape[1]), np.int64)
    np.add.at(per_patient, owner_index, counts)
    by_patient = differentials(per_patient, owners, owners, model.classes, model.vocabulary)
    trained_slides = set(model.trained_on.get("slides", [])) if same_store else set()
    for row in by_slide:
        row.flags, row.in_training = ranges.apply(row), row.id in trained_slides
    trained_patients = {r.patient_id for r in by_slide if r.in_training}
    for row in by_patient:
        row.flags, row.in_training = ranges.apply(row), row.id in trained_patients
    return CountResult(model, ranges, by_slide, by_patient)


def slide_owners(labels: Path | None) -> dict[str, str]:
    """slide_id -> patient_id from a labels CSV (as `mil train` reads it); empty without one."""
    if labels is None:
        return {}
    from mil.cohort.labels import read_labels

    table = read_labels(labels)
    if "slide_id" not in table.columns:
        raise InputError(f"{labels}: no slide_id column; a labels CSV maps slide_id -> patient_id here")
    return dict(zip(table["slide_id"], table["patient_id"], strict=True))


def frame(rows: list[Differential], classes: list[str], level: str) -> pd.DataFrame:
    """One row per slide (level "slide") or patient: the columns of slides.csv / patients.csv."""
    records = []
    for r in rows:
        rec: dict[str, object] = {f"{level}_id": r.id}
        if level == "slide":
            rec["patient_id"] = r.patient_id
        rec.update(n_cells=r.n_cells, n_counted=r.n_counted, in_training=r.in_training)
        for name in MEASURES:
            m = r.measures.get(name)
            if m is not None:
                rec[name] = m.value
                if name != "me_ratio":
                    rec[f"{name}_lo"], rec[f"{name}_hi"] = m.lo, m.hi
        for c in classes:
            rec[f"n_{slug(c)}"] = r.counts[c]
        for c in classes:
            if c in r.pct:
                m = r.pct[c]
                rec[f"pct_{slug(c)}"], rec[f"pct_{slug(c)}_lo"], rec[f"pct_{slug(c)}_hi"] = (
                    m.value,
                    m.lo,
                    m.hi,
                )
        rec["flags"] = " | ".join(r.flags)
        records.append(rec)
    return pd.DataFrame.from_records(records)


def count_cells(
    cellmodel: Path,
    bags: Path,
    out: Path,
    config: CellsConfig = CellsConfig(),
    slides: list[str] | None = None,
    overwrite: bool = False,
    progress: Callable[..., None] | None = None,
    labels: Path | None = None,
) -> CountSummary:
    """`mil cells count`: load the model, count the store, write COUNTS (see the module doc)."""
    from mil.training.rundir import check_out

    started = time.perf_counter()
    out = Path(out)
    check_out(out, overwrite, lambda path: (path / "counts.json").is_file(), "cell count folder")
    model = CellModel.load(cellmodel)
    ranges = load_reference_ranges(config.reference_ranges)
    result = count_store(model, BagStore(bags), ranges, slides, progress, slide_owners(labels))
    record = {
        "schema": "mil.cellcounts/1",
        "cell_model": str(Path(cellmodel).resolve()),
        "bags": str(Path(bags).resolve()),
        "classes": model.classes,
        "counted": [c for c in model.classes if model.vocabulary.counted(c)],
        "vocabulary": model.vocabulary.name,
        "reference_ranges": {"name": ranges.name, "description": ranges.description},
        "interval": "95 % Clopper-Pearson (exact binomial) on each percentage",
    }
    _write_counts(out, result, record, config)
    return CountSummary(out, result, time.perf_counter() - started)


def _write_counts(out: Path, result: CountResult, record: dict, config: CellsConfig) -> None:
    """COUNTS written whole into a temporary folder, then swapped in: a failure leaves `out` as it was."""
    import shutil

    from features.core.io import write_json
    from features.core.versions import versions
    from mil.training.rundir import swap_in, temp_dir

    classes = record["classes"]
    tmp = temp_dir(out)
    try:
        frame(result.slides, classes, "slide").to_csv(tmp / "slides.csv", index=False, float_format="%.4g")
        frame(result.patients, classes, "patient").to_csv(
            tmp / "patients.csv", index=False, float_format="%.4g"
        )
        doc = {
            **record,
            "slides": [asdict(r) for r in result.slides],
            "patients": [asdict(r) for r in result.patients],
            "cells": config.model_dump(mode="json"),
            "versions": versions(),
        }
        write_json(doc, tmp / "counts.json", indent=1)
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
