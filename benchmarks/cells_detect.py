"""`python benchmarks/cells.py --part detect`: region QC + detection against `mil synth` truth, per cell type
and region (the entry point, benchmarks/cells.py, holds the options).

Cohorts: one small `mil synth` cohort (layout "slides") per scenario below, each spreading its patients evenly
over blast shares 0-95 % (`--blast-share 0:0.95`), so every scenario holds marrows from blast-free to packed.
The scenarios widen the generator beyond its defaults, one knob at a time:

    default      the generator's own smears
    dense        cellularity x3 (a packed leukaemic trail; monolayer cells still never touch)
    sparse       cellularity x0.3 (aplastic)
    large-cells  nucleated cells x1.4 across (blasts 17-25 µm)
    small-cells  nucleated cells x0.75 across
    particles    4 particles per slide, each x1.6 in radius

Region QC + detection run exactly as `mil extract` runs them (default QCParams / DetectParams), scored against
the truth (a prediction within 6 µm of a true nucleated cell, one-to-one maximum matching, is a true positive):
1. per cell type, recall in the counting region: of the true monolayer and hemodiluted cells lying where QC
   says trail (and how many particle cells QC let into the trail, and how many of those overlapping cells
   detection still finds);
2. end to end: of the true monolayer cells (QC must call their spot trail, then detection find them), with
   the share QC called particle or hemodiluted;
3. per truth region (all regions searched): recall, precision;
4. the count the detections give: per slide, blast % (myeloblast + npm1_blast) of the matched detections vs
   that of every true cell where QC says trail (detection bias: a detector that misses blasts more than other
   cells shows up here, before any classifier) and that vs the true monolayer (QC's selection: hemodiluted
   areas called trail hold fewer blasts); precision, cells and QC + detection CPU seconds per slide;
5. the share of true monolayer cells QC called particle, by the slide's blast share.

The seed defaults to one not used while tuning QC or detection (tuning used seeds 0, 7 and 11; the #12
hemodiluted and eosinophil changes were tuned on the count cohorts, seeds 21 and 22).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.smear.detect import DetectParams, detect_cells, match_truth  # noqa: E402
from features.smear.qc import REGIONS, QCParams, assess_regions  # noqa: E402
from features.sources.openslide_reader import SlideReader  # noqa: E402
from features.synth import SynthConfig, generate_cohort  # noqa: E402
from features.synth.cohort import BLAST_TYPES  # noqa: E402

SCENARIOS: dict[str, dict] = {
    "default": {},
    "dense": {"cellularity_scale": 3.0},
    "sparse": {"cellularity_scale": 0.3},
    "large-cells": {"cell_size_scale": 1.4},
    "small-cells": {"cell_size_scale": 0.75},
    "particles": {"particles": 4, "particle_size_scale": 1.6},
}
TRUTH_TO_QC = {"glass": "outside", "monolayer": "trail", "hemodiluted": "hemodiluted", "particle": "particle"}
RADIUS_UM = 6.0
TRAIL, PARTICLE = REGIONS.index("trail"), REGIONS.index("particle")


@dataclass
class Cohorts:
    """The scenario cohorts, generated once per run and shared by every section."""

    root: Path
    patients: int
    slide_px: int
    seed: int
    paths: dict[str, Path] = field(default_factory=dict)

    def get(self, scenario: str) -> Path:
        if scenario not in self.paths:
            out = self.root / scenario
            config = SynthConfig(
                patients=self.patients,
                layout="slides",
                slide_px=self.slide_px,
                seed=self.seed,
                blast_share=(0.0, 0.95),
                **SCENARIOS[scenario],
            )
            if _recorded_config(out) != json.loads(json.dumps(config.recorded())):  # reuse a kept cohort
                t0 = time.time()
                generate_cohort(out, config, overwrite=True, workers=min(2, os.cpu_count() or 1))
                print(
                    f"  generated {scenario}: {self.patients} slides in {time.time() - t0:.0f} s", flush=True
                )
            self.paths[scenario] = out
        return self.paths[scenario]

    def slides(self, scenario: str) -> list[tuple[Path, pd.DataFrame]]:
        out = self.get(scenario)
        return [
            (tiff, pd.read_csv(out / "truth" / "slides" / f"{tiff.stem}.csv"))
            for tiff in sorted((out / "slides").glob("*.tiff"))
        ]


def _recorded_config(out: Path) -> dict | None:
    try:
        return json.loads((out / "cohort.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return None


# ---- detection -----------------------------------------------------------------------------------------------


def detect_slide(tiff: Path, truth: pd.DataFrame) -> dict:
    """QC and detection of one slide as `mil extract` runs them, and every figure the section needs."""
    nucleated = truth[truth["nucleated"] == 1].reset_index(drop=True)
    true_xy = nucleated[["x", "y"]].to_numpy()
    with SlideReader(tiff) as reader:
        cpu = time.process_time()
        region_map = assess_regions(reader, QCParams())
        det = detect_cells(reader, region_map, DetectParams())
        cpu = time.process_time() - cpu
        everywhere = detect_cells(
            reader, region_map, DetectParams(regions=("trail", "hemodiluted", "particle"))
        )
        radius = RADIUS_UM / reader.mpp
    qc_at_truth = region_map.region_at(true_xy)
    match = match_truth(det.xy, true_xy, radius)
    found = np.zeros(len(nucleated), bool)
    found[match[match >= 0]] = True
    m_any = match_truth(everywhere.xy, true_xy, radius)
    found_any = np.zeros(len(nucleated), bool)
    found_any[m_any[m_any >= 0]] = True
    blast = nucleated["cell_type"].isin(BLAST_TYPES).to_numpy()
    monolayer = (nucleated["region"] == "monolayer").to_numpy()
    in_trail = qc_at_truth == TRAIL
    counted = match[match >= 0]  # the true cells behind the detections the count reads

    def pct(mask_or_index) -> float:
        picked = blast[mask_or_index]
        return 100 * picked.mean() if len(picked) else np.nan

    return {
        "cells": nucleated.assign(slide=tiff.stem, found=found, found_any=found_any, qc=qc_at_truth),
        "pred_region": _nearest_region(everywhere.xy, truth, radius),
        "pred_matched": m_any >= 0,
        "slide": {
            "blasts_monolayer": pct(monolayer),
            "blasts_qc_trail": pct(in_trail),
            "blasts_counted": pct(counted),
            "counted": len(counted),
            "precision": (match >= 0).mean() if len(match) else np.nan,
            "cpu_s": cpu,
        },
    }


def _nearest_region(xy: np.ndarray, truth: pd.DataFrame, radius_px: float) -> np.ndarray:
    """QC name of the truth region of each prediction: that of the nearest truth object, glass beyond 10 µm."""
    from scipy.spatial import cKDTree

    if len(xy) == 0:
        return np.zeros(0, object)
    dist, idx = cKDTree(truth[["x", "y"]].to_numpy()).query(xy)
    region = truth["region"].map(TRUTH_TO_QC).to_numpy()[idx]
    return np.where(dist > radius_px * 10 / RADIUS_UM, "outside", region)


def part_detect(cohorts: Cohorts, scenarios: list[str]) -> None:
    print("\n== detection: region QC + detection vs synth truth (match within 6 µm, one to one) ==")
    cells_of, per_slide, region_rows = {}, [], []
    for scenario in scenarios:
        results = [detect_slide(tiff, truth) for tiff, truth in cohorts.slides(scenario)]
        cells = pd.concat([r["cells"] for r in results], ignore_index=True)
        cells_of[scenario] = cells
        per_slide += [{"scenario": scenario, **r["slide"]} for r in results]
        pred_region = np.concatenate([r["pred_region"] for r in results])
        pred_matched = np.concatenate([r["pred_matched"] for r in results])
        for truth_region in ("monolayer", "hemodiluted", "particle"):
            group = cells[cells["region"] == truth_region]
            here = pred_region == TRUTH_TO_QC[truth_region]
            region_rows.append(
                {
                    "scenario": scenario,
                    "region": truth_region,
                    "recall": group["found_any"].mean() if len(group) else np.nan,
                    "precision": pred_matched[here].mean() if here.any() else np.nan,
                }
            )
    in_trail = {s: c[(c["qc"] == TRAIL) & (c["region"] != "particle")] for s, c in cells_of.items()}
    _print_type_table(
        "1. recall in the counting region: true monolayer and hemodiluted cells where QC says trail, found",
        {s: c.groupby("cell_type")["found"].agg(["mean", "size"]) for s, c in in_trail.items()},
    )
    print(
        "particle cells where QC says trail (overlapping, not countable): share of the QC-trail cells; found"
    )
    for s, c in cells_of.items():
        trail = c[c["qc"] == TRAIL]
        leaked = trail[trail["region"] == "particle"]
        print(
            f"  {s:<12} {len(leaked) / max(len(trail), 1):.3f} ({len(leaked)} cells); found {leaked['found'].mean():.3f}"
        )
    monolayer = {s: c[c["region"] == "monolayer"] for s, c in cells_of.items()}
    print("\n2. end to end: true monolayer cells found by QC (trail) + detection; lowest type with n >= 20")
    for s, c in monolayer.items():
        by_type = c.groupby("cell_type")["found"].agg(["mean", "size"])
        by_type = by_type[by_type["size"] >= 20]
        lowest = (
            f"{by_type['mean'].min():.3f} ({by_type['mean'].idxmin()})" if len(by_type) else "- (no type)"
        )
        print(f"  {s:<12} all {c['found'].mean():.3f} (n {len(c)}); lowest {lowest}; "
              f"QC called {(c['qc'] == PARTICLE).mean():.3f} of them particle, "
              f"{(c['qc'] == REGIONS.index('hemodiluted')).mean():.3f} hemodiluted")  # fmt: skip
    print("\n3. per truth region, every region searched:")
    regions = pd.DataFrame(region_rows).pivot(
        index="scenario", columns="region", values=["recall", "precision"]
    )
    print(regions.reindex(scenarios).round(3).to_string())
    slides = pd.DataFrame(per_slide)
    slides["detection_bias"] = (slides["blasts_counted"] - slides["blasts_qc_trail"]).abs()
    slides["qc_selection"] = (slides["blasts_qc_trail"] - slides["blasts_monolayer"]).abs()
    slides["total"] = (slides["blasts_counted"] - slides["blasts_monolayer"]).abs()
    print(
        "\n4. the count the detections give, blast % (myeloblast + npm1_blast), |difference| in points per slide:"
    )
    print("   detection = counted vs every true cell where QC says trail; QC = those vs the true monolayer")
    summary = slides.groupby("scenario", sort=False).agg(
        slides=("total", "size"), detection_mean=("detection_bias", "mean"),
        detection_worst=("detection_bias", "max"), qc_mean=("qc_selection", "mean"), qc_worst=("qc_selection", "max"),
        total_mean=("total", "mean"), total_worst=("total", "max"), precision=("precision", "mean"),
        cells_per_slide=("counted", "mean"), cpu_s_per_slide=("cpu_s", "mean"))  # fmt: skip
    print(summary.round(3).to_string())
    print("\n5. QC at the true monolayer cells, by the slide's blast share (share called particle):")
    rows = []
    for s, c in monolayer.items():
        share = cells_of[s]["cell_type"].isin(BLAST_TYPES).groupby(cells_of[s]["slide"]).mean()
        band = pd.cut(100 * c["slide"].map(share), [-1, 20, 50, 80, 100])
        for b, group in c.groupby(band, observed=True):
            rows.append({"scenario": s, "blasts %": str(b), "n": len(group),
                         "called particle": round((group["qc"] == PARTICLE).mean(), 3)})  # fmt: skip
    print(
        pd.DataFrame(rows).pivot(index="scenario", columns="blasts %", values="called particle").to_string()
    )


def _print_type_table(title: str, per_scenario: dict[str, pd.DataFrame]) -> None:
    """Types x scenarios (and pooled over them): recall (n); the lowest recall among types with n >= 20 at the
    bottom."""
    found = pd.concat([t["mean"] * t["size"] for t in per_scenario.values()], axis=1).sum(axis=1)
    pooled = pd.DataFrame({"size": pd.concat([t["size"] for t in per_scenario.values()], axis=1).sum(axis=1)})
    pooled["mean"] = found / pooled["size"]
    tables = {**per_scenario, "pooled": pooled}
    print(f"\n{title}; n in ():")
    print(f"{'type':<26}" + "".join(f"{s:>16}" for s in tables))
    for cell_type in pooled.index:
        row = [
            f"{t.loc[cell_type, 'mean']:.3f} ({t.loc[cell_type, 'size']:>4.0f})"
            if cell_type in t.index
            else "-"
            for t in tables.values()
        ]
        print(f"{cell_type:<26}" + "".join(f"{c:>16}" for c in row))
    lowest = [f"{t.loc[t['size'] >= 20, 'mean'].min():.3f}" for t in tables.values()]
    print(f"{'lowest (n >= 20)':<26}" + "".join(f"{c:>16}" for c in lowest))
