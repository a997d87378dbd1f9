"""Microscope fields as images: the red-cell mpp estimate, field QC and field detection, on synthetic fields
rendered at a known mpp (features.synth.field_images) and, where the shared data is present, on BCCD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from features.smear.detect import match_points
from features.smear.detect_params import DetectParams
from features.smear.field_detect import detect_field
from features.smear.field_params import FieldParams
from features.smear.field_qc import assess_field
from features.smear.mpp_estimate import FieldRedCells, estimate_mpp, measure_red_cells, otsu_threshold
from features.synth.cohort import build_cohort
from features.synth.config import SynthConfig
from features.synth.field_images import render_field
from features.synth.stain import site_stains
from tests.paths import DATA

BCCD = DATA / "bccd" / "BCCD"


def field(mpp: float, seed: int = 0, width_um: float = 100.0, region: str = "monolayer", patient: int = 0):
    """(RGB, truth) of one synthetic field `width_um` wide (4:3) at `mpp`."""
    cohort = build_cohort(SynthConfig(patients=6, sites=2, seed=seed))
    stain = site_stains(2, seed)[seed % 2]
    rng = np.random.default_rng([seed, round(mpp * 1e4)])
    width = round(width_um / mpp)
    return render_field(cohort[patient], stain, rng, width, round(width * 3 / 4), mpp, region)


@pytest.mark.parametrize("mpp", [0.06, 0.25, 0.45])
def test_mpp_from_red_cells_within_5_percent(mpp):
    measured = {str(k): measure_red_cells(field(mpp, seed=k)[0]) for k in range(2)}
    estimate = estimate_mpp(measured)
    assert estimate is not None and estimate.n_cells >= 20
    assert abs(estimate.mpp / mpp - 1) < 0.05, estimate
    assert estimate.ci95[0] < estimate.mpp < estimate.ci95[1] and 0 < estimate.spread < 0.3
    record = estimate.to_dict()
    assert record["method"] == "red cells" and record["red_cells"] == estimate.n_cells


def test_crowded_fields_with_overlapping_red_cells_still_within_5_percent():
    rgb, _ = field(0.15, seed=4, width_um=160, region="hemodiluted")
    estimate = estimate_mpp({"f": measure_red_cells(rgb)}, min_red_cells=5)
    assert estimate is not None and abs(estimate.mpp / 0.15 - 1) < 0.05


def test_too_few_red_cells_is_none_and_specks_do_not_pass_for_red_cells():
    glass = np.full((480, 640, 3), (236, 231, 241), np.uint8)
    assert estimate_mpp({"glass": measure_red_cells(glass)}) is None
    # a field whose only single is a speck (a platelet, 10 px) beside fields with red cells of ~90 px: pooled,
    # the speck is left out instead of being taken for that field's red cell
    fields = {"speck": FieldRedCells(np.array([10.0]))}
    fields |= {f"f{i}": FieldRedCells(np.array([88.0, 90.0, 92.0])) for i in range(3)}
    estimate = estimate_mpp(fields, min_red_cells=5)
    assert estimate.rbc_diameter_px == pytest.approx(90.0) and estimate.n_fields == 3
    assert estimate_mpp(fields, min_red_cells=10) is None


def test_otsu_splits_two_modes():
    values = np.concatenate([np.full(100, 0.02), np.full(60, 0.3)])
    assert 0.02 < otsu_threshold(values) < 0.3


def test_field_qc_flags_small_empty_overexposed_and_blur():
    params = FieldParams()
    rgb, _ = field(0.25)
    ok = assess_field(rgb, 0.25, params)
    assert ok.problem is None and ok.in_focus and ok.stained_share > 0.2
    assert "smaller than one cell" in assess_field(rgb[:30, :30], 0.25, params).problem
    glass = np.full((300, 400, 3), (236, 231, 241), np.uint8)
    assert "empty field" in assess_field(glass, 0.25, params).problem
    burnt = np.where(rgb.min(axis=2, keepdims=True) > 150, 255, rgb).astype(np.uint8)
    burnt[:, : burnt.shape[1] * 3 // 4] = 255
    assert "overexposed" in assess_field(burnt, 0.25, params).problem
    blurred = ndimage.gaussian_filter(rgb, (8, 8, 0))  # 2 µm at 0.25 µm/px
    qc = assess_field(blurred, 0.25, params)
    assert qc.problem is None and not qc.in_focus and qc.focus < ok.focus / 5


def test_detect_field_finds_the_nucleated_cells_of_a_synthetic_field():
    tp = fp = fn = 0
    for seed in range(3):
        rgb, truth = field(0.2, seed=seed, width_um=120)
        nucleated = truth["nucleated"] == 1
        xy, area = detect_field(rgb, 0.2, DetectParams(), FieldParams())
        assert (area >= FieldParams().min_area_um2).all()
        true_xy = np.stack([truth["x"][nucleated], truth["y"][nucleated]], axis=1)
        counts = match_points(xy, true_xy, 6.0 / 0.2)
        tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
    assert tp + fn >= 15
    assert tp / (tp + fn) >= 0.9 and tp / (tp + fp) >= 0.9, (tp, fp, fn)


def test_detect_field_finds_nothing_in_red_cells_only():
    rgb, truth = field(0.2, seed=1)
    red_only = rgb.copy()
    glass = np.percentile(rgb.reshape(-1, 3), 99, axis=0).astype(np.uint8)
    cells = truth["nucleated"] == 1
    assert cells.sum() >= 3
    for x, y, d in zip(truth["x"][cells], truth["y"][cells], truth["diameter_um"][cells], strict=True):
        r = int(d / 2 / 0.2) + 8  # paint the cell out with glass
        red_only[max(0, y - r) : y + r, max(0, x - r) : x + r] = glass
    xy, _ = detect_field(red_only, 0.2, DetectParams(), FieldParams())
    assert len(xy) <= 1


@pytest.mark.skipif(not BCCD.is_dir(), reason=f"{BCCD} not present")
def test_bccd_white_cells_from_the_jpegs():
    """A real check on 60 BCCD fields: every white-cell box holds a detection, few detections lie elsewhere
    (benchmarks/fields.py measures all 364)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    from fields import box_mpp, match_in_boxes, voc_boxes

    from features.sources.fields import read_field_image

    mpp = box_mpp(BCCD / "Annotations")
    assert 0.06 < mpp < 0.09
    tp = fp = fn = 0
    images = sorted((BCCD / "JPEGImages").glob("*.jpg"))[::6]
    for image in images:
        xy, _ = detect_field(read_field_image(image), mpp, DetectParams(), FieldParams())
        t, f, n = match_in_boxes(xy, voc_boxes(BCCD / "Annotations" / f"{image.stem}.xml", "WBC"))
        tp, fp, fn = tp + t, fp + f, fn + n
    assert tp / (tp + fn) >= 0.95 and tp / (tp + fp) >= 0.93, (tp, fp, fn)
    estimate = estimate_mpp({p.name: measure_red_cells(read_field_image(p)) for p in images})
    assert estimate is not None and 0.07 < estimate.mpp < 0.095
