"""Nucleated cells of one microscope field: the slide detector's segmentation with gates in µm and colour.

A field is small (a camera frame), so it is segmented whole at `DetectParams.detect_mpp`; no tiling, no region
map. What differs from slides is what real camera fields hold (BCCD: pale nuclei, purple-tinged red cells piled
on each other, platelet clumps, refractile dots on red cells):
- the darkness threshold is lower (`FieldParams.nuclear_od`), so pale nuclei are found whole, with the
  pixel veto of red-cell colour (`FieldParams.beyond_red_od`, see `features.smear.stain_od.nuclear_from_od`)
  keeping the mask off the red cells around them;
- a colour decision per object: an object is kept when its mean optical density beyond the field's own
  red-cell colour reaches `FieldParams.min_chromatin_od`, so red cells and their overlaps (pure red-cell
  colour, however dark) fall out as whole objects instead of leaving fragments behind;
- objects under `FieldParams.min_area_um2` (platelets) are dropped, and those under
  `FieldParams.dense_below_um2` are kept only when dense (`dense_min_od`): a small nucleus is pyknotic (a late
  normoblast) or a lymphocyte's, while platelet clumps and nuclear fragments are paler.
"""

from __future__ import annotations

import math

import numpy as np

from features.smear.detect_params import DetectParams
from features.smear.field_params import FieldParams
from features.smear.imageops import block_mean
from features.smear.nuclei import label_nuclei, measure_nuclei
from features.smear.stain_od import channel_od, red_cell_colour


def working_copy(rgb: np.ndarray, mpp: float, target_mpp: float) -> tuple[np.ndarray, int]:
    """The field block-averaged by the largest integer k with mpp * k <= target (never upsampled), and k."""
    k = max(1, int(math.floor(target_mpp / mpp + 1e-6)))
    return block_mean(rgb, k), k


def detect_field(
    rgb: np.ndarray, mpp: float, detect: DetectParams, fields: FieldParams
) -> tuple[np.ndarray, np.ndarray]:
    """(N x 2 float centres in the field's own pixels, N areas in µm²) of the nucleated cells of one field."""
    small, k = working_copy(rgb, mpp, detect.detect_mpp)
    work_mpp = mpp * k
    # Against the field's own glass: a camera's white balance puts glass anywhere from 200 to 255, and the
    # segmentation reads OD against 255, so the copy is balanced to glass = 255 first.
    white = np.clip(np.percentile(small.reshape(-1, 3), 99, axis=0), 64, 255).astype(np.float32)
    balanced = np.clip(small * (255.0 / white) + 0.5, 0, 255).astype(np.uint8)
    od_r, od_g, od_b = channel_od(balanced, np.full(3, 255.5, np.float32))
    red_od = red_cell_colour(od_r, od_g, od_b, (od_r + od_g + od_b) > 0.1)
    params = detect.model_copy(
        update={
            "nuclear_od": fields.nuclear_od,
            "split_od": fields.nuclear_od,  # fields split on their own mask (the colour gates do the rest)
            "min_area_um2": fields.min_area_um2,
            "split_min_radius_um": fields.split_min_radius_um,
            "beyond_red_od": fields.beyond_red_od,
            # Fields keep objects by their chromatin beyond red-cell colour (below), which a granule-and-
            # nucleus object dilutes; the granule cue is measured on slides only (benchmarks/cells.py).
            "granule_ratio": 0.0,
        }
    )
    comp = label_nuclei(balanced, work_mpp, params, red_od)
    centres, area_um2, labels = measure_nuclei(comp, work_mpp, params)
    if len(labels) and red_od is not None:
        amount = np.minimum(np.minimum(od_r / red_od[0], od_g / red_od[1]), od_b / red_od[2])
        beyond = np.minimum(od_r - amount * red_od[0], od_g - amount * red_od[1])
        flat, n = comp.ravel(), int(comp.max())
        count = np.maximum(np.bincount(flat, minlength=n + 1), 1)
        chromatin = (np.bincount(flat, weights=beyond.ravel(), minlength=n + 1) / count)[labels]
        peak = np.zeros(n + 1, np.float32)
        np.maximum.at(peak, flat, np.minimum(od_r, od_g).ravel())
        dense = peak[labels] >= fields.dense_min_od
        keep = (chromatin >= fields.min_chromatin_od) & ((area_um2 >= fields.dense_below_um2) | dense)
        centres, area_um2 = centres[keep], area_um2[keep]
    elif red_od is None:  # nothing stained enough to tell a red cell from chromatin: no cells
        centres, area_um2 = centres[:0], area_um2[:0]
    return centres * k, area_um2


__all__ = ["detect_field", "working_copy"]
