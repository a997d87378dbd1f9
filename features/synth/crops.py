"""`render_cells`: single-cell crops like a CellaVision export (the stable entry point other modules test with).

A crop is the cell centred on a faint plasma background with neighbouring red cells cut by the crop edges and
now and then a platelet, seen through one site's stain and scanner. Red cells are kept off the cell itself, as in
the monolayer where crops are taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from features.core.errors import InputError
from features.synth.cells import render_grouped, sample_params
from features.synth.celltypes import CELL_TYPES, PLASMA_RGB, od
from features.synth.fields import F32, grid
from features.synth.redcells import platelet_sprites, rbc_sprites
from features.synth.stain import REFERENCE, SiteStain, blur_od, site_stains, to_rgb

MAX_NEIGHBOURS = 14


@dataclass
class CellBatch:
    """Rendered crops. Masks are the drawn cell / nucleus (coverage > 0.5), before blur."""

    images: np.ndarray  # (n, S, S, 3) uint8 RGB
    cell_mask: np.ndarray  # (n, S, S) bool
    nucleus_mask: np.ndarray  # (n, S, S) bool
    types: tuple[str, ...]
    diameter_um: np.ndarray  # (n,)
    mpp: float


def render_cells(
    types: Sequence[str],
    rng: np.random.Generator,
    *,
    stain: SiteStain | None = None,
    site: int | None = None,
    mpp: float = 0.25,
    size_px: int = 96,
    background: bool = True,
) -> CellBatch:
    """Render one crop per entry of `types` (names from `CELL_TYPES`), the cell centred.

    The stain is `stain` (e.g. `site_stains(n, seed)[k]` of a cohort) or else `site` (1-based: site k of the
    stains of seed 0, as a default cohort has them); neither = site1, the reference stain. `background=False`
    leaves only the cell on the plasma background (no red cells, no platelets). Deterministic for a given rng
    state.
    """
    if stain is None and site is not None:
        if site < 1:
            raise InputError(f"site must be >= 1 (got {site})")
        stain = site_stains(site, seed=0)[site - 1]
    unknown = sorted({t for t in types if t not in CELL_TYPES})
    if unknown:
        raise InputError(f"unknown cell type(s) {', '.join(unknown)}; known: {', '.join(CELL_TYPES)}")
    n = len(types)
    if n == 0:
        empty = np.zeros((0, size_px, size_px), bool)
        return CellBatch(np.zeros((0, size_px, size_px, 3), np.uint8), empty, empty, (), np.zeros(0), mpp)
    params = sample_params(list(types), rng, mpp, jitter_um=0.4)
    total = plasma_od(rng, n, size_px, mpp)
    masks = np.zeros((n, size_px, size_px, 2), F32)
    centre = size_px // 2
    stain = stain or REFERENCE
    for idx, cells in render_grouped(params, rng, mpp, margin_px=3 * stain.blur_um / mpp):
        sprites = blur_od(cells.od, stain, mpp)
        for j, i in enumerate(idx):
            paste(total[i], sprites[j], centre, centre)
            paste(masks[i], np.stack([cells.cell[j], cells.nucleus[j]], axis=-1), centre, centre)
    if background:
        total += neighbours_od(rng, params.cell[:, 2:4].max(axis=1), size_px, mpp, stain)
    images = to_rgb(total, stain, rng)
    cell_mask, nucleus_mask = masks[..., 0] > 0.5, masks[..., 1] > 0.5
    return CellBatch(images, cell_mask, nucleus_mask, tuple(types), params.diameter_um, mpp)


def plasma_od(rng: np.random.Generator, n: int, size_px: int, mpp: float) -> np.ndarray:
    """The faint protein background of a smear: a level and a gentle gradient per crop (n, S, S, 3)."""
    X, Y = grid(size_px)
    level = rng.uniform(0.8, 1.05, (n, 1, 1)).astype(F32)
    gx, gy = (rng.normal(0, 0.1, (2, n, 1, 1)) / size_px).astype(F32)
    return (level + gx * X + gy * Y)[..., None] * od(PLASMA_RGB)


def neighbours_od(
    rng: np.random.Generator, cell_radius_px: np.ndarray, size_px: int, mpp: float, stain: SiteStain
) -> np.ndarray:
    """Red cells around each crop's centre cell (n, S, S, 3), a platelet in about a quarter of the crops.

    Candidates are drawn over the crop plus a margin (so red cells are cut by the edges), kept off the centre
    cell, and thinned so neighbours barely touch, as in a well-spread monolayer; each is pasted from a small
    bank of pre-drawn red cells.
    """
    n = len(cell_radius_px)
    bank, diam_um = rbc_sprites(rng, 48, mpp)
    bank = blur_od(bank, stain, mpp)
    pick = rng.integers(0, len(bank), (n, MAX_NEIGHBOURS))
    r_rbc = diam_um[pick] / 2 / mpp
    half = size_px / 2 + r_rbc
    x = rng.uniform(-1, 1, (n, MAX_NEIGHBOURS)) * half
    y = rng.uniform(-1, 1, (n, MAX_NEIGHBOURS)) * half
    keep = np.hypot(x, y) > cell_radius_px[:, None] + 0.35 * r_rbc
    keep &= rng.random((n, MAX_NEIGHBOURS)) < 0.85
    for j in range(1, MAX_NEIGHBOURS):  # a candidate too close to an earlier kept one is dropped
        gap = np.hypot(x[:, :j] - x[:, j : j + 1], y[:, :j] - y[:, j : j + 1])
        keep[:, j] &= ~np.any(keep[:, :j] & (gap < 0.85 * (r_rbc[:, :j] + r_rbc[:, j : j + 1])), axis=1)
    out = np.zeros((n, size_px, size_px, 3), F32)
    xi = np.rint(x + size_px / 2).astype(int)
    yi = np.rint(y + size_px / 2).astype(int)
    for i, j in zip(*np.nonzero(keep), strict=True):
        paste(out[i], bank[pick[i, j]], xi[i, j], yi[i, j])
    with_platelet = np.flatnonzero(rng.random(n) < 0.25)
    if with_platelet.size:
        plt_bank = blur_od(platelet_sprites(rng, 8, mpp)[0], stain, mpp)
        ang = rng.uniform(0, 2 * np.pi, with_platelet.size)
        rad = cell_radius_px[with_platelet] + rng.uniform(1.5, 4.0, with_platelet.size) / mpp
        px = np.rint(rad * np.cos(ang) + size_px / 2).astype(int)
        py = np.rint(rad * np.sin(ang) + size_px / 2).astype(int)
        for k, i in enumerate(with_platelet):
            paste(out[i], plt_bank[k % len(plt_bank)], px[k], py[k])
    return out


def paste(canvas: np.ndarray, sprite: np.ndarray, x: int, y: int) -> None:
    """Add `sprite` centred at integer pixel (x, y) of `canvas` (H, W, C), clipped at the borders."""
    h, w = sprite.shape[:2]
    x0, y0 = x - w // 2, y - h // 2
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, canvas.shape[1]), min(y0 + h, canvas.shape[0])
    if cx0 < cx1 and cy0 < cy1:
        canvas[cy0:cy1, cx0:cx1] += sprite[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
