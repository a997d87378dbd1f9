"""Join attention.csv rows to annotated cells (a synthetic cohort's truth files, or a pathologist's labels).

Cell folders join exactly by `file` (the image path relative to the patient folder, as both sides store it).
Slides join by position: each detected cell takes the nearest annotated cell within `radius_px` (level-0 px);
detections farther than that from every annotation stay unmatched (truth columns empty), because a detector
can find debris or split a cell, and forcing a match would invent labels. Two detections may match the same
annotated cell (a split cell); `truth_dist_px` records how far each match is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.core.errors import InputError


def join_truth(attention: pd.DataFrame, truth: pd.DataFrame, radius_px: float | None = None) -> pd.DataFrame:
    """`attention` with the truth columns added as `truth_<column>` (NaN where unmatched), same rows, same order.

    By `file` when both tables have it; otherwise by nearest `x, y` within `radius_px` (required then).
    """
    prefixed = truth.add_prefix("truth_")
    if "file" in attention.columns and "file" in truth.columns:
        dup = truth["file"].duplicated()
        if dup.any():
            raise InputError(f"truth table lists file {truth['file'][dup].iloc[0]!r} twice; one row per cell")
        joined = attention.merge(prefixed, left_on="file", right_on="truth_file", how="left", sort=False)
        return joined.drop(columns="truth_file")
    if not {"x", "y"} <= set(attention.columns) or not {"x", "y"} <= set(truth.columns):
        raise InputError("join_truth: need `file` in both tables (cell folders) or `x, y` in both (slides)")
    if radius_px is None or radius_px <= 0:
        raise InputError("join_truth: joining by position needs a radius_px > 0")
    from scipy.spatial import cKDTree

    out = attention.reset_index(drop=True).copy()
    if len(truth) == 0:
        dist = np.full(len(out), np.inf)
        idx = np.zeros(len(out), dtype=np.int64)
    else:
        tree = cKDTree(truth[["x", "y"]].to_numpy(np.float64))
        dist, idx = tree.query(out[["x", "y"]].to_numpy(np.float64), k=1, distance_upper_bound=radius_px)
    hit = np.isfinite(dist)
    # reindexing by -1 (no such row) gives an all-NaN row: unmatched detections get empty truth
    matched = prefixed.reset_index(drop=True).reindex(np.where(hit, idx, -1)).reset_index(drop=True)
    out = pd.concat([out, matched], axis=1)
    out["truth_dist_px"] = np.where(hit, dist, np.nan)
    return out
