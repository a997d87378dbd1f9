"""Nucleated cells as optical-density sprites: per-cell parameters drawn in Python, pixels computed per batch.

`sample_params` walks the cells once (a few hundred per batch) to draw sizes, nuclear shapes, nucleoli,
granule counts, Auer rods, vacuoles and the hof; `render_od` turns a whole batch into (n, S, S, 3) optical
densities with array passes (soft ellipses, filtered noise for chromatin, bincount splats for granules).
Optical density rather than RGB lets the slide renderer add overlapping cells and red cells physically and lets
each site's stain act afterwards (features.synth.stain).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np

from features.synth import nuclei
from features.synth.celltypes import (
    AUER_RGB,
    CELL_TYPES,
    CHROMATIN_RGB,
    GRANULE_KINDS,
    GRANULE_ORDER,
    NUCLEOLUS_RGB,
    od,
)
from features.synth.fields import (
    F32,
    ellipse_coverage,
    grid,
    sample_in_disc,
    smooth_noise,
    splat_lines,
    splat_points,
)

MAX_NUCLEOLI, MAX_RODS, MAX_VACUOLES, HARMONICS = 4, 24, 6, 3
EDGE_PX = 0.7


@dataclass
class CellParams:
    """Per-cell drawing parameters of one batch, in pixels relative to the sprite centre."""

    types: list[str]
    diameter_um: np.ndarray  # (n,)
    cell: np.ndarray  # (n, 5) x, y, a, b, angle of the membrane
    cell_wobble: np.ndarray  # (n, H, 2) outline harmonics (amplitude, phase)
    prims: np.ndarray  # (n, MAX_PRIMS, 6) nuclear ellipses, sign 0 = unused
    nuc_wobble: np.ndarray  # (n, H, 2) harmonics of the first nuclear ellipse
    nucleus_od: np.ndarray  # (n, 3) chromatin OD at mean density
    chromatin: np.ndarray  # (n,) 0 fine .. 1 clumped
    nucleoli: np.ndarray  # (n, MAX_NUCLEOLI, 3) x, y, r; r = 0 unused
    cytoplasm_od: np.ndarray  # (n, 3)
    granules: np.ndarray  # (n, K) granule counts per kind (GRANULE_ORDER)
    over_nucleus: np.ndarray  # (n, K) share of that kind's granules seen over the nucleus
    rods: np.ndarray  # (n, MAX_RODS, 4) x, y, half-length, angle
    n_rods: np.ndarray  # (n,)
    vacuoles: np.ndarray  # (n, MAX_VACUOLES, 3) x, y, r; r = 0 unused
    hof: np.ndarray  # (n, 4) x, y, r, strength

    @classmethod
    def empty(cls, types: list[str]) -> CellParams:
        """Zeroed parameters for `types` (unused primitives, nucleoli, rods, vacuoles stay 0)."""
        n, k = len(types), len(GRANULE_ORDER)
        return cls(
            types=list(types),
            diameter_um=np.zeros(n),
            cell=np.zeros((n, 5), F32),
            cell_wobble=np.zeros((n, HARMONICS, 2), F32),
            prims=np.zeros((n, nuclei.MAX_PRIMS, 6), F32),
            nuc_wobble=np.zeros((n, HARMONICS, 2), F32),
            nucleus_od=np.zeros((n, 3), F32),
            chromatin=np.zeros(n, F32),
            nucleoli=np.zeros((n, MAX_NUCLEOLI, 3), F32),
            cytoplasm_od=np.zeros((n, 3), F32),
            granules=np.zeros((n, k), np.int64),
            over_nucleus=np.zeros((n, k), F32),
            rods=np.zeros((n, MAX_RODS, 4), F32),
            n_rods=np.zeros(n, np.int64),
            vacuoles=np.zeros((n, MAX_VACUOLES, 3), F32),
            hof=np.zeros((n, 4), F32),
        )

    def take(self, idx: np.ndarray) -> CellParams:
        """The cells at `idx` (to render a slide's cells in batches grouped by sprite size)."""
        return CellParams(
            **{
                f.name: [self.types[i] for i in idx] if f.name == "types" else getattr(self, f.name)[idx]
                for f in fields(self)
            }
        )

    def sprite_px(self, margin_px: float = 0.0) -> np.ndarray:
        """Smallest sprite side (multiple of 8) holding each cell with its outline wobble and `margin_px`."""
        reach = np.hypot(self.cell[:, 0], self.cell[:, 1]) + self.cell[:, 2:4].max(axis=1) * 1.12
        return (np.ceil((2 * (reach + margin_px) + 2) / 8) * 8).astype(int)


def _wobble(rng: np.random.Generator, amp: float) -> np.ndarray:
    return np.stack([rng.normal(0, amp, HARMONICS), rng.uniform(0, 2 * np.pi, HARMONICS)], axis=1)


def sample_params(
    types: list[str],
    rng: np.random.Generator,
    mpp: float,
    size_scale: np.ndarray | float = 1.0,
    od_scale: np.ndarray | float = 1.0,
    jitter_um: float = 0.0,
) -> CellParams:
    """Draw every cell's geometry and colours. `size_scale`/`od_scale` shrink and darken cells in thick areas."""
    n = len(types)
    px = 1.0 / mpp
    size_scale = np.broadcast_to(np.asarray(size_scale, dtype=float), (n,))
    od_scale = np.broadcast_to(np.asarray(od_scale, dtype=float), (n,))
    p = CellParams.empty(types)
    chromatin_od = od(CHROMATIN_RGB)
    for i, name in enumerate(types):
        t = CELL_TYPES[name]
        d_um = rng.uniform(*t.diameter_um) * size_scale[i]
        p.diameter_um[i] = d_um
        R = 0.5 * d_um * px
        aspect = rng.uniform(*t.aspect)
        jx, jy = rng.normal(0, jitter_um * px, 2) if jitter_um else (0.0, 0.0)
        p.cell[i] = (jx, jy, R / np.sqrt(aspect), R * np.sqrt(aspect), rng.uniform(0, np.pi))
        p.cell_wobble[i] = _wobble(rng, 0.025)
        shape = nuclei.SHAPES[t.nucleus](rng, R, R * rng.uniform(*t.nc_ratio), t.eccentric)
        for m, prim in enumerate(shape.prims):
            p.prims[i, m] = prim
            p.prims[i, m, :2] += (jx, jy)
        p.nuc_wobble[i] = _wobble(rng, t.irregular)
        cx, cy = shape.centre[0] + jx, shape.centre[1] + jy
        p.nucleus_od[i] = chromatin_od * t.nucleus_density * rng.uniform(0.9, 1.1) * od_scale[i]
        p.chromatin[i] = np.clip(t.chromatin + rng.normal(0, 0.05), 0, 1)
        n_nl = rng.integers(t.nucleoli[0], t.nucleoli[1] + 1)
        for j in range(n_nl):
            x, y = sample_in_disc(rng, np.array([cx]), np.array([cy]), np.array([0.45 * shape.radius]))
            p.nucleoli[i, j] = (x[0], y[0], rng.uniform(0.45, 0.8) * px)
        p.cytoplasm_od[i] = od(t.cytoplasm_rgb) * rng.uniform(0.85, 1.15) * od_scale[i]
        area_um2 = np.pi * (d_um / 2) ** 2
        for kind, per_um2, over in t.granules:
            g = GRANULE_ORDER.index(kind)
            p.granules[i, g] = rng.poisson(per_um2 * area_um2 * rng.uniform(0.7, 1.3))
            p.over_nucleus[i, g] = over
        prob, lo, hi = t.auer_rods
        if prob and rng.random() < prob:
            p.n_rods[i] = _rods(rng, p.rods[i], int(rng.integers(lo, hi + 1)), R, px, t.faggot, jx, jy)
        n_vac = min(rng.poisson(t.vacuoles), MAX_VACUOLES) if t.vacuoles else 0
        for j in range(n_vac):
            x, y = sample_in_disc(rng, np.array([jx]), np.array([jy]), np.array([0.75 * R]))
            p.vacuoles[i, j] = (x[0], y[0], rng.uniform(0.35, 0.9) * px)
        if t.hof:
            p.hof[i] = _hof(rng, shape, cx, cy, t.hof)
    return p


def _hof(rng: np.random.Generator, shape, cx: float, cy: float, strength: float) -> tuple[float, ...]:
    """The perinuclear pale zone (hof): a disc on the nucleus's side facing the cell centre (a random
    side when the nucleus is central)."""
    ox, oy = shape.centre[0], shape.centre[1]
    norm = np.hypot(ox, oy)
    if norm > 0.5:
        dx, dy = -ox / norm, -oy / norm
    else:
        dx, dy = nuclei._dir(rng.uniform(0, 2 * np.pi))
    r_h = 0.55 * shape.radius
    return (cx + dx * shape.radius, cy + dy * shape.radius, r_h, strength * rng.uniform(0.8, 1.2))


def _rods(rng, out: np.ndarray, count: int, R: float, px: float, faggot: bool, jx: float, jy: float) -> int:
    """Auer rods: single needles anywhere in the cell, or a faggot cell's bundle of near-parallel rods."""
    count = min(count, MAX_RODS)
    if faggot:
        bx, by = sample_in_disc(rng, np.array([jx]), np.array([jy]), np.array([0.4 * R]))
        th0 = rng.uniform(0, np.pi)
        for j in range(count):
            th = th0 + (np.pi / 2 if rng.random() < 0.25 else 0.0) + rng.normal(0, 0.15)
            along, across = rng.normal(0, 1.0 * px), rng.normal(0, 1.5 * px)
            x = bx[0] + along * np.cos(th0) - across * np.sin(th0)
            y = by[0] + along * np.sin(th0) + across * np.cos(th0)
            out[j] = (x, y, rng.uniform(2.0, 4.0) * px, th)
        return count
    for j in range(count):
        x, y = sample_in_disc(rng, np.array([jx]), np.array([jy]), np.array([0.65 * R]))
        out[j] = (x[0], y[0], rng.uniform(1.5, 3.5) * px, rng.uniform(0, np.pi))
    return count


@dataclass
class CellOD:
    od: np.ndarray  # (n, S, S, 3) float32 optical density
    cell: np.ndarray  # (n, S, S) membrane coverage in [0, 1]
    nucleus: np.ndarray  # (n, S, S) nuclear coverage in [0, 1]


def _union(X, Y, slots: np.ndarray, active: np.ndarray, n: int, edge: float) -> np.ndarray:
    """Union (max) of soft ellipses over slots; each slot is evaluated only for the cells that use it."""
    out = np.zeros((n, Y.shape[1], X.shape[2]), F32)
    for j in range(slots.shape[1]):
        idx = np.flatnonzero(active[:, j])
        if idx.size:
            out[idx] = np.maximum(out[idx], ellipse_coverage(X, Y, slots[idx, j], edge))
    return out


def render_od(p: CellParams, size_px: int, rng: np.random.Generator, mpp: float) -> CellOD:
    """Optical densities of a batch of cells centred in (S, S) sprites."""
    n, S = len(p.types), size_px
    X, Y = grid(S)
    cell = ellipse_coverage(X, Y, p.cell, EDGE_PX, wobble=p.cell_wobble)
    add, sub = np.zeros((n, S, S), F32), np.zeros((n, S, S), F32)
    for m in range(p.prims.shape[1]):
        sign = p.prims[:, m, 5]
        idx = np.flatnonzero(sign != 0)
        if not idx.size:
            continue
        cov = ellipse_coverage(
            X, Y, p.prims[idx, m, :5], EDGE_PX, wobble=p.nuc_wobble[idx] if m == 0 else None
        )
        pos = sign[idx] > 0
        add[idx[pos]] = np.maximum(add[idx[pos]], cov[pos])
        sub[idx[~pos]] = np.maximum(sub[idx[~pos]], cov[~pos])
    nucleus = add * (1 - sub) * cell

    fine = smooth_noise(rng, (n, S, S), 0.2 / mpp)
    clump = smooth_noise(rng, (n, S, S), 0.5 / mpp)
    # Chromatin: open blast chromatin is a fine, low-contrast stipple (small-scale noise); mature chromatin is
    # coarse dark clumps with pale parachromatin between them (larger-scale noise through a steep sigmoid).
    # Both average about 1, so `nucleus_od` sets how dark a nucleus looks overall.
    c = p.chromatin[:, None, None]
    clumps = 1 / (1 + np.exp(-2.8 * (clump - 0.25)))
    texture = (1 - c) * (1 + 0.2 * fine) + c * (0.3 + 1.45 * clumps)
    out = (nucleus * texture)[..., None] * p.nucleus_od[:, None, None, :]
    has = np.flatnonzero(p.nucleoli[:, 0, 2] > 0)
    if has.size:  # pale nucleoli replace chromatin and add a faint blue
        nucleoli = _union(X, Y, _as_ellipses(p.nucleoli[has]), p.nucleoli[has, :, 2] > 0, has.size, EDGE_PX)
        nucleoli *= nucleus[has]
        out[has] -= (0.7 * nucleoli * texture[has])[..., None] * p.nucleus_od[has, None, None, :]
        out[has] += nucleoli[..., None] * (0.5 * od(NUCLEOLUS_RGB))

    vac = _union(X, Y, _as_ellipses(p.vacuoles), p.vacuoles[:, :, 2] > 0, n, EDGE_PX)
    hof = _union(X, Y, _as_ellipses(p.hof[:, None, :3]), p.hof[:, None, 2] > 0, n, 2 * EDGE_PX)
    cyto = cell * (1 - nucleus) * (1 - p.hof[:, 3, None, None] * hof) * (1 - 0.85 * vac) * (1 + 0.08 * clump)
    out += cyto[..., None] * p.cytoplasm_od[:, None, None, :]

    for g, kind in enumerate(GRANULE_ORDER):
        idx = np.flatnonzero(p.granules[:, g])
        if not idx.size:
            continue
        counts = p.granules[idx, g]
        owner = np.repeat(np.arange(idx.size), counts)
        radius = np.minimum(p.cell[idx, 2], p.cell[idx, 3])[owner] * 0.97
        x, y = sample_in_disc(rng, p.cell[idx, 0][owner], p.cell[idx, 1][owner], radius)
        sigma_um, rgb = GRANULE_KINDS[kind]
        cov = splat_points(idx.size, S, owner, x + S / 2, y + S / 2, sigma_um / mpp)
        over = p.over_nucleus[idx, g][:, None, None]
        mask = cell[idx] * (1 - nucleus[idx] * (1 - over)) * (1 - vac[idx])
        out[idx] += (cov * mask)[..., None] * od(rgb)

    with_rods = np.flatnonzero(p.n_rods)
    if with_rods.size:
        own, slot = np.nonzero(np.arange(MAX_RODS)[None, :] < p.n_rods[with_rods, None])
        r = p.rods[with_rods[own], slot]
        lines = np.stack([r[:, 0] + S / 2, r[:, 1] + S / 2, r[:, 2], r[:, 3]], axis=1)
        rods = splat_lines(with_rods.size, S, own, lines, 0.15 / mpp)
        out[with_rods] += (rods * cell[with_rods])[..., None] * (1.3 * od(AUER_RGB))
    return CellOD(out, cell, nucleus)


def _as_ellipses(circles: np.ndarray) -> np.ndarray:
    """(n, k, 3) circles x, y, r -> (n, k, 5) ellipses."""
    r = circles[..., 2:3]
    return np.concatenate([circles[..., :2], r, r, np.zeros_like(r)], axis=-1).astype(F32)


def render_grouped(
    p: CellParams, rng: np.random.Generator, mpp: float, margin_px: float = 0.0, batch: int = 128
) -> Iterator[tuple[np.ndarray, CellOD]]:
    """Render cells in batches of equal sprite size, each sprite just large enough for its cell.

    A lymphocyte needs a 48 px sprite at 0.25 mpp where a promyelocyte needs 112: grouping by size renders
    about half the pixels a common sprite size would. Yields (indices into `p`, their sprites).
    """
    sizes = p.sprite_px(margin_px)
    for size in np.unique(sizes):
        group = np.flatnonzero(sizes == size)
        for start in range(0, len(group), batch):
            idx = group[start : start + batch]
            yield idx, render_od(p.take(idx), int(size), rng, mpp)
