"""Which particle candidates of the region map are marrow particles: overlapping cells, seen at ~1 µm/px.

On the coarse map (`features.smear.qc`, ~4 µm/px) a particle and a packed monolayer look alike: both are
dark and rich in chromatin colour over a 64 µm window, and a single large blast on a thin trail is as dark
as a small clump. What tells them apart is visible only at a finer scale: in a particle cells lie on top of
one another, so chromatin and the thick particle ground form one connected mass far larger than any cell;
in a monolayer every cell is an island among red cells and glass, however tightly the islands are packed.

So each candidate area is read at `QCParams.clump_mpp`, piece by piece (memory is one piece), its chromatin-
coloured pixels (red AND green OD above `clump_od`, the slide's red-cell colour vetoed as in detection)
are joined over 1 µm gaps, and connected masses of at least `clump_min_um2` are clumps. A candidate map
pixel stays particle when a clump lies within `particle_reach_um` (the thinner rim of a particle around its
clumps) or is enclosed by such pixels (fat spaces); the rest is handed back to the trail/hemodiluted rules. Only candidate tiles are read, a few per
cent of a smear.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from features.smear.imageops import block_mean, fill_holes
from features.smear.stain_od import channel_od, nuclear_from_od

if TYPE_CHECKING:
    from features.smear.qc import QCParams
    from features.sources.openslide_reader import SlideReader

TILE_MAP_PX = 128  # candidate tiles of 128 x 128 map pixels (512 µm at 4 µm/px)
CLUMPED_SHARE = 0.25  # a map pixel is clumped when a quarter of it lies in a clump


def confirm_particles(
    reader: SlideReader,
    candidate: np.ndarray,
    map_ds: float,
    white: np.ndarray,
    red_od: np.ndarray | None,
    params: QCParams,
) -> np.ndarray:
    """The candidate map pixels (bool, map grid) that lie within `particle_reach_um` of a clump."""
    if not candidate.any():
        return candidate
    clumped = clump_share(reader, candidate, map_ds, white, red_od, params) >= CLUMPED_SHARE
    reach = params.particle_reach_um / (map_ds * reader.mpp)  # map px
    r = max(1, math.ceil(reach))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    near = ndimage.binary_dilation(clumped, structure=np.hypot(xx, yy) <= reach)
    # Fat spaces and paler patches inside a particle hold no clump but are enclosed by it.
    return candidate & fill_holes(near[None])[0]


def clump_share(
    reader: SlideReader,
    candidate: np.ndarray,
    map_ds: float,
    white: np.ndarray,
    red_od: np.ndarray | None,
    params: QCParams,
) -> np.ndarray:
    """Share of each map pixel (float32, map grid) covered by clumps; 0 where nothing was read. Read are the
    bounding boxes of the candidate areas, in pieces of at most TILE_MAP_PX map pixels."""
    want = max(params.clump_mpp / reader.mpp, 1.0)
    level = reader.best_level(want)
    level_ds = reader.level_downsamples[level]
    k = max(1, int(math.floor(want / level_ds + 1e-6)))
    work_ds = level_ds * k  # level-0 px per working px
    mpp = reader.mpp * work_ds
    margin = math.ceil(math.sqrt(params.clump_min_um2) / mpp)  # a clump cut by the edge stays large
    close = 2 * round(1.0 / mpp) + 1  # joins over ~1 µm gaps (none at 2 µm/px and coarser)
    share = np.zeros(candidate.shape, np.float32)
    labels, _ = ndimage.label(candidate, structure=np.ones((3, 3)))
    for box in ndimage.find_objects(labels):
        for r0 in range(box[0].start, box[0].stop, TILE_MAP_PX):
            for c0 in range(box[1].start, box[1].stop, TILE_MAP_PX):
                r1, c1 = min(box[0].stop, r0 + TILE_MAP_PX), min(box[1].stop, c0 + TILE_MAP_PX)
                piece = (slice(r0, r1), slice(c0, c1))
                ox, oy = c0 * map_ds - margin * work_ds, r0 * map_ds - margin * work_ds
                nx = math.ceil((c1 - c0) * map_ds / work_ds) + 2 * margin
                ny = math.ceil((r1 - r0) * map_ds / work_ds) + 2 * margin
                rgb = block_mean(reader.read_region(round(ox), round(oy), nx * k, ny * k, level), k)
                in_clump = _clumps(rgb, white, red_od, mpp, close, params)
                local = _to_map(in_clump, ox, oy, work_ds, map_ds, r0, r1, c0, c1)
                share[piece] = np.maximum(share[piece], local)
    return share


def _clumps(
    rgb: np.ndarray, white: np.ndarray, red_od: np.ndarray | None, mpp: float, close: int, params: QCParams
) -> np.ndarray:
    """Pixels (bool) of connected chromatin-coloured masses of at least `clump_min_um2`."""
    od_r, od_g, od_b = channel_od(rgb, white)
    mask = nuclear_from_od(od_r, od_g, od_b, params.clump_od, 0.5 / mpp, red_od, params.beyond_red_od)
    if close > 1:
        mask = ndimage.minimum_filter(ndimage.maximum_filter(mask, close), close)
    comp, _ = ndimage.label(mask)
    area_um2 = np.bincount(comp.ravel()) * mpp * mpp
    area_um2[0] = 0.0
    return (area_um2 >= params.clump_min_um2)[comp]


def _to_map(
    pixels: np.ndarray,
    ox: float,
    oy: float,
    work_ds: float,
    map_ds: float,
    r0: int,
    r1: int,
    c0: int,
    c1: int,
) -> np.ndarray:
    """Share of True working pixels per map pixel of rows r0:r1, cols c0:c1 (matched by level-0 centres)."""
    rows = ((oy + (np.arange(pixels.shape[0]) + 0.5) * work_ds) // map_ds).astype(np.int64) - r0
    cols = ((ox + (np.arange(pixels.shape[1]) + 0.5) * work_ds) // map_ds).astype(np.int64) - c0
    keep_r = (rows >= 0) & (rows < r1 - r0)
    keep_c = (cols >= 0) & (cols < c1 - c0)
    index = (rows[keep_r, None] * (c1 - c0) + cols[None, keep_c]).ravel()
    size = (r1 - r0) * (c1 - c0)
    hits = np.bincount(index, weights=pixels[np.ix_(keep_r, keep_c)].ravel(), minlength=size)
    seen = np.bincount(index, minlength=size)
    return (hits / np.maximum(seen, 1)).reshape(r1 - r0, c1 - c0).astype(np.float32)


__all__ = ["clump_share", "confirm_particles"]
