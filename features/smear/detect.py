"""Nucleated-cell detection on a smear, tile by tile, with numpy/scipy only.

Each tile is read at `detect_mpp` (from the pyramid level at or below it, block-averaged by an integer) and
its nuclei are segmented by `features.smear.nuclei.segment_nuclei` (nuclear colour mask, lobes merged, touching
nuclei split, size filter); the cell centre is the centroid of its merged nuclear object, in level-0 pixels.

Tiles overlap by `overlap_um` per side and a tile keeps only the objects whose centroid lies in its core, so
each cell is counted once and was seen whole. Memory is one tile (a 100k x 50k px smear is never held).

Only `DetectParams.regions` are searched (default: the good trail). Particles are excluded by default because
their nuclei overlap in several layers (counts and crops would mix cells), hemodiluted areas because they
are mostly peripheral blood. Measured against the synthetic generator's truth: benchmarks/detection.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import maximum_bipartite_matching
from scipy.spatial import cKDTree

from features.smear.detect_params import DetectParams
from features.smear.imageops import block_mean
from features.smear.nuclei import segment_nuclei
from features.smear.qc import REGIONS, RegionMap, region_codes

if TYPE_CHECKING:  # only the code that opens slides imports OpenSlide (see features.smear.imageops)
    from features.sources.openslide_reader import SlideReader

Progress = Callable[..., None]


@dataclass
class Detections:
    """Detected instances of one slide, in level-0 pixels. Row order is spatial (tile by tile)."""

    xy: np.ndarray  # N x 2 int64 level-0 (x, y)
    area_um2: np.ndarray  # N float32
    region: np.ndarray  # N uint8 codes into REGIONS
    in_focus: np.ndarray  # N bool

    def __len__(self) -> int:
        return len(self.xy)

    def subset(self, keep: np.ndarray) -> Detections:
        return Detections(self.xy[keep], self.area_um2[keep], self.region[keep], self.in_focus[keep])

    @staticmethod
    def empty() -> Detections:
        return Detections(
            np.zeros((0, 2), np.int64), np.zeros(0, np.float32), np.zeros(0, np.uint8), np.zeros(0, bool)
        )


def detect_cells(
    reader: SlideReader, region_map: RegionMap, params: DetectParams, progress: Progress | None = None
) -> Detections:
    """Nucleated cells in the searched regions of one slide, in spatial (tile) order."""
    want = max(params.detect_mpp / reader.mpp, 1.0)
    level = reader.best_level(want)
    level_ds = reader.level_downsamples[level]
    k = max(1, int(math.floor(want / level_ds + 1e-6)))
    ds = level_ds * k  # level-0 px per working px (exact)
    mpp = reader.mpp * ds
    core0 = params.tile_px * ds  # tile core in level-0 px
    pad = math.ceil(params.overlap_um / mpp)  # working px
    width, height = reader.dimensions
    tiles = _tiles_to_search(region_map, params.regions, core0, width, height)
    found_xy, found_area = [], []
    for i, (tx, ty) in enumerate(tiles):
        x0, y0 = tx * core0, ty * core0
        # Read core + overlap at the chosen level; level px = k working px.
        ox, oy = x0 - pad * ds, y0 - pad * ds
        side = (params.tile_px + 2 * pad) * k
        rgb = reader.read_region(round(ox), round(oy), side, side, level)
        centres, area = segment_nuclei(block_mean(rgb, k), mpp, params, region_map.red_od)
        xy0 = centres * ds + np.array([round(ox), round(oy)])
        own = (xy0[:, 0] >= x0) & (xy0[:, 0] < x0 + core0) & (xy0[:, 1] >= y0) & (xy0[:, 1] < y0 + core0)
        found_xy.append(xy0[own])
        found_area.append(area[own])
        if progress is not None:
            progress("detect", done=i + 1, total=len(tiles))
    if not tiles:
        return Detections.empty()
    xy = np.floor(np.concatenate(found_xy)).astype(np.int64)
    det = Detections(
        xy,
        np.concatenate(found_area).astype(np.float32),
        region_map.region_at(xy),
        region_map.in_focus_at(xy),
    )
    keep = np.isin(det.region, region_codes(params.regions))
    if params.require_in_focus:
        keep &= det.in_focus
    return det.subset(keep)


def _tiles_to_search(
    region_map: RegionMap, regions: tuple[str, ...], core0: float, width: int, height: int
) -> list[tuple[int, int]]:
    """(column, row) of the tiles whose footprint touches a searched region on the map, row-major."""
    searched = np.isin(region_map.labels, region_codes(regions))
    iy, ix = np.nonzero(searched)
    if len(iy) == 0:
        return []
    ds = region_map.downsample
    # A map pixel spans level-0 [i*ds, (i+1)*ds); mark every tile it overlaps.
    cols = max(1, math.ceil(width / core0))
    rows = max(1, math.ceil(height / core0))
    hit = np.zeros((rows, cols), bool)
    for dy in (0.0, 1.0 - 1e-9):
        for dx in (0.0, 1.0 - 1e-9):
            ty = np.clip(((iy + dy) * ds // core0).astype(int), 0, rows - 1)
            tx = np.clip(((ix + dx) * ds // core0).astype(int), 0, cols - 1)
            hit[ty, tx] = True
    return [(int(c), int(r)) for r, c in zip(*np.nonzero(hit), strict=True)]


def grid_tiles(region_map: RegionMap, tile_um: float, mpp: float, regions: tuple[str, ...]) -> Detections:
    """Tile centres on a regular level-0 grid, for `--unit tiles`: a tile is kept when at least half of its
    area lies in the chosen regions (measured on the region map). `area_um2` is the tile area."""
    codes = region_codes(regions)
    searched = np.isin(region_map.labels, codes).astype(np.float64)
    ds = region_map.downsample
    h, w = searched.shape
    step0 = tile_um / mpp
    xs = np.arange(step0 / 2, w * ds - step0 / 2 + 1e-9, step0)
    ys = np.arange(step0 / 2, h * ds - step0 / 2 + 1e-9, step0)
    if len(xs) == 0 or len(ys) == 0:
        return Detections.empty()
    cx, cy = np.meshgrid(xs, ys)
    cx, cy = cx.ravel(), cy.ravel()
    # Summed-area table: the fraction of each tile's map pixels in the chosen regions, vectorised.
    sat = np.zeros((h + 1, w + 1))
    sat[1:, 1:] = searched.cumsum(0).cumsum(1)
    x0 = np.clip(np.round((cx - step0 / 2) / ds).astype(int), 0, w)
    x1 = np.clip(np.round((cx + step0 / 2) / ds).astype(int), 0, w)
    y0 = np.clip(np.round((cy - step0 / 2) / ds).astype(int), 0, h)
    y1 = np.clip(np.round((cy + step0 / 2) / ds).astype(int), 0, h)
    x1, y1 = np.maximum(x1, x0 + 1).clip(max=w), np.maximum(y1, y0 + 1).clip(max=h)
    inside = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    frac = inside / np.maximum((x1 - x0) * (y1 - y0), 1)
    keep = frac >= 0.5
    xy = np.stack([cx[keep], cy[keep]], axis=1).astype(np.int64)
    region = region_map.region_at(xy)
    region = np.where(np.isin(region, codes), region, codes[0]).astype(np.uint8)
    area = np.full(len(xy), tile_um * tile_um, np.float32)
    return Detections(xy, area, region, region_map.in_focus_at(xy))


def match_points(pred_xy: np.ndarray, true_xy: np.ndarray, radius_px: float) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of a one-to-one matching within `radius_px`.

    The matching has maximum cardinality (Hopcroft-Karp on the bipartite "within radius" graph), so the
    count does not depend on point order, unlike greedy nearest-first matching.
    """
    match = match_truth(pred_xy, true_xy, radius_px)
    tp = int((match >= 0).sum())
    return tp, len(match) - tp, len(np.asarray(true_xy).reshape(-1, 2)) - tp


def match_truth(pred_xy: np.ndarray, true_xy: np.ndarray, radius_px: float) -> np.ndarray:
    """For each prediction, the index of the true point it is matched to (-1: none), by the maximum
    one-to-one matching within `radius_px` of `match_points` (what per-type recall and labels need)."""
    pred_xy = np.asarray(pred_xy, float).reshape(-1, 2)
    true_xy = np.asarray(true_xy, float).reshape(-1, 2)
    none = np.full(len(pred_xy), -1, np.int64)
    if len(pred_xy) == 0 or len(true_xy) == 0:
        return none
    pairs = cKDTree(pred_xy).sparse_distance_matrix(cKDTree(true_xy), radius_px, output_type="ndarray")
    if len(pairs) == 0:
        return none
    graph = csr_array((np.ones(len(pairs)), (pairs["i"], pairs["j"])), shape=(len(pred_xy), len(true_xy)))
    return maximum_bipartite_matching(graph, perm_type="column").astype(np.int64)


__all__ = [
    "REGIONS",
    "DetectParams",
    "Detections",
    "detect_cells",
    "grid_tiles",
    "match_points",
    "match_truth",
]
