"""`mil demo`: the whole product on a small synthetic cohort, offline, in a few minutes on 2 cores.

synth (pyramidal smears) -> extract (QC, cell detection, `cytomorph`: needs no weights) -> train
(`apl_aml_healthy`, 5-fold CV) -> cells (a cell-type classifier learnt from the synthetic truth, patient-grouped
CV) -> count (the differential per slide and patient) -> heatmap (attention and type per cell, galleries,
overlays, GeoJSON) -> report (one HTML file with the differential count). Each stage is the same library call the matching command makes; the demo only chooses small sizes. A
stage is listed in the result only after it has run, so the demo never claims what it skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.core.errors import InputError

# 30 patients of the three apl_aml_healthy classes (10 each) leave >= 2 per class in every test fold of 5;
# 3000 px at 0.25 µm/px is a 0.75 mm smear field with ~250 nucleated cells.
DEMO_PATIENTS = 30
DEMO_SLIDE_PX = 3000
DEMO_MIX = {"healthy": 1.0, "AML": 1.0, "APL": 1.0}
DEMO_SEED = 1

Progress = Callable[..., None]


@dataclass
class DemoResult:
    out: Path
    stages: list[tuple[str, float, str]] = field(default_factory=list)  # (stage, seconds, what it wrote)
    report: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def check_demo_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; give a folder for the demo outputs")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} is not empty; choose a new folder or pass --overwrite")


def run_demo(
    out: Path,
    patients: int = DEMO_PATIENTS,
    slide_px: int = DEMO_SLIDE_PX,
    seed: int = DEMO_SEED,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> DemoResult:
    """Run every stage into `out/` (cohort/, bags.zarr, run/, cellmodel/, counts/, heatmaps/, report.html)."""
    from features.pipeline.config import ExtractConfig
    from features.pipeline.extract import extract
    from features.synth import SynthConfig, generate_cohort
    from mil.cells.differential import count_cells
    from mil.cells.train import train_cells
    from mil.config import load_config
    from mil.explain.heatmap import heatmap
    from mil.report.build import report
    from mil.training.train import train_cv

    out = Path(out)
    check_demo_out(out, overwrite)
    emit = progress or (lambda event, **info: None)
    result = DemoResult(out)
    cohort, store, run = out / "cohort", out / "bags.zarr", out / "run"
    heatmaps, html = out / "heatmaps", out / "report.html"
    cellmodel, counts = out / "cellmodel", out / "counts"

    def stage(name: str, call: Callable[[], Any], wrote: Callable[[Any], str]) -> Any:
        emit("stage_start", stage=name)
        started = time.perf_counter()
        value = call()
        seconds = time.perf_counter() - started
        result.stages.append((name, seconds, wrote(value)))
        emit("stage_done", stage=name, seconds=seconds, wrote=result.stages[-1][2])
        return value

    synth_config = SynthConfig(
        patients=patients, layout="slides", sites=2, seed=seed, slide_px=slide_px, diagnosis_mix=DEMO_MIX
    )
    stage(
        "synth",
        lambda: generate_cohort(cohort, synth_config, overwrite=overwrite),
        lambda s: f"{s.slides} slides, {s.nucleated_on_slides} nucleated cells -> {cohort}",
    )
    extract_config = ExtractConfig(encoder="cytomorph", workers=0, seed=seed)
    summary = stage(
        "extract",
        lambda: extract(cohort / "slides", store, extract_config, overwrite=overwrite),
        lambda s: f"{s.count('written')} bags, {s.instances} cells (cytomorph) -> {store}",
    )
    if summary.count("failed") or not summary.count("written"):
        failed = [o.message for o in summary.outcomes if o.status == "failed"][:3]
        raise InputError(f"demo extraction failed for some slides: {'; '.join(failed) or summary.message}")
    # one seed for everything, the bootstrap of metrics.json included
    config = load_config(
        "apl_aml_healthy",
        [f"train.seed={seed}", f"evaluate.seed={seed}", "train.device=cpu", f"cells.seed={seed}",
         "cells.vocabulary=synth20"],
    )  # fmt: skip
    train_config = config.train
    run_summary = stage(
        "train",
        lambda: train_cv(
            store, cohort / "labels.csv", train_config, run, overwrite=overwrite, evaluate=config.evaluate
        ),
        lambda r: f"5-fold {train_config.head}: pooled {r.headline} -> {run}",
    )
    result.metrics = dict(run_summary.pooled)
    # the cell types are learnt from the cohort's own truth (the demo has no other labelled cells): its
    # patient-grouped CV is the test; the counts below are of cells it learnt from, and say so (in_training)
    stage(
        "cells",
        lambda: train_cells(store, cohort, cellmodel, config.cells, overwrite=overwrite),
        lambda c: (
            f"{len(c.classes)} cell types, CV balanced accuracy {c.metrics['balanced_accuracy']:.3f} -> "
            f"{cellmodel}"
        ),
    )
    stage(
        "count",
        lambda: count_cells(
            cellmodel, store, counts, config.cells, overwrite=overwrite, labels=cohort / "labels.csv"
        ),
        lambda c: f"{len(c.result.patients)} patients: % per type, blast %, M:E, flags -> {counts}",
    )
    stage(
        "heatmap",
        lambda: heatmap(run, store, heatmaps, config=config.explain, overwrite=overwrite, cells=cellmodel),
        lambda h: (
            f"{h.count('written')} slides: attention.csv with cell types, galleries, overlays, GeoJSON "
            f"-> {heatmaps}"
        ),
    )
    stage(
        "report",
        lambda: report(
            run,
            store,
            html,
            config=config.report,
            overwrite=overwrite,
            cells=cellmodel,
            cells_config=config.cells,
        ),
        lambda r: f"{html}",
    )
    result.report = html
    return result
