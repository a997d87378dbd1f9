"""Array primitives shared by the cell and slide renderers: soft ellipses, smooth noise, granule splats.

Everything works on a batch at once: per-cell parameters are (n, 1, 1) arrays broadcast against one (1, S, S)
pixel grid, so a batch of cells costs a handful of whole-array passes rather than a loop over pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

F32 = np.float32


def grid(size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (1, S, S) with 0 at the sprite centre (the corner shared by the 4 middle pixels)."""
    c = np.arange(size_px, dtype=F32) + F32(0.5) - F32(size_px / 2)
    return c[None, None, :], c[None, :, None]


def ellipse_coverage(
    X: np.ndarray,
    Y: np.ndarray,
    p: np.ndarray,
    edge_px: float,
    wobble: np.ndarray | None = None,
) -> np.ndarray:
    """Soft coverage (n, S, S) in [0, 1] of ellipses p = (n, 5): x, y, a, b, angle.

    The signed distance is approximated by (k - 1) * min(a, b), k the normalised elliptic radius: exact on the
    minor axis, slightly sharp at the tips of long thin ellipses (Auer rods), which the optical blur hides.
    `wobble` (n, H, 2) adds harmonics 2..H+1 (amplitude, phase) to the outline, so membranes and nuclei are not
    perfect ellipses; cos(h*phi) comes from the Chebyshev recurrence on (u, v) / k, not from arctan2 and cos,
    which would cost more than the rest of the function.
    """
    x, y, a, b, th = (p[:, i, None, None].astype(F32) for i in range(5))
    dx, dy = X - x, Y - y  # (n, 1, S) and (n, S, 1): the full (n, S, S) arrays start below
    c, s = np.cos(th), np.sin(th)
    u = dx * (c / a) + dy * (s / a)
    v = dy * (c / b) - dx * (s / b)
    k = u * u
    k += v * v
    np.sqrt(k, out=k)
    if wobble is not None:
        inv = 1 / np.maximum(k, F32(1e-6))
        c1, s1 = u * inv, v * inv
        ch, sh = c1, s1
        scale = np.ones_like(k)
        for h in range(wobble.shape[1]):
            ch, sh = ch * c1 - sh * s1, sh * c1 + ch * s1
            amp, phase = wobble[:, h, 0, None, None].astype(F32), wobble[:, h, 1, None, None]
            scale += ch * (amp * np.cos(phase).astype(F32)) - sh * (amp * np.sin(phase).astype(F32))
        k /= scale
    k -= 1
    k *= np.minimum(a, b) / F32(-edge_px)
    k += F32(0.5)
    return np.clip(k, 0, 1, out=k)


def _kernel_norm(sigma_px: float) -> float:
    """L2 norm of the 1-D Gaussian kernel scipy uses: filtered unit white noise has std = norm**2 in 2-D."""
    impulse = np.zeros(int(8 * sigma_px) + 9, dtype=np.float64)
    impulse[len(impulse) // 2] = 1
    kernel = ndimage.gaussian_filter1d(impulse, sigma_px, truncate=3.0)
    return float(np.sqrt((kernel**2).sum()))


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
    """Gaussian-filtered white noise, unit std, filtered over the last two axes only (one field per cell)."""
    white = rng.standard_normal(shape, dtype=F32)
    sigma = (0,) * (len(shape) - 2) + (sigma_px, sigma_px)
    field = ndimage.gaussian_filter(white, sigma, mode="wrap", truncate=3.0)
    field *= F32(1 / _kernel_norm(sigma_px) ** 2)
    return field


def splat_points(
    n: int, size_px: int, cell: np.ndarray, x: np.ndarray, y: np.ndarray, sigma_px: float
) -> np.ndarray:
    """Coverage (n, S, S) of round granules of blur `sigma_px` centred at pixel coordinates (x, y) of `cell`.

    Points are counted per pixel (bincount), blurred, and normalised so one isolated granule peaks at 1;
    overlapping granules saturate (1 - exp) as packed granules do instead of adding up without bound.
    """
    xi = np.clip(np.floor(x), 0, size_px - 1).astype(np.int64)
    yi = np.clip(np.floor(y), 0, size_px - 1).astype(np.int64)
    flat = (cell.astype(np.int64) * size_px + yi) * size_px + xi
    counts = np.bincount(flat, minlength=n * size_px * size_px).astype(F32).reshape(n, size_px, size_px)
    blurred = ndimage.gaussian_filter(counts, (0, sigma_px, sigma_px), mode="constant", truncate=3.0)
    peak = F32(2 * np.pi * sigma_px**2) if sigma_px > 0.5 else F32(1.0 / _peak_small(sigma_px))
    return 1 - np.exp(-1.4 * blurred * peak)


def splat_lines(n: int, size_px: int, cell: np.ndarray, lines: np.ndarray, sigma_px: float) -> np.ndarray:
    """Coverage (n, S, S) of thin blurred segments (Auer rods): points every half pixel along each segment.

    `lines` (m, 4) holds x, y (pixel coordinates), half-length and angle; `cell` (m,) which sprite it is in.
    Normalised so a segment's centre line reaches about 0.9, like a rod seen through the optics; one bincount
    and one blur for all rods of a batch, where drawing each rod as an ellipse cost a full sprite pass each.
    """
    counts = np.maximum(np.ceil(4 * lines[:, 2]).astype(np.int64), 1) + 1
    owner = np.repeat(np.arange(len(lines)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    t = (np.arange(owner.size) - first) / (counts[owner] - 1).clip(1) * 2 - 1  # -1..1 along each segment
    x = lines[owner, 0] + t * lines[owner, 2] * np.cos(lines[owner, 3])
    y = lines[owner, 1] + t * lines[owner, 2] * np.sin(lines[owner, 3])
    xi = np.clip(np.floor(x), 0, size_px - 1).astype(np.int64)
    yi = np.clip(np.floor(y), 0, size_px - 1).astype(np.int64)
    flat = (cell[owner].astype(np.int64) * size_px + yi) * size_px + xi
    hits = np.bincount(flat, minlength=n * size_px * size_px).astype(F32).reshape(n, size_px, size_px)
    spacing = 2 * lines[owner, 2] / (counts[owner] - 1).clip(1)
    hits *= F32(np.mean(spacing) if spacing.size else 0.5)
    blurred = ndimage.gaussian_filter(hits, (0, sigma_px, sigma_px), mode="constant", truncate=3.0)
    return 1 - np.exp(F32(-2.0 * np.sqrt(2 * np.pi) * sigma_px) * blurred)


def _peak_small(sigma_px: float) -> float:
    """Peak of a blurred unit impulse when sigma is below a pixel (the continuous formula overshoots)."""
    impulse = np.zeros((9, 9), dtype=F32)
    impulse[4, 4] = 1
    return float(ndimage.gaussian_filter(impulse, sigma_px, truncate=3.0).max())


def sample_in_disc(
    rng: np.random.Generator, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points in discs (vectorised over any number of points)."""
    r = radius * np.sqrt(rng.random(len(cx)))
    phi = rng.random(len(cx)) * 2 * np.pi
    return cx + r * np.cos(phi), cy + r * np.sin(phi)


def upsample_bilinear(coarse: np.ndarray, step_px: float, y0: int, y1: int, width_px: int) -> np.ndarray:
    """Rows y0:y1 (full resolution) of a coarse map whose cell i covers pixels [i*step, (i+1)*step)."""

    def axis(lo: int, hi: int, n_coarse: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(lo, hi, dtype=F32) + F32(0.5)) / F32(step_px) - F32(0.5)
        pos = np.clip(pos, 0, n_coarse - 1)
        i0 = np.minimum(np.floor(pos).astype(np.int64), n_coarse - 2 if n_coarse > 1 else 0)
        return i0, np.minimum(i0 + 1, n_coarse - 1), (pos - i0).astype(F32)

    r0, r1, fy = axis(y0, y1, coarse.shape[0])
    rows = coarse[r0] * (1 - fy)[:, None] + coarse[r1] * fy[:, None]
    c0, c1, fx = axis(0, width_px, coarse.shape[1])
    return (rows[:, c0] * (1 - fx) + rows[:, c1] * fx).astype(F32)
