"""Cell types and the differential count, measured against `mil synth` truth in one run, section by section.

    python benchmarks/cells.py [--sections detection] [--patients 5] [--slide-px 4000] [--seed 2027] [--out DIR]

Cohorts: one small `mil synth` cohort (layout "slides") per scenario below, each spreading its patients evenly
over blast shares 0-95 % (`--blast-share 0:0.95`), so every scenario holds marrows from blast-free to packed.
The scenarios widen the generator beyond its defaults, one knob at a time:

    default      the generator's own smears
    dense        cellularity x3 (a packed leukaemic trail; monolayer cells still never touch)
    sparse       cellularity x0.3 (aplastic)
    large-cells  nucleated cells x1.4 across (blasts 17-25 µm)
    small-cells  nucleated cells x0.75 across
    particles    4 particles per slide, each x1.6 in radius

Sections (`--sections a,b`; later sections reuse the same cohorts):

detection  region QC + detection exactly as `mil extract` runs them (default QCParams / DetectParams), scored
           against the truth (a prediction within 6 µm of a true nucleated cell, one-to-one maximum matching,
           is a true positive):
           - per cell type: recall of the true monolayer (trail) cells by the default pipeline (QC trail only;
             the counting region), and the detector's own recall of the true cells lying in what QC called
             trail; per truth region (all regions searched): recall, precision;
           - the count the detections would give: per slide, blast % (myeloblast + npm1_blast) of the
             detections matched in the QC trail against the true blast % of the true monolayer, mean and
             worst absolute difference in points (a detector that misses blasts more than other cells
             shows up here, before any classifier);
           - QC: share of true monolayer cells whose spot QC called particle, per blast-share band;
           - speed: QC + detection CPU seconds per slide.

The seed defaults to one not used while tuning QC or detection (tuning used seeds 0, 7 and 11).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
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
            t0 = time.time()
            generate_cohort(out, config, overwrite=True, workers=min(2, os.cpu_count() or 1))
            print(f"  generated {scenario}: {self.patients} slides in {time.time() - t0:.0f} s", flush=True)
            self.paths[scenario] = out
        return self.paths[scenario]

    def slides(self, scenario: str) -> list[tuple[Path, pd.DataFrame]]:
        out = self.get(scenario)
        return [
            (tiff, pd.read_csv(out / "truth" / "slides" / f"{tiff.stem}.csv"))
            for tiff in sorted((out / "slides").glob("*.tiff"))
        ]


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
    found = np.zeros(len(nucleated), bool)
    found[(m := match_truth(det.xy, true_xy, radius))[m >= 0]] = True
    found_any = np.zeros(len(nucleated), bool)
    m_any = match_truth(everywhere.xy, true_xy, radius)
    found_any[m_any[m_any >= 0]] = True
    monolayer = (nucleated["region"] == "monolayer").to_numpy()
    blast = nucleated["cell_type"].isin(BLAST_TYPES).to_numpy()
    counted = m[m >= 0]  # true cells behind the detections the count would read
    return {
        "cells": nucleated.assign(slide=tiff.stem, found=found, found_any=found_any, qc=qc_at_truth),
        "pred_region": [TRUTH_TO_QC.get(r, "outside") for r in _nearest_region(everywhere.xy, truth, radius)],
        "pred_matched": m_any >= 0,
        "true_blast_pct": 100 * blast[monolayer].mean() if monolayer.any() else np.nan,
        "counted_blast_pct": 100 * blast[counted].mean() if len(counted) else np.nan,
        "counted": len(counted),
        "cpu_s": cpu,
    }


def _nearest_region(xy: np.ndarray, truth: pd.DataFrame, radius_px: float) -> np.ndarray:
    """Truth region of each prediction: that of the nearest truth object, glass beyond 10 µm-ish."""
    from scipy.spatial import cKDTree

    if len(xy) == 0:
        return np.zeros(0, object)
    dist, idx = cKDTree(truth[["x", "y"]].to_numpy()).query(xy)
    return np.where(dist > radius_px * 10 / RADIUS_UM, "glass", truth["region"].to_numpy()[idx])


def detection(cohorts: Cohorts, scenarios: list[str]) -> None:
    print("\n== detection: region QC + detection vs synth truth, per cell type (recall; match 6 µm) ==")
    per_type_rows, region_rows, count_rows, qc_rows = [], [], [], []
    for scenario in scenarios:
        results = [detect_slide(tiff, truth) for tiff, truth in cohorts.slides(scenario)]
        cells = pd.concat([r["cells"] for r in results], ignore_index=True)
        mono = cells[cells["region"] == "monolayer"]
        in_trail = cells[cells["qc"] == TRAIL]
        for cell_type, group in mono.groupby("cell_type"):
            qc_group = in_trail[in_trail["cell_type"] == cell_type]
            per_type_rows.append(
                {
                    "scenario": scenario,
                    "type": cell_type,
                    "n": len(group),
                    "pipeline": group["found"].mean(),
                    "in_qc_trail": qc_group["found"].mean() if len(qc_group) else np.nan,
                    "qc_particle": (group["qc"] == PARTICLE).mean(),
                }
            )
        pred_region = np.concatenate([r["pred_region"] for r in results])
        pred_matched = np.concatenate([r["pred_matched"] for r in results])
        for truth_region in ("monolayer", "hemodiluted", "particle"):
            group = cells[cells["region"] == truth_region]
            qc_name = TRUTH_TO_QC[truth_region]
            here = pred_region == qc_name
            region_rows.append(
                {
                    "scenario": scenario,
                    "region": truth_region,
                    "n": len(group),
                    "recall": group["found_any"].mean() if len(group) else np.nan,
                    "precision": pred_matched[here].mean() if here.any() else np.nan,
                }
            )
        for r in results:
            count_rows.append(
                {
                    "scenario": scenario,
                    "true_blast_pct": r["true_blast_pct"],
                    "counted_blast_pct": r["counted_blast_pct"],
                    "counted": r["counted"],
                    "cpu_s": r["cpu_s"],
                }
            )
        mono = mono.assign(band=pd.cut(100 * _slide_blast_share(cells, mono), [-1, 20, 50, 80, 100]))
        for band, group in mono.groupby("band", observed=True):
            qc_rows.append({"scenario": scenario, "blasts %": str(band), "n": len(group),
                            "called particle": (group["qc"] == PARTICLE).mean(),
                            "called trail": (group["qc"] == TRAIL).mean()})  # fmt: skip
    per_type = pd.DataFrame(per_type_rows)
    _print_per_type(per_type)
    print("\nper truth region (all regions searched):")
    regions = pd.DataFrame(region_rows).pivot(
        index="scenario", columns="region", values=["recall", "precision"]
    )
    print(regions.reindex(scenarios).round(3).to_string())
    counts = pd.DataFrame(count_rows)
    counts["error"] = (counts["counted_blast_pct"] - counts["true_blast_pct"]).abs()
    print("\nthe count the detections give (blast % of the detected QC-trail cells vs the true monolayer):")
    summary = counts.groupby("scenario", sort=False).agg(
        slides=("error", "size"), mean_abs_points=("error", "mean"), worst_points=("error", "max"),
        cells_per_slide=("counted", "mean"), cpu_s_per_slide=("cpu_s", "mean"))  # fmt: skip
    print(summary.round(2).to_string())
    print("\nQC at the true monolayer cells, by the slide's blast share:")
    print(pd.DataFrame(qc_rows).round(3).to_string(index=False))
    worst = per_type[per_type["n"] >= 20].nsmallest(5, "pipeline")
    print("\nlowest per-type pipeline recall (types with >= 20 true monolayer cells in a scenario):")
    print(worst.round(3).to_string(index=False))


def _slide_blast_share(cells: pd.DataFrame, mono: pd.DataFrame) -> pd.Series:
    """Per monolayer cell, the blast share of its slide's nucleated cells (the band it is reported in)."""
    share = cells["cell_type"].isin(BLAST_TYPES).groupby(cells["slide"]).transform("mean")
    return share.loc[mono.index]


def _print_per_type(per_type: pd.DataFrame) -> None:
    table = per_type.pivot(index="type", columns="scenario", values="pipeline")
    n = per_type.pivot(index="type", columns="scenario", values="n").fillna(0).astype(int)
    order = list(dict.fromkeys(per_type["scenario"]))
    print("\nrecall of the true monolayer cells by the default pipeline (QC trail, then detection); n in ():")
    lines = [f"{'type':<26}" + "".join(f"{s:>18}" for s in order)]
    for cell_type in table.index:
        cells = [
            f"{table.loc[cell_type, s]:.3f} ({n.loc[cell_type, s]:>4})" if n.loc[cell_type, s] else "-"
            for s in order
        ]
        lines.append(f"{cell_type:<26}" + "".join(f"{c:>18}" for c in cells))
    print("\n".join(lines))
    inner = per_type.pivot(index="type", columns="scenario", values="in_qc_trail")
    print(
        "\ndetection alone: recall of the true cells lying in what QC called trail, worst type per scenario:"
    )
    for s in order:
        col = inner[s].where(n[s] >= 20).dropna()
        print(f"  {s:<12} min {col.min():.3f} ({col.idxmin()}), all types with n >= 20: {len(col)}")


SECTIONS: dict[str, Callable[[Cohorts, list[str]], None]] = {"detection": detection}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma list of {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--patients", type=int, default=5, help="slides per scenario (blast shares 0-95 %%)")
    parser.add_argument("--slide-px", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the cohorts here (default: a temp folder)"
    )
    args = parser.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS] + [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown section or scenario: {', '.join(unknown)}")
    with tempfile.TemporaryDirectory() as tmp:
        cohorts = Cohorts(args.out or Path(tmp), args.patients, args.slide_px, args.seed)
        for name in sections:
            SECTIONS[name](cohorts, scenarios)


if __name__ == "__main__":
    main()
