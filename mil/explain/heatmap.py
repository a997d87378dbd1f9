"""`mil heatmap`: per slide, where the model looked (attention.csv, galleries, overlays, QuPath GeoJSON).

Layout of OUT (slide folders are `features.bagstore.bag_key(slide_id)`)::

    heatmap.json                  run, store, head, method, rows, normalisation, the explain section, versions,
                                  per-slide status
    <slide>/attention.csv         one row per instance (columns: `mil.explain.tables`)
    <slide>/gallery_<row>.png     top-k and bottom-k cells by relative attention, re-read from the source
    <slide>/overlay_<row>.png     slides only: the smear with every cell coloured by attention
    <slide>/overlay_celltype.png  with --cells: the smear with every cell coloured by its type
    <slide>/cells.geojson         slides only: the cells as QuPath detections with attention measurements
    <slide>/fields/<field>/       microscope fields: overlay_<row>.png and cells.geojson per field, in the
                                  field's own pixels (`mil.explain.field_overlay`)

With a cell model (`cells`, from `mil cells train`), attention.csv gains `cell_type` and `cell_type_p` (its
calibrated probability), gallery captions name each cell's type, and the GeoJSON carries QuPath
classifications coloured by type. A cell model of another encoder than the store's is refused.

`<row>` is each class (per-class attention, or attribution for heads without attention) or `all` for a head
with one attention row shared by the classes (abmil, gated_abmil, clam_sb, transmil).

Everything is built in a temporary sibling of OUT and renamed into place at the end, so an existing OUT is
only replaced with `overwrite` and only by a finished run that wrote at least one slide. A slide that fails
(its source moved, an unreadable region) is recorded in heatmap.json and skipped; the others are written.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from features.bagstore import bag_key
from features.core.errors import InputError, MilError
from mil.config import ExplainConfig
from mil.explain.attention import ATTRIBUTION_METHOD
from mil.explain.cohort import Explainer

if TYPE_CHECKING:
    import numpy as np

    from features.sources.instances import Overview
    from mil.cells.model import CellModel

SCHEMA = "mil.heatmap/1"
NORMALISATION = (
    "att: attention from the head's own forward pass, mean over the fold models (att_sd: their SD); a "
    "patient's slides form one bag, so a slide shows the patient's attention on its cells, not renormalised "
    "per slide. att_rel = value / mean |value| over the patient's bag (attention: att x N; 1 = uniform), "
    "comparable across slides and patients."
)


@dataclass
class SlideResult:
    slide_id: str
    patient_id: str
    status: str  # "written" | "failed"
    n_instances: int = 0
    folder: str = ""
    files: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class HeatmapSummary:
    out: Path
    run: Path
    store: Path
    head: str
    method: str
    class_agnostic: bool
    rows: list[str]
    slides: list[SlideResult]
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(s.status == status for s in self.slides)


def heatmap(
    run: Path,
    bags: Path,
    out: Path,
    slides: list[str] | None = None,
    config: ExplainConfig = ExplainConfig(),
    overwrite: bool = False,
    progress: Callable[..., None] | None = None,
    labels: Path | None = None,
    device: str = "cpu",
    cells: Path | None = None,
) -> HeatmapSummary:
    """Explain the slides of `bags` (all, or `slides`) with the fold models of `run`; write OUT. `config` sets
    the galleries (top-k cells, tile size); `cells` names each cell's type with that cell model."""
    from mil.explain.cohort import explain_inputs
    from mil.training.rundir import check_out, refuse_inputs, refuse_run_file, swap_in, temp_dir

    started = time.perf_counter()
    emit = progress or (lambda event, **info: None)
    out = Path(out)
    # before any work, even with --overwrite: OUT is never, nor holds, what is read, nor lies inside the store
    refuse_inputs(out, explain_inputs(run, bags, labels, cells))
    refuse_run_file(Path(run), out)
    check_out(out, overwrite, lambda path: (path / "heatmap.json").is_file(), "heatmap folder")
    ex = Explainer.open(run, bags, labels, device)
    cell_model = _open_cell_model(cells, ex)
    wanted = _resolve_slides(ex, slides, Path(bags))
    owner = ex.slide_patient()
    by_patient: dict[str, list[str]] = {}
    for s in wanted:
        by_patient.setdefault(owner[s], []).append(s)
    emit("start", total=len(wanted), patients=len(by_patient), method=ex.method)
    tmp = temp_dir(out)
    try:
        results = _explain_slides(ex, by_patient, tmp, config, emit, cell_model)
        summary = HeatmapSummary(
            out, Path(run), Path(bags), ex.head_name, ex.method, ex.class_agnostic,
            _rows(ex), results, time.perf_counter() - started,
        )  # fmt: skip
        record = _record(ex, summary, config, cell_model)
        (tmp / "heatmap.json").write_text(json.dumps(record, indent=1) + "\n")
        if summary.count("written"):
            swap_in(tmp, out)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _open_cell_model(cells: Path | None, ex: Explainer) -> CellModel | None:
    """The cell model that names each cell's type, refused up front if its encoder is not the store's."""
    if cells is None:
        return None
    from mil.cells.model import CellModel

    cell_model = CellModel.load(cells)
    cell_model.check_store(ex.store)
    return cell_model


def _explain_slides(
    ex: Explainer,
    by_patient: dict[str, list[str]],
    folder: Path,
    config: ExplainConfig,
    emit: Callable[..., None],
    cell_model: CellModel | None = None,
) -> list[SlideResult]:
    """Each patient explained once (its slides' bags together), then each of its slides written to its own
    folder; a patient or slide that fails is a failed result, and the others go on."""
    results: list[SlideResult] = []
    for patient, slide_ids in by_patient.items():
        try:
            _, att = ex.explain(patient)
        except (MilError, OSError) as exc:
            for s in slide_ids:
                results.append(SlideResult(s, patient, "failed", error=_one_line(exc)))
                emit("slide_done", result=results[-1])
            continue
        for s in slide_ids:
            results.append(_write_slide(ex, s, patient, att, folder / bag_key(s), config, cell_model))
            emit("slide_done", result=results[-1])
    return results


def _resolve_slides(ex: Explainer, slides: list[str] | None, bags: Path) -> list[str]:
    known = sorted(ex.metas)
    if not slides:
        return known
    unknown = [s for s in slides if s not in ex.metas]
    if unknown:
        raise InputError(
            f"{bags}: no slide {unknown[0]!r} in the store ({len(known)} slides, e.g. {', '.join(known[:3])}); "
            f"see `mil bags info {bags}`"
        )
    return list(dict.fromkeys(slides))


def _rows(ex: Explainer) -> list[str]:
    return ["all"] if ex.class_agnostic else list(ex.names)


def _write_slide(
    ex: Explainer, slide_id, patient, att, folder: Path, config: ExplainConfig, cell_model=None
) -> SlideResult:
    from features.sources import open_instances
    from mil.explain.gallery import save_png, slide_galleries
    from mil.explain.tables import att_column, attention_frame

    meta = ex.metas[slide_id]
    result = SlideResult(slide_id, patient, "written", meta.n_instances, folder.name)
    try:
        bag = ex.store.read(slide_id)
        frame = attention_frame(slide_id, bag, att)
        types, colours = None, None
        if cell_model is not None:
            types = cell_model.predict(bag.features)
            frame["cell_type"], frame["cell_type_p"] = types
            colours = cell_model.colours()
        folder.mkdir(parents=True)
        frame.to_csv(folder / "attention.csv", index=False, float_format="%.6g")
        result.files.append("attention.csv")
        values = {row: frame[att_column(row, att.class_agnostic, "rel")].to_numpy() for row in att.rows}
        what = "attention x N" if att.method == "attention" else f"{att.method} / mean |.|"
        with open_instances(meta, bag) as source:  # one open serves the galleries and the overview
            galleries = slide_galleries(
                meta, bag, values, config.top_k, config.display_px, what, patient, source, types
            )
            for row, image in galleries.items():
                result.files.append(save_png(image, folder / f"gallery_{row}.png").name)
            overview = source.overview()
        if overview is not None:  # a slide (cell folders have no picture of the smear, nor positions)
            views = _SmearViews(overview, bag.coords, slide_id, _label(att), colours)
            result.files += views.write(folder, values, frame, meta.mpp, types)
        elif meta.source_kind == "fields":
            from mil.explain.field_overlay import write_field_views

            result.files += write_field_views(
                meta, bag, frame, values, folder, _label(att), _measures(frame), colours
            )
    except (MilError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return SlideResult(slide_id, patient, "failed", meta.n_instances, error=_one_line(exc))
    return result


@dataclass
class _SmearViews:
    """What a slide's picture shows: overlays by attention (and by cell type), and the QuPath GeoJSON."""

    overview: Overview
    coords: np.ndarray  # (n, 2) level-0 positions
    slide_id: str
    label: str
    colours: dict | None  # cell type -> colour; None without a cell model

    def write(self, folder: Path, values: dict, frame, mpp: float, types) -> list[str]:
        """Write the views into `folder`; `types` is the cell model's (type, probability) or None."""
        from mil.explain.geojson import cells_geojson, write_geojson
        from mil.explain.overlay import write_overlays, write_type_overlay

        paths = {row: folder / f"overlay_{row}.png" for row in values}
        files = [
            p.name
            for p in write_overlays(self.overview, self.coords, values, paths, self.slide_id, self.label)
        ]
        if types is not None:
            path = folder / "overlay_celltype.png"
            files.append(
                write_type_overlay(
                    self.overview, self.coords, types[0], self.colours, path, self.slide_id
                ).name
            )
        write_geojson(
            cells_geojson(frame, mpp, _measures(frame), colours=self.colours), folder / "cells.geojson"
        )
        return [*files, "cells.geojson"]


def _label(att) -> str:
    return "attention x N (1 = uniform)" if att.method == "attention" else "attribution / mean |.|"


def _measures(frame) -> list[str]:
    """The numeric per-cell columns QuPath gets as measurements."""
    return [
        c
        for c in frame.columns
        if (c.startswith(("att", "score_")) and c != "attribution_method") or c == "cell_type_p"
    ]


def _record(ex: Explainer, summary: HeatmapSummary, config: ExplainConfig, cell_model=None) -> dict:
    from features.core.versions import versions

    return {
        "schema": SCHEMA,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": str(Path(summary.run).resolve()),
        "store": str(Path(summary.store).resolve()),
        "encoder": asdict(ex.store.encoder),
        "head": ex.head_name,
        "task": ex.spec.to_dict(),
        "n_models": len(ex.models),
        "outputs": ex.names,
        "rows": _rows(ex),
        "method": ex.method,
        "attribution_method": ATTRIBUTION_METHOD if ex.method == ATTRIBUTION_METHOD else None,
        "class_agnostic": ex.class_agnostic,
        "normalisation": NORMALISATION,
        "renormalised_per_slide": False,
        "explain": config.model_dump(mode="json"),
        "cells": None
        if cell_model is None
        else {
            "model": str(Path(cell_model.path).resolve()),
            "classifier": cell_model.kind,
            "classes": cell_model.classes,
            "vocabulary": cell_model.vocabulary.name,
            "columns": "cell_type: the most probable type; cell_type_p: its calibrated probability",
        },
        "slides": {
            r.slide_id: {k: v for k, v in asdict(r).items() if k != "slide_id"} for r in summary.slides
        },
        "versions": versions(),
    }


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
