"""Region QC for smears: where on the slide are the cells worth reading, and is it in focus?

A marrow aspirate smear is not tissue: the same slide holds particles (thick, crowded clumps of marrow cells,
several layers deep), the good trail behind them (a monolayer where nucleated cells lie apart and can be
classified), hemodiluted areas (peripheral blood: a carpet of red cells with few nucleated cells) and glass.
Only the trail is read by default (see `features.smear.detect`). The map is made at `map_mpp` (~4 µm/px, one
coarse pyramid level) from colour statistics, averaged over `window_um` (density: `density_window_um`):

- coverage: share of stained (not glass) pixels, from the summed optical density of R, G and B;
- mean OD: thickness (a particle is several cell layers deep);
- nuclear share and density: share of dark-purple pixels (red AND green absorbed, not red-cell colour:
  chromatin, see `features.smear.stain_od.nuclear_from_od`), a proxy for the density of nucleated cells;
- open share: share of the background between nucleated cells (pixels farther than `cell_clear_um` from
  chromatin) that is not red cell (stained, non-nuclear, absorbing green more than red: eosin-pink), i.e.
  the glass showing between red cells, averaged over `density_window_um`.

Rules, in order: coverage < `outside_max_coverage` -> outside; mean OD >= `particle_od_rel` x the slide's
median, or nuclear share >= `particle_min_nuclear` -> particle candidate, kept as particle only where a clump
of overlapping cells lies within `particle_reach_um` (read at ~1 µm/px: `features.smear.particles`), because
a packed blast monolayer and a single large blast on a thin trail pass the coarse rules too; an open share
below `hemo_open_rel` x the slide's reference (its median where the nucleated cells are densest, the top
quarter of the density outside particles) -> hemodiluted: red cells crowd and overlap there, as in
peripheral blood, where the hematologist does not count; anything else stained -> trail. The open share is
read between the nucleated cells, not over them: a leucocyte and the red cells pushed aside around it open
its own neighbourhood, so a share taken over every pixel calls the ground around each hemodiluted leucocyte
trail and lets exactly the cells of the hemodiluted area into the count. The density of nucleated cells is
no rule of its own: an aplastic marrow's monolayer is as sparse as blood. Thickness, density and open share
are relative to the slide because stain strength and cellularity (an aplastic marrow, a packed leukaemia)
move absolute levels several-fold. Measured on the synthetic generator (benchmarks/detection.py, and
`benchmarks/cells.py --part detect` for packed, blast-rich and large-cell smears): see benchmarks/RESULTS.md.
The overview PNG is drawn by `features.smear.qc_thumbnail`.

Focus: one small patch per `focus_tile_um` tile (at its most covered spot, so glass does not read as blur)
is read at `focus_mpp`; the variance of the Laplacian (of a 1-px Gaussian) of its green channel on the 8-bit
scale is the focus score (`features.smear.imageops.focus_scores`, also used on cell-image folders). Blur removes the high frequencies the Laplacian measures; a score below
`focus_min` flags the tile. Calibration at 0.5 µm/px: sharp synthetic and Aperio patches score 80-400+,
the same patches blurred by a 1 µm Gaussian 10-30, by 2 µm under 4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from features.core.errors import ConfigError
from features.smear.imageops import block_mean, focus_scores
from features.smear.particles import confirm_particles
from features.smear.stain_od import channel_od, nuclear_from_od, red_cell_colour

if TYPE_CHECKING:  # only the code that opens slides imports OpenSlide (see features.smear.imageops)
    from features.sources.openslide_reader import SlideReader

REGIONS = ("outside", "particle", "trail", "hemodiluted")  # codes 0..3, in this order
REGION_COLOURS = {
    "outside": (160, 160, 160),
    "particle": (140, 40, 200),
    "trail": (20, 170, 60),
    "hemodiluted": (230, 40, 40),
}


def region_codes(names: Sequence[str]) -> np.ndarray:
    unknown = [n for n in names if n not in REGIONS]
    if unknown or not names:
        raise ConfigError(f"unknown region(s) {unknown or list(names)}; choose from {', '.join(REGIONS)}")
    return np.array([REGIONS.index(n) for n in names], np.uint8)


class QCParams(BaseModel):
    """Region map and focus. Defaults suit MGG/Wright-stained marrow smears; every threshold is a share of
    area or an optical density, so it does not depend on the scanner's resolution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    map_mpp: float = Field(4.0, gt=0, description="resolution of the region map in µm/px (4-8 suits smears)")
    window_um: float = Field(
        64.0, gt=0, description="neighbourhood over which coverage, red and OD are averaged"
    )
    density_window_um: float = Field(
        100.0,
        gt=0,
        description="neighbourhood over which the nucleated-cell (nuclear pixel) density and the open share "
        "between them are averaged",
    )
    stain_od: float = Field(
        0.1, gt=0, description="summed RGB optical density above which a pixel is stained"
    )
    nuclear_od: float = Field(0.15, gt=0, description="red and green OD above which a map pixel is nuclear")
    beyond_red_od: float = Field(
        0.03, ge=0, description="red-cell veto for nuclear pixels, as in DetectParams"
    )
    outside_max_coverage: float = Field(0.08, ge=0, le=1, description="below this stained share: outside")
    particle_od_rel: float = Field(
        2.0,
        gt=0,
        description="particle where the mean OD reaches this multiple of the slide's median (thick)",
    )
    particle_min_nuclear: float = Field(
        0.2, ge=0, le=1, description="particle candidate where the nuclear share reaches this"
    )
    clump_mpp: float = Field(
        1.0, gt=0, description="resolution at which particle candidates are checked for overlapping cells"
    )
    clump_od: float = Field(
        0.12,
        gt=0,
        description="red and green OD above which a pixel is chromatin or particle ground (clump check)",
    )
    clump_min_um2: float = Field(
        1500.0,
        gt=0,
        description="a connected chromatin-coloured mass this large is overlapping cells (no single cell is)",
    )
    particle_reach_um: float = Field(
        30.0, ge=0, description="a particle candidate stays particle within this distance of a clump"
    )
    cell_clear_um: float = Field(
        6.0,
        ge=0,
        description="the open share is read beyond this distance from chromatin (a cell and the red cells "
        "pushed aside around it are not the background)",
    )
    hemo_open_rel: float = Field(
        0.7,
        ge=0,
        le=1,
        description="hemodiluted where the open share between nucleated cells falls below this share of the "
        "slide's reference (where nucleated cells are densest): red cells crowd as in blood",
    )
    focus_tile_um: float = Field(
        512.0, gt=0, description="one focus measurement per tile of this side (one small read each)"
    )
    focus_patch_um: float = Field(48.0, gt=0, description="side of the patch measured in each tile")
    focus_mpp: float = Field(
        0.5, gt=0, description="resolution of the focus patch (the slide's own if coarser)"
    )
    focus_min: float = Field(
        15.0,
        ge=0,
        description="variance of the Laplacian of Gaussian (green, 8-bit) below which a tile is blurred",
    )


@dataclass
class RegionMap:
    """Per-slide QC maps. `labels[i, j]` covers level-0 x in [j*downsample, (j+1)*downsample), same for y.
    The focus grid covers level-0 tiles of `focus_downsample` px; unmeasured tiles (outside) have NaN focus
    and count as in focus (no evidence of blur), but they hold no cells to read anyway."""

    labels: np.ndarray  # h x w uint8 codes into REGIONS
    downsample: float  # level-0 px per map px
    focus: np.ndarray  # gh x gw float32, variance of Laplacian, NaN = not measured
    focus_downsample: float  # level-0 px per focus cell
    in_focus: np.ndarray  # gh x gw bool
    coverage: np.ndarray | None = None  # h x w float32 stained share (for thumbnails and debugging)
    red_od: np.ndarray | None = None  # (3,) the slide's red-cell OD colour (green = 1); None = not estimated

    def _index(self, xy: np.ndarray, ds: float, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        xy = np.asarray(xy, float).reshape(-1, 2)
        col = np.clip((xy[:, 0] // ds).astype(np.int64), 0, shape[1] - 1)
        row = np.clip((xy[:, 1] // ds).astype(np.int64), 0, shape[0] - 1)
        return row, col

    def region_at(self, xy: np.ndarray) -> np.ndarray:
        """N x 2 level-0 (x, y) -> N region codes."""
        return self.labels[self._index(xy, self.downsample, self.labels.shape)]

    def in_focus_at(self, xy: np.ndarray) -> np.ndarray:
        return self.in_focus[self._index(xy, self.focus_downsample, self.in_focus.shape)]


def colour_shares(
    img: np.ndarray, params: QCParams, window_px: int, density_px: int, px_um: float
) -> dict[str, np.ndarray]:
    """Coverage and nuclear shares and mean OD averaged over `window_px`, nuclear density and the
    open share between nucleated cells over `density_px`, and the slide's red-cell colour, from an RGB map
    image of `px_um` µm per pixel.

    Optical density is taken against the slide's own glass (99th percentile per channel), so a scanner whose
    white is 235 reads glass as OD 0."""
    flat = img.reshape(-1, 3)
    sample = flat[:: max(1, len(flat) // 200_000)]
    white = np.clip(np.percentile(sample, 99, axis=0), 180, 255)
    od_r, od_g, od_b = channel_od(img, white)
    od_sum = od_r + od_g + od_b
    stained = od_sum > params.stain_od
    red_od = red_cell_colour(od_r, od_g, od_b, stained)
    nuclear = nuclear_from_od(od_r, od_g, od_b, params.nuclear_od, 0.0, red_od, params.beyond_red_od)
    red = stained & ~nuclear & (od_g > od_r + 0.05)

    def smooth(a: np.ndarray, size: int) -> np.ndarray:
        return ndimage.uniform_filter(a.astype(np.float32), size, mode="constant", cval=0.0)

    reach = params.cell_clear_um / px_um
    r = math.ceil(reach)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    background = ~ndimage.binary_dilation(nuclear, structure=np.hypot(xx, yy) <= reach) if r else ~nuclear
    background_share = smooth(background, density_px)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Where nucleated cells leave under a fifth of background there is nothing to judge: NaN.
        open_share = np.where(
            background_share > 0.2, 1 - smooth(red & background, density_px) / background_share, np.nan
        )
    return {
        "coverage": smooth(stained, window_px),
        "nuclear": smooth(nuclear, window_px),
        "density": smooth(nuclear, density_px),
        "open": open_share.astype(np.float32),
        "od": smooth(od_sum, window_px),
        "red_od": red_od,
        "white": white,
    }


def particle_candidates(shares: dict[str, np.ndarray], params: QCParams) -> np.ndarray:
    """Map pixels thick (mean OD >= `particle_od_rel` x the slide's median) or chromatin-rich enough to be a
    particle; `features.smear.particles.confirm_particles` keeps those that hold overlapping cells."""
    cov, nuc, od = shares["coverage"], shares["nuclear"], shares["od"]
    covered = cov >= params.outside_max_coverage
    if not covered.any():
        return covered
    thick = od >= params.particle_od_rel * np.median(od[covered])
    return covered & (thick | (nuc >= params.particle_min_nuclear))


def classify(
    shares: dict[str, np.ndarray], params: QCParams, particle: np.ndarray | None = None
) -> np.ndarray:
    """Region codes from the shares and the confirmed particle mask (default: every particle candidate).
    Hemodiluted is judged against the slide's own reference, the open share where its nucleated cells are
    densest (top quarter of the density outside particles): a smear is read, as a cytologist reads it, where
    its own cells are spread, and stain, red-cell count and cellularity shift absolute levels between
    slides. Where the open share is unknown (nucleated cells cover the ground) it is trail."""
    cov, open_share, density = (shares[k] for k in ("coverage", "open", "density"))
    labels = np.full(cov.shape, REGIONS.index("outside"), np.uint8)
    covered = cov >= params.outside_max_coverage
    if not covered.any():
        return labels
    if particle is None:
        particle = particle_candidates(shares, params)
    particle = particle & covered
    rest = covered & ~particle
    labels[particle] = REGIONS.index("particle")
    labels[rest] = REGIONS.index("trail")
    densest = rest & (density >= np.percentile(density[rest], 75)) if rest.any() else rest
    known = densest & ~np.isnan(open_share)
    if known.any():
        reference = np.median(open_share[known])
        with np.errstate(invalid="ignore"):
            hemo = rest & (open_share < params.hemo_open_rel * reference)
        labels[hemo] = REGIONS.index("hemodiluted")
    return labels


def assess_regions(reader: SlideReader, params: QCParams) -> RegionMap:
    img, ds = reader.read_downsampled(params.map_mpp)
    window_px = max(1, round(params.window_um / (ds * reader.mpp)))
    density_px = max(1, round(params.density_window_um / (ds * reader.mpp)))
    shares = colour_shares(img, params, window_px, density_px, ds * reader.mpp)
    del img
    candidate = particle_candidates(shares, params)
    particle = confirm_particles(reader, candidate, ds, shares["white"], shares["red_od"], params)
    labels = classify(shares, params, particle)
    focus, focus_ds = measure_focus(reader, labels, shares["coverage"], ds, params)
    in_focus = ~(focus < params.focus_min)  # NaN (unmeasured) compares False -> in focus
    return RegionMap(labels, ds, focus, focus_ds, in_focus, shares["coverage"], shares["red_od"])


def measure_focus(
    reader: SlideReader, labels: np.ndarray, coverage: np.ndarray, map_ds: float, params: QCParams
) -> tuple[np.ndarray, float]:
    """`features.smear.imageops.focus_scores` per focus tile (NaN where the tile is all outside). One small read
    per tile."""
    t = max(1, round(params.focus_tile_um / (map_ds * reader.mpp)))  # focus tile in map px
    h, w = labels.shape
    gh, gw = math.ceil(h / t), math.ceil(w / t)
    pad = ((0, gh * t - h), (0, gw * t - w))
    cov = np.pad(np.where(labels > 0, coverage, -1.0), pad, constant_values=-1.0)
    blocks = cov.reshape(gh, t, gw, t).transpose(0, 2, 1, 3).reshape(gh, gw, t * t)
    best = blocks.argmax(axis=2)
    measured = blocks.max(axis=2) >= 0
    focus = np.full((gh, gw), np.nan, np.float32)
    want = max(params.focus_mpp / reader.mpp, 1.0)
    level = reader.best_level(want)
    level_ds = reader.level_downsamples[level]
    k = max(1, int(math.floor(want / level_ds + 1e-6)))
    side = max(8, round(params.focus_patch_um / (reader.mpp * level_ds * k))) * k  # level px
    for gy, gx in zip(*np.nonzero(measured), strict=True):
        my, mx = gy * t + best[gy, gx] // t, gx * t + best[gy, gx] % t
        cx, cy = (mx + 0.5) * map_ds, (my + 0.5) * map_ds  # level-0 centre of the densest map pixel
        half0 = side * level_ds / 2
        patch = reader.read_region(round(cx - half0), round(cy - half0), side, side, level)
        focus[gy, gx] = focus_scores(block_mean(patch, k)[None])[0]
    return focus, t * map_ds


def qc_summary(region_map: RegionMap, mpp: float, cells_xy: np.ndarray) -> dict:
    """JSON-ready QC figures for one slide.

    `cellularity_per_mm2` is the number of detected nucleated cells per mm² of good trail: the density the
    cytologist judges when calling an aspirate cellular or hypocellular (it is only comparable between slides
    detected with the same `DetectParams`). `share_in_focus` counts measured (non-outside) focus tiles only.
    """
    px_mm2 = (region_map.downsample * mpp / 1000.0) ** 2
    counts = np.bincount(region_map.labels.ravel(), minlength=len(REGIONS))
    area = {name: float(counts[i] * px_mm2) for i, name in enumerate(REGIONS)}
    cells_xy = np.asarray(cells_xy).reshape(-1, 2)
    per_region = (
        np.bincount(region_map.region_at(cells_xy), minlength=len(REGIONS)) if len(cells_xy) else counts * 0
    )
    measured = ~np.isnan(region_map.focus)
    trail = area["trail"]
    return {
        "map_mpp": float(region_map.downsample * mpp),
        "area_mm2": area,
        "nucleated_cells": int(len(cells_xy)),
        "nucleated_cells_per_region": {name: int(per_region[i]) for i, name in enumerate(REGIONS)},
        "cellularity_per_mm2": float(per_region[REGIONS.index("trail")] / trail) if trail > 0 else None,
        "focus_tiles_measured": int(measured.sum()),
        "share_in_focus": float(region_map.in_focus[measured].mean()) if measured.any() else None,
        "cells_in_focus_share": float(region_map.in_focus_at(cells_xy).mean()) if len(cells_xy) else None,
    }
