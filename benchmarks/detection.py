"""Nucleated-cell detection and region QC against the synthetic generator's truth, measured in one run.

    /work/venv/bin/python benchmarks/detection.py [--patients 4] [--slide-px 4000] [--seed 2026] [--out DIR]

Writes a fresh synthetic cohort (features.synth, layout "slides"), then per slide runs region QC and
detection exactly as `mil extract` does (defaults of QCParams / DetectParams) and prints:

1. detection per truth region: cells are searched in every stained region (not only the trail) and each
   prediction is attributed to the truth region of its nearest truth object (red cells carpet every
   region, so this is the smear region it lies in; > 10 µm from any object counts as glass). A prediction
   within 6 µm of a true nucleated cell (one-to-one, maximum matching) is a true positive.
2. the default pipeline end to end (QC trail only): recall of the true trail cells, precision against all
   true nucleated cells, and the share of its cells that lie in the true trail.
3. region QC: share of truth objects of each truth region given each QC label (area-like weighting, since
   red cells are spread evenly), with random glass points for "outside".
4. speed: QC + detection seconds per slide (wall and CPU of this process; one thread) and cells/s.

The seed defaults to one never used while tuning the detector (tuning used seeds 0 and 11).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from features.smear.detect import DetectParams, detect_cells, match_points
from features.smear.qc import REGIONS, QCParams, assess_regions
from features.sources.openslide_reader import SlideReader
from features.synth import SynthConfig, generate_cohort

TRUTH_TO_QC = {"glass": "outside", "monolayer": "trail", "hemodiluted": "hemodiluted", "particle": "particle"}
RADIUS_UM = 6.0


def attribute(pred_xy: np.ndarray, truth: pd.DataFrame, mpp: float) -> np.ndarray:
    """QC-named truth region of each prediction: that of the nearest truth object, 'outside' beyond 10 µm."""
    if len(pred_xy) == 0:
        return np.zeros(0, object)
    dist, idx = cKDTree(truth[["x", "y"]].to_numpy()).query(pred_xy)
    region = truth["region"].map(TRUTH_TO_QC).to_numpy()[idx]
    return np.where(dist * mpp > 10, "outside", region)


def run(out: Path, patients: int, slide_px: int, seed: int) -> None:
    t0 = time.time()
    generate_cohort(
        out, SynthConfig(patients=patients, layout="slides", slide_px=slide_px, seed=seed), overwrite=True
    )
    print(f"generated {patients} slides of {slide_px} px in {time.time() - t0:.0f} s ({out})")
    per_region = {r: np.zeros(3) for r in ("trail", "hemodiluted", "particle")}
    end_to_end = np.zeros(5)  # tp_trail, fn_trail, tp_any, fp_any, predicted_in_true_trail
    qc_conf = np.zeros((4, 4))
    wall = cpu = cells = 0.0
    all_regions = DetectParams(regions=("trail", "hemodiluted", "particle"))
    for slide in sorted((out / "slides").glob("*.tiff")):
        truth = pd.read_csv(out / "truth" / "slides" / f"{slide.stem}.csv")
        nucleated = truth[truth["nucleated"] == 1]
        with SlideReader(slide) as reader:
            mpp, (w, h) = reader.mpp, reader.dimensions
            start, start_cpu = time.perf_counter(), time.process_time()
            region_map = assess_regions(reader, QCParams())
            det = detect_cells(reader, region_map, DetectParams())
            wall += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
            cells += len(det)
            everywhere = detect_cells(reader, region_map, all_regions)
        radius = RADIUS_UM / mpp
        # 1. per truth region, searching everywhere
        where = attribute(everywhere.xy, truth, mpp)
        truth_region = nucleated["region"].map(TRUTH_TO_QC).to_numpy()
        for name, acc in per_region.items():
            acc += match_points(
                everywhere.xy[where == name], nucleated[["x", "y"]].to_numpy()[truth_region == name], radius
            )
        # 2. default pipeline: QC trail only
        trail_truth = nucleated[["x", "y"]].to_numpy()[truth_region == "trail"]
        tp, _, fn = match_points(det.xy, trail_truth, radius)
        tp_any, fp_any, _ = match_points(det.xy, nucleated[["x", "y"]].to_numpy(), radius)
        end_to_end += (tp, fn, tp_any, fp_any, (attribute(det.xy, truth, mpp) == "trail").sum())
        # 3. region QC at truth objects, plus random glass points
        codes = truth["region"].map(TRUTH_TO_QC).map(REGIONS.index).to_numpy()
        np.add.at(qc_conf, (codes, region_map.region_at(truth[["x", "y"]].to_numpy())), 1)
        points = np.random.default_rng(0).uniform(0, [w, h], (4000, 2))
        far, _ = cKDTree(truth[["x", "y"]].to_numpy()).query(points)
        glass = points[far * mpp > 25]
        np.add.at(qc_conf, (np.zeros(len(glass), int), region_map.region_at(glass)), 1)

    print(f"\n1. detection per truth region (all regions searched; match radius {RADIUS_UM} µm)")
    print(f"{'region':<12} {'truth':>6} {'recall':>7} {'precision':>9}")
    total = np.zeros(3)
    for name, (tp, fp, fn) in per_region.items():
        total += (tp, fp, fn)
        print(f"{name:<12} {tp + fn:>6.0f} {tp / max(tp + fn, 1):>7.3f} {tp / max(tp + fp, 1):>9.3f}")
    tp, fp, fn = total
    print(f"{'overall':<12} {tp + fn:>6.0f} {tp / max(tp + fn, 1):>7.3f} {tp / max(tp + fp, 1):>9.3f}")
    tp, fn, tp_any, fp_any, in_trail = end_to_end
    n_det = tp_any + fp_any
    print("\n2. default pipeline (QC trail only)")
    print(f"recall of true trail cells {tp / max(tp + fn, 1):.3f} | precision vs all nucleated {tp_any / max(n_det, 1):.3f}"
          f" | share of its cells in the true trail {in_trail / max(n_det, 1):.3f} | cells {n_det:.0f}")  # fmt: skip
    print("\n3. region QC: rows = truth, columns = QC label (share of objects)")
    rows = qc_conf / np.maximum(qc_conf.sum(axis=1, keepdims=True), 1)
    print(pd.DataFrame(rows.round(3), index=[f"truth {r}" for r in REGIONS], columns=REGIONS).to_string())
    n = len(list((out / "slides").glob("*.tiff")))
    mpx = n * slide_px * slide_px / 1e6
    print(f"\n4. speed: QC + detection {wall / n:.2f} s/slide wall, {cpu / n:.2f} s/slide CPU "
          f"({slide_px} x {slide_px} px at {mpp} µm/px); {cells / max(cpu, 1e-9):.0f} cells/s and "
          f"{mpx / max(cpu, 1e-9):.1f} level-0 Mpx/s CPU")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--slide-px", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the cohort here (default: a temp folder)"
    )
    args = parser.parse_args()
    if args.out is not None:
        run(args.out, args.patients, args.slide_px, args.seed)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args.patients, args.slide_px, args.seed)


if __name__ == "__main__":
    main()
