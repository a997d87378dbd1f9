"""Where things lie on a smear: particle, monolayer trail, hemodiluted area and glass, and the objects in each.

The field of view is laid out as a piece of a wedge smear seen left to right: one or two marrow particles (thick,
crowded, overlapping cells with fat spaces and a dense purple background), the trail behind each particle and the
thin end before the feathered edge (the monolayer: nucleated cells spread apart among barely touching red cells,
where a morphologist reads), hemodiluted areas in between (mostly red cells, a few blood leucocytes), and glass
beyond the wavy feathered edge; the whole picture is turned or mirrored at random. Geometry is relative to the
field so small test slides hold every region; densities are per µm², so cell counts scale with the area and with
the patient's cellularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

REGIONS = ("glass", "hemodiluted", "monolayer", "particle")
GLASS, HEMODILUTED, MONOLAYER, PARTICLE = range(4)
STEP_UM = 2.0  # coarse map resolution
# objects per µm² in each region (glass, hemodiluted, monolayer, particle); nucleated scale with cellularity
RBC_PER_UM2 = np.array([0.0, 0.024, 0.022, 0.018])
NUCLEATED_PER_UM2 = np.array([0.0, 0.00005, 0.0006, 0.0048])
PLATELET_PER_UM2 = np.array([0.0, 0.0012, 0.0008, 0.002])
THICKNESS = np.array([0.04, 0.9, 0.75, 2.4])  # background protein film, relative


@dataclass
class SmearLayout:
    step_px: float  # slide px per coarse cell
    regions: np.ndarray  # (Hc, Wc) uint8 region codes
    fat: np.ndarray  # (Hc, Wc) bool fat spaces inside particles (no cells)
    thickness: np.ndarray  # (Hc, Wc) float32 background film, smoothed

    def region_at(self, x_px: np.ndarray, y_px: np.ndarray) -> np.ndarray:
        i = np.clip((y_px / self.step_px).astype(int), 0, self.regions.shape[0] - 1)
        j = np.clip((x_px / self.step_px).astype(int), 0, self.regions.shape[1] - 1)
        return self.regions[i, j]


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return f / max(float(f.std()), 1e-9)


def smear_layout(
    rng: np.random.Generator,
    size_px: int,
    mpp: float,
    particles: int | None = None,
    particle_scale: float = 1.0,
) -> SmearLayout:
    """The regions of one smear. `particles` (default: 1 or 2, drawn) marrow particles of radius 7-11 % of
    the field times `particle_scale`, each with its trail; more than two lie evenly across the smear."""
    step_px = STEP_UM / mpp
    n = int(np.ceil(size_px / step_px))
    v, u = (np.mgrid[0:n, 0:n] + 0.5) / n
    edge = 0.84 + 0.04 * _noise(rng, (n,), 0.06 * n)[:, None]
    regions = np.full((n, n), HEMODILUTED, np.uint8)
    regions[u > edge - 0.22] = MONOLAYER
    particle = np.zeros((n, n), bool)
    n_particles = int(rng.integers(1, 3)) if particles is None else particles
    if n_particles <= 2:
        centres_v = rng.permutation([0.3, 0.7])[:n_particles] + rng.uniform(-0.08, 0.08, n_particles)
    else:
        jitter = 0.3 / n_particles
        centres_v = (rng.permutation(n_particles) + 0.5) / n_particles + rng.uniform(
            -jitter, jitter, n_particles
        )
    wobble = _noise(rng, (n, n), 0.04 * n)
    for vp in centres_v:
        up, rp = rng.uniform(0.12, 0.28), rng.uniform(0.07 * particle_scale, 0.11 * particle_scale)
        trail = (u > up) & (np.abs(v - vp) < rp * 0.9 + 0.3 * (u - up) + 0.03 * wobble)
        regions[trail] = MONOLAYER
        particle |= np.hypot((u - up) / rp, (v - vp) / (rp * rng.uniform(0.8, 1.25))) + 0.25 * wobble < 1
    regions[particle] = PARTICLE
    if rng.random() < 0.5:  # the smear's side margin
        regions[v < 0.035 + 0.015 * _noise(rng, (n,), 0.06 * n)[None, :]] = GLASS
    regions[u > edge] = GLASS
    turn, flip = int(rng.integers(4)), bool(rng.random() < 0.5)  # the smear runs in any of 8 directions
    regions, particle, wobble = (
        np.rot90(a[:, ::-1] if flip else a, turn) for a in (regions, particle, wobble)
    )
    fat = particle & (_noise(rng, (n, n), 6.0 / STEP_UM) > 1.6)
    thickness = THICKNESS[regions] * np.where(fat, 0.25, 1.0) * (1 + 0.15 * wobble)
    thickness = ndimage.gaussian_filter(thickness, 4.0 / STEP_UM).astype(np.float32)
    return SmearLayout(step_px, regions, fat, thickness)


def scatter(
    rng: np.random.Generator, layout: SmearLayout, per_um2: np.ndarray, mpp: float, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson positions (n, 2) level-0 px of objects with region densities `per_um2`, and their regions."""
    density = per_um2[layout.regions] * np.where(layout.fat, 0.0, 1.0) * scale
    density = density * (layout.step_px * mpp) ** 2  # expected objects per coarse cell
    total = float(density.sum())
    count = int(rng.poisson(total)) if total > 0 else 0
    if count == 0:
        return np.zeros((0, 2)), np.zeros(0, np.uint8)
    flat = np.cumsum(density.ravel())
    cell = np.minimum(np.searchsorted(flat, rng.random(count) * flat[-1], side="right"), flat.size - 1)
    rows, cols = np.divmod(cell, layout.regions.shape[1])
    xy = (np.stack([cols, rows], axis=1) + rng.random((count, 2))) * layout.step_px
    return xy, layout.regions[rows, cols]


def thin(xy: np.ndarray, radius_px: np.ndarray, gap_px: float, movable: np.ndarray) -> np.ndarray:
    """Keep-mask: drop `movable` objects that touch an earlier kept one (monolayer cells do not touch)."""
    keep = np.ones(len(xy), bool)
    if len(xy) < 2:
        return keep
    reach = 2 * float(radius_px.max()) + gap_px
    pairs = cKDTree(xy).query_pairs(reach, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    clash = (movable[i] | movable[j]) & (np.hypot(*(xy[i] - xy[j]).T) < radius_px[i] + radius_px[j] + gap_px)
    pairs = pairs[clash]
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]  # a fixed greedy order
    for a, b in pairs.tolist():
        if keep[a] and keep[b]:
            keep[b if movable[b] else a] = False
    return keep


def clear_around(xy: np.ndarray, centres: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
    """Keep-mask of objects at `xy` outside every disc (centres, radius): red cells pushed off spread cells."""
    keep = np.ones(len(xy), bool)
    if len(xy) == 0 or len(centres) == 0:
        return keep
    hits = cKDTree(xy).query_ball_point(centres, radius_px)
    drop = [i for h in hits for i in h]
    keep[drop] = False
    return keep
