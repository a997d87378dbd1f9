"""Red cells (salmon discs with central pallor) and platelets, as optical densities.

Red cells matter downstream: a detector must not take them for nucleated cells (they are pink-red with no dark
nucleus), and crops must show them at the edges as CellaVision exports do. Platelets are small granular purple
bodies, the classic false positive of a nucleus detector.
"""

from __future__ import annotations

import numpy as np

from features.synth.celltypes import PLATELET_DIAMETER_UM, PLATELET_RGB, RBC_DIAMETER_UM, RBC_RGB, od
from features.synth.fields import F32, ellipse_coverage, grid, sample_in_disc, splat_points


def rbc_params(rng: np.random.Generator, n: int, mpp: float) -> np.ndarray:
    """(n, 7): x, y, a, b, angle, pallor, density. Mostly discs, a few ovalocytes."""
    d_px = rng.uniform(*RBC_DIAMETER_UM, n) / mpp
    aspect = np.where(rng.random(n) < 0.1, rng.uniform(0.7, 0.85, n), rng.uniform(0.92, 1.0, n))
    r = d_px / 2
    return np.stack(
        [np.zeros(n), np.zeros(n), r / np.sqrt(aspect), r * np.sqrt(aspect), rng.uniform(0, np.pi, n),
         rng.uniform(0.55, 0.8, n), rng.uniform(0.85, 1.1, n)],
        axis=1,
    ).astype(F32)  # fmt: skip


def rbc_density(X: np.ndarray, Y: np.ndarray, p: np.ndarray, edge_px: float) -> np.ndarray:
    """Thickness profile (n, S, S) of red cells: a biconcave disc, thin pale centre, slightly dense rim."""
    x, y, a, b, th = (p[:, i, None, None] for i in range(5))
    pallor, dens = p[:, 5, None, None], p[:, 6, None, None]
    dx, dy = X - x, Y - y
    c, s = np.cos(th), np.sin(th)
    k = np.sqrt(((dx * c + dy * s) / a) ** 2 + ((dy * c - dx * s) / b) ** 2)
    cov = np.clip(F32(0.5) - (k - 1) * np.minimum(a, b) / F32(edge_px), 0, 1)
    profile = (1 - pallor * np.exp(-((k / 0.5) ** 4))) * (1 + 0.12 * np.exp(-(((k - 0.82) / 0.13) ** 2)))
    return cov * profile * dens


def rbc_sprites(rng: np.random.Generator, n: int, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    """A bank of (n, S, S, 3) red-cell OD sprites for pasting onto slides, and their diameters in µm."""
    size = int(np.ceil(RBC_DIAMETER_UM[1] * 1.1 / mpp)) + 4
    X, Y = grid(size)
    p = rbc_params(rng, n, mpp)
    return rbc_density(X, Y, p, 0.7)[..., None] * od(RBC_RGB), (p[:, 2] + p[:, 3]) * mpp


def platelet_sprites(rng: np.random.Generator, n: int, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    """A bank of (n, S, S, 3) platelet OD sprites (a pale lilac body with purple granules), diameters in µm."""
    size = int(np.ceil(PLATELET_DIAMETER_UM[1] * 1.3 / mpp)) + 4
    X, Y = grid(size)
    d_um = rng.uniform(*PLATELET_DIAMETER_UM, n)
    d = d_um / mpp
    aspect = rng.uniform(0.6, 1.0, n)
    zero = np.zeros(n)
    p = np.stack(
        [zero, zero, d / 2 / np.sqrt(aspect), d / 2 * np.sqrt(aspect), rng.uniform(0, np.pi, n)], axis=1
    )
    body = ellipse_coverage(X, Y, p.astype(F32), 0.7)
    owner = np.repeat(np.arange(n), rng.integers(3, 9, n))
    gx, gy = sample_in_disc(rng, zero[owner], zero[owner], 0.35 * d[owner])
    granules = splat_points(n, size, owner, gx + size / 2, gy + size / 2, 0.15 / mpp)
    return (0.3 * body + 0.9 * granules * body)[..., None] * od(PLATELET_RGB), d_um
