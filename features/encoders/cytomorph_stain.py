"""Red cells as each crop's internal stain standard.

Labs differ in how strongly, how saturated and with which hue their MGG bath stains; in optical density these
are a scale of the grey component (strength), a scale of the chroma around the grey axis (saturation) and a
rotation of the chroma about the grey axis (hue). Red cells are in nearly every smear crop and take the stain
the same way everywhere, so the crop's mean red-cell OD against a textbook red cell gives all three, and the
inverse map brings the crop's densities and colours to a common frame. Crops without enough red-cell pixels
(an isolated cell) keep their own frame, and the estimate is clamped so that a misread reference (an orange
eosinophil granule field, say) cannot swing the colours far.
"""

from __future__ import annotations

import numpy as np

from features.encoders import morph_ops as M

REFERENCE_RBC_OD = -np.log(np.array([222, 135, 140]) / 255) * 0.8  # salmon-pink MGG red cell; 0.8 for pallor
MIN_RBC_PX = 40  # half-resolution pixels (10 µm²) of red cell needed to trust the reference
STRENGTH_RANGE, SATURATION_RANGE, HUE_RANGE_RAD = (0.6, 1.6), (0.5, 2.0), 0.5

_GREY = np.ones(3) / np.sqrt(3)
_E1 = np.array([1.0, -1.0, 0.0]) / np.sqrt(2)
_E2 = np.cross(_GREY, _E1)


def _polar(od: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey level, chroma magnitude / grey level (saturation), and hue angle of OD vectors (..., 3)."""
    grey = od @ _GREY
    u, v = od @ _E1, od @ _E2
    return grey, np.hypot(u, v) / np.maximum(grey, 1e-6), np.arctan2(v, u)


def red_cell_od(od: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean OD (B x 3) of planar OD (B x 3 x h x w) over red-cell candidate pixels, and whether there were
    enough of them (B,)."""
    b = od.shape[0]
    w = candidates.reshape(b, -1, 1).astype(np.float32)
    n = w[:, :, 0].sum(1)
    mean = np.matmul(od.reshape(b, 3, -1), w)[:, :, 0] / np.maximum(n, 1)[:, None]
    return mean, n >= MIN_RBC_PX


def normaliser(rbc_od: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """B x 3 x 3 matrices M with od_reference = M @ od for each crop (identity where not valid)."""
    g, sat, hue = _polar(rbc_od)
    g0, sat0, hue0 = _polar(REFERENCE_RBC_OD)
    strength = np.clip(g / g0, *STRENGTH_RANGE)
    saturation = np.clip(sat / sat0, *SATURATION_RANGE)
    turn = np.clip(np.angle(np.exp(1j * (hue - hue0))), -HUE_RANGE_RAD, HUE_RANGE_RAD)
    strength = np.where(valid, strength, 1.0)
    saturation = np.where(valid, saturation, 1.0)
    turn = np.where(valid, turn, 0.0)
    # rotation by -turn about the grey axis, acting on the chroma plane spanned by E1, E2
    c, s = np.cos(-turn)[:, None, None], np.sin(-turn)[:, None, None]
    in_plane = np.outer(_E1, _E1) + np.outer(_E2, _E2)
    quarter_turn = np.outer(_E2, _E1) - np.outer(_E1, _E2)
    rot = c * in_plane + s * quarter_turn
    mats = (np.outer(_GREY, _GREY)[None] + rot / saturation[:, None, None]) / strength[:, None, None]
    return mats.astype(np.float32)


def stain_normaliser(
    od: np.ndarray, stained: np.ndarray, cell: np.ndarray, eosin_share: np.ndarray
) -> np.ndarray:
    """B x 3 x 3 matrices (for `cytomorph.unmix`) taking each crop's planar OD to the reference stain frame,
    using red-cell pixels outside the (dilated) cell as the standard."""
    candidates = stained & (eosin_share > 0.5) & ~M.dilate(cell, 2)
    return normaliser(*red_cell_od(od, candidates)).transpose(0, 2, 1)
