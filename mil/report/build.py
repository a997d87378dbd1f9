"""`mil report`: one self-contained HTML file about a run and the cells behind its calls, across the cohort.

Sections: performance with CIs (RUN/metrics.json), head vs baseline (the run's baselines on the same folds,
the paired difference and its verdict, both models' curves), ROC + confusion or Kaplan-Meier figures, per-patient
out-of-fold predictions, per-class galleries of the top cells across the cohort, and the discovery clusters
(`mil.explain.discovery`) as montages with their enrichment.

With a cell model (`cells`, from `mil cells train`): a differential-count section (per-patient stacked bars
of the cell types, a table with blast %, M:E and flags, 95 % intervals; `mil.report.differential`), and each
discovery cluster labelled with its type mix ("cluster 0: 91 % abnormal promyelocyte, enriched 24.0x").

Cohort galleries: for each class, every patient of that class (truth, else predicted) contributes its
`per_patient` highest-attention cells, and the `top_k` highest of those are shown (`ReportConfig`), so one patient with a
peaked attention cannot fill the whole gallery. Cell images are re-read from the sources, each slide opened
once; a source that moved becomes a grey tile marked "missing" and is listed, not a failed report.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from features.core.errors import InputError, MilError
from features.core.outputs import check_output_file
from mil.config import CellsConfig, ReportConfig
from mil.explain.cohort import Explainer, explain_inputs
from mil.explain.discovery import CellRef, Cluster, DiscoveryCollector
from mil.explain.gallery import Section, montage, read_cells
from mil.report import html as H
from mil.report.differential import differential_section
from mil.report.sections import (
    comparison_section,
    covariates_section,
    figures_section,
    metrics_section,
    predictions_section,
    provenance_section,
    recipe_section,
)
from mil.training.rundir import refuse_inputs, refuse_run_file

if TYPE_CHECKING:
    from mil.cells.differential import CountResult
    from mil.cells.flags import ReferenceRanges
    from mil.cells.model import CellModel


@dataclass
class ReportSummary:
    out: Path
    n_patients: int
    method: str
    head: str
    clusters: dict[str, int]  # output name -> clusters found
    missing_sources: dict[str, str] = field(default_factory=dict)  # slide -> why its cells could not be shown
    seconds: float = 0.0


def report(
    run: Path,
    bags: Path,
    out: Path,
    labels: Path | None = None,
    config: ReportConfig = ReportConfig(),
    overwrite: bool = False,
    progress: Callable[..., None] | None = None,
    device: str = "cpu",
    cells: Path | None = None,
    cells_config: CellsConfig = CellsConfig(),
) -> ReportSummary:
    """Write the HTML report of `run` explained on the patients of `bags` to `out`; `config` sets the galleries
    and the discovery (cells per class, clusters, seed); `cells` adds the differential count of that cell
    model (`cells_config.reference_ranges` raises its flags)."""
    from features.core.io import atomic_write_text

    started = time.perf_counter()
    emit = progress or (lambda event, **info: None)
    out = Path(out)
    refuse_run_file(run, out)
    refuse_inputs(out, explain_inputs(run, bags, labels, cells))
    check_output_file(out, overwrite, "report.html")  # before any work: exists, a folder, not writable
    ex = Explainer.open(run, bags, labels, device)
    metrics = _read_metrics(Path(run) / "metrics.json")

    typer = _CellTyper.open(cells, ex, cells_config) if cells is not None else None
    cohort = _explain_cohort(ex, config, emit, typer)
    emit("discovery")
    clusters = cohort.collector.clusters(
        cohort.groups, n_clusters=config.clusters, members=config.cluster_members
    )
    galleries = cohort.galleries(config.top_k)
    emit("images")
    wanted = [r for refs in galleries.values() for r in refs] + [
        m for cs in clusters.values() for c in cs for m in c.members
    ]
    images, missing = _read_images(ex, wanted, config.display_px)

    sections = [
        metrics_section(metrics),
        recipe_section(metrics),
        comparison_section(Path(run), metrics, ex.head_name),
        covariates_section(metrics),
        figures_section(ex.predictions, ex.spec),
        predictions_section(ex.predictions, ex.spec, cohort.shown_as),
        *([differential_section(typer.result(), cohort.shown_as)] if typer is not None else []),
        _gallery_section(ex, galleries, images, config),
        _discovery_section(ex, clusters, images),
        provenance_section(_provenance(ex, bags, missing, config, cells)),
    ]
    title = f"mil report: {Path(run).resolve().name}"
    subtitle = [
        f"{ex.head_name} on {ex.spec.kind} of {ex.spec.target} ({', '.join(ex.names)}); {len(ex.models)} fold models",
        f"{len(cohort.patients)} patients from {Path(bags).resolve()}; encoder {ex.store.encoder.describe()}",
    ]
    atomic_write_text(out, H.page(title, subtitle, sections))
    emit("done")
    return ReportSummary(
        out, len(cohort.patients), ex.method, ex.head_name, {k: len(v) for k, v in clusters.items()}, missing,
        time.perf_counter() - started,
    )  # fmt: skip


def _read_metrics(path: Path) -> dict | None:
    """RUN/metrics.json, or None for a run that has none; a damaged one is one line, not a traceback."""
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{path}: not valid JSON ({type(exc).__name__}); restore the run's metrics.json or retrain"
        ) from None
    if not isinstance(metrics, dict):
        raise InputError(f"{path}: not a metrics record (a {type(metrics).__name__}); restore it or retrain")
    return metrics


@dataclass
class _CellTyper:
    """A cell model over the report's patients: types each bag once, keeps the per-slide type counts."""

    model: CellModel
    ranges: ReferenceRanges
    same_store: bool  # the model learnt from this store's cells: their count is not a test
    slides: list[str] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    counts: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path, ex: Explainer, config: CellsConfig) -> _CellTyper:
        from mil.cells.flags import load_reference_ranges
        from mil.cells.model import CellModel

        model = CellModel.load(path)
        model.check_store(ex.store)
        same = model.trained_on.get("bags") == str(Path(ex.store.path).resolve())
        return cls(model, load_reference_ranges(config.reference_ranges), same)

    def names(self, features: np.ndarray) -> np.ndarray:
        return self.model.predict(features)[0]

    def add(self, bag, patient: str) -> None:
        from mil.cells.count import count_types

        codes = self.model.predict_proba(bag.features).argmax(1)
        for slide, start, stop in bag.slides:
            self.slides.append(slide)
            self.owners.append(patient)
            self.counts.append(count_types(codes[start:stop], len(self.model.classes)))

    def result(self) -> CountResult:
        from mil.cells.differential import tally

        counts = np.stack(self.counts) if self.counts else np.zeros((0, len(self.model.classes)), np.int64)
        return tally(self.model, self.ranges, counts, self.slides, self.owners, self.same_store)


@dataclass
class _Explained:
    """The cohort explained patient by patient: each patient's top cells per output, their embeddings for
    the discovery, and the groups (classes, labels or predicted risk) the galleries are drawn from."""

    patients: list[str]
    collector: DiscoveryCollector
    tops: dict[str, dict[str, list[CellRef]]]  # output name -> patient -> its `per_patient` top cells
    groups: dict[str, set[str]] = field(default_factory=dict)  # patient -> the output names it belongs to
    shown_as: dict[str, str] = field(default_factory=dict)  # patient -> how the predictions table shows it

    def galleries(self, top_k: int) -> dict[str, list[CellRef]]:
        """Per output, the `top_k` highest of its patients' top cells."""
        return {
            name: sorted(
                (ref for p, refs in tops.items() if name in self.groups.get(p, set()) for ref in refs),
                key=lambda r: -r.att_rel,
            )[:top_k]
            for name, tops in self.tops.items()
        }


def _explain_cohort(
    ex: Explainer, config: ReportConfig, emit: Callable[..., None], typer: _CellTyper | None = None
) -> _Explained:
    patients = list(ex.patient_slides)
    emit("start", total=len(patients))
    cell_types = typer.names if typer is not None else None
    found = _Explained(
        patients,
        DiscoveryCollector(ex.names, seed=config.seed, cell_types=cell_types),
        {name: {} for name in ex.names},
    )
    outputs: dict[str, np.ndarray] = {}
    for i, patient in enumerate(patients):
        bag, att = ex.explain(patient)
        found.collector.add(bag.features, att)
        if typer is not None:
            typer.add(bag, patient)
        outputs[patient] = att.prediction
        rel = att.relative()
        for name in ex.names:
            best = np.argsort(-rel[att.row(name)], kind="stable")[: config.per_patient]
            found.tops[name][patient] = [_ref(att, int(r), float(rel[att.row(name), r])) for r in best]
        emit("patient", done=i + 1, total=len(patients), patient_id=patient)
    grouped = ex.cohort_groups(outputs)  # the task kind's grouping: classes, labels, or predicted risk
    found.groups = {p: names for p, (names, _) in grouped.items()}
    found.shown_as = {p: shown for p, (_, shown) in grouped.items()}
    return found


def _ref(att, row: int, value: float) -> CellRef:
    for slide, start, stop in att.slides:
        if start <= row < stop:
            return CellRef(att.patient_id, slide, row - start, value)
    raise IndexError(row)


def _read_images(ex: Explainer, refs: list[CellRef], display_px: int):
    """(slide, instance) -> image, each slide's cells read in one pass; unreadable sources -> grey tiles."""
    by_slide: dict[str, set[int]] = {}
    for r in refs:
        by_slide.setdefault(r.slide_id, set()).add(r.instance)
    images, missing = {}, {}
    for slide, wanted in by_slide.items():
        index = np.array(sorted(wanted))
        try:
            crops = read_cells(ex.metas[slide], ex.store.read(slide, obs=False), index, display_px)
        except (MilError, OSError) as exc:
            missing[slide] = " ".join(str(exc).split())
            crops = np.full((len(index), display_px, display_px, 3), 200, np.uint8)
        images.update({(slide, int(i)): crop for i, crop in zip(index, crops, strict=True)})
    return images, missing


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _tiles(refs: list[CellRef], images: dict) -> tuple[np.ndarray, list[str]]:
    tiles = (
        np.stack([images[(r.slide_id, r.instance)] for r in refs])
        if refs
        else np.zeros((0, 8, 8, 3), np.uint8)
    )
    return tiles, [
        f"#{i + 1}  {r.att_rel:.3g}\n{r.patient_id} · {r.slide_id}:{r.instance}" for i, r in enumerate(refs)
    ]


def _gallery_section(ex: Explainer, galleries: dict, images: dict, config: ReportConfig) -> str:
    what = "attention x N" if ex.method == "attention" else f"{ex.method} / mean |.|"
    body = H.note(
        f"For each class, the {config.top_k} highest cells by {what} (1 = uniform) among that class's patients, "
        f"at most {config.per_patient} per patient; re-read from the source slides / cell images. Captions: rank, value, patient "
        "and slide:instance (the row of that slide's attention.csv from `mil heatmap`)."
        + (" This head has one attention row shared by all classes." if ex.class_agnostic else "")
    )
    for name, refs in galleries.items():
        tiles, captions = _tiles(refs, images)
        image = montage(
            [Section(f"top {len(refs)} cells of {name} patients", tiles, captions)], name, columns=12
        )
        body += f"<h3>{H.esc(name)}</h3>" + H.img(_png(image), f"top cells {name}", "montage")
    return H.section("galleries", "Top cells per class across the cohort", body)


def _discovery_section(ex: Explainer, clusters: dict[str, list[Cluster]], images: dict) -> str:
    typed = any(c.type_mix for found in clusters.values() for c in found)  # a cell model named the cells
    body = H.note(
        "Each class's patients' highest-attention cells, clustered in embedding space (k-means); a cluster's "
        "share is the mean per-patient fraction of cells of that kind (nearest centre, within the cluster's "
        "95th-percentile radius) in that class's patients versus all others. Enrichment = ratio of the shares "
        "(+ half a cell), p = one-sided Mann-Whitney U over patients. Ranked by enrichment."
        + (" Cell types: the cell model's most probable type of each cluster cell (its share)." * typed)
    )
    header = ["cluster", "cells", "patients", "share in class", "share in others", "enrichment", "p",
              "mean att x N"] + ["cell types (cell model)"] * typed  # fmt: skip
    for name, found in clusters.items():
        rows = [
            [c.cluster, c.n_cells, c.n_patients, c.freq_in_class, c.freq_in_others, c.enrichment, c.p_value,
             c.mean_att_rel, *([c.mix_words(3)] if typed else [])]
            for c in found
        ]  # fmt: skip
        body += f"<h3>{H.esc(name)}</h3>" + H.table(header, rows)
        if typed:  # the clusters in words: what kind of cell, how enriched
            body += "".join(
                H.note(f"cluster {c.cluster}: {c.mix_words()}, enriched {c.enrichment:.1f}x in {name}")
                for c in found
            )
        body += _cluster_montage(name, found, images)
    if not clusters:
        body += H.note("No class had patients to discover cells for.")
    return H.section("discovery", "Diagnostic-cell discovery", body)


def _cluster_montage(name: str, found: list[Cluster], images: dict) -> str:
    """One montage of a class's clusters, each titled with its type mix (if typed) and enrichment."""
    sections = []
    for c in found:
        tiles, captions = _tiles(c.members, images)
        mix = f"{c.mix_words()}, " if c.type_mix else ""
        title = f"cluster {c.cluster}: {mix}enriched {c.enrichment:.1f}x in {name}, p {H.fmt(c.p_value)}"
        sections.append(Section(title, tiles, captions))
    if not sections:
        return ""
    image = _png(montage(sections, f"{name}: discovered cell clusters", columns=12))
    return H.img(image, f"clusters {name}", "montage")


def _provenance(
    ex: Explainer, bags: Path, missing: dict[str, str], config: ReportConfig, cells: Path | None = None
) -> dict[str, object]:
    from features.core.versions import versions

    lines: dict[str, object] = {
        "run": Path(ex.run).resolve(),
        "bags": Path(bags).resolve(),
        "head": ex.head_name,
        "explanation": "attention from the head's own forward pass, mean over fold models"
        if ex.method == "attention"
        else f"{ex.method} (the head has no attention), mean over fold models",
        "report settings": ", ".join(f"{k} {v}" for k, v in config.model_dump().items()),
        "cell model": Path(cells).resolve() if cells is not None else "none (no differential count)",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": ", ".join(f"{k} {v}" for k, v in versions().items() if v),
    }
    for slide, why in sorted(missing.items()):
        lines[f"missing cells: {slide}"] = why
    return lines
