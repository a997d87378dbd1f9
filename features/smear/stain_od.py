"""Optical density of a stained smear, and the two colour rules built on it: nuclei and red cells.

Optical density (OD = -log10 of the transmitted share of light) is additive in the amount of stain (Beer-
Lambert), so stacked layers add up and a colour is a direction in (R, G, B) OD space whatever its darkness.
Region QC (`features.smear.qc`, on a coarse map against the slide's own glass) and detection (`features.smear.detect`, on
full-resolution tiles against white 255) read nuclei with the same rule, `nuclear_from_od`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def od_lut(white: float) -> np.ndarray:
    """OD of every 8-bit value against a glass brightness of `white` (256 float32; clipped to [0, 3])."""
    return (-np.log10(np.clip((np.arange(256) + 0.5) / white, 1e-3, 1.0))).astype(np.float32)


# Against white 255: half a grey level above 255 so that 255 itself reads as OD 0.
_OD_255 = od_lut(255.5)


def channel_od(img: np.ndarray, white: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel OD of an RGB uint8 image against the per-channel glass brightness `white` (3,)."""
    od_r, od_g, od_b = (od_lut(white[c])[img[..., c]] for c in range(3))
    return od_r, od_g, od_b


def nuclear_from_od(
    od_r: np.ndarray,
    od_g: np.ndarray,
    od_b: np.ndarray | None,
    nuclear_od: float,
    smooth_px: float = 0.0,
    red_od: np.ndarray | None = None,
    beyond_red_od: float = 0.0,
) -> np.ndarray:
    """Nuclear pixels: red AND green optical density above `nuclear_od` (purple chromatin absorbs both;
    eosin-pink red cells pass red light, pale cytoplasm absorbs little), after a Gaussian of `smooth_px`
    that evens out chromatin texture so one nucleus stays one blob.

    With `red_od` (the slide's red-cell colour) a pixel must also keep `beyond_red_od` of red and green OD
    once the largest amount of red-cell stain it can hold is removed. OD is additive, so two or three stacked
    red cells are still pure red-cell colour and fail, whatever their darkness, while chromatin, of another
    hue, passes. It is a veto, not the signal: on pale stains the residual is weak and darkness decides.
    """
    dark, allowed = nuclear_darkness(od_r, od_g, od_b, smooth_px, red_od, beyond_red_od)
    return (dark > nuclear_od) & allowed


def nuclear_darkness(
    od_r: np.ndarray,
    od_g: np.ndarray,
    od_b: np.ndarray | None,
    smooth_px: float = 0.0,
    red_od: np.ndarray | None = None,
    beyond_red_od: float = 0.0,
) -> tuple[np.ndarray, np.ndarray | bool]:
    """The two halves of `nuclear_from_od`: the smoothed red-AND-green darkness, and where the red-cell
    veto allows chromatin (True everywhere without `red_od`). Thresholding one darkness at two levels (the
    detector's mask and its darker core) costs one pass."""
    dark = np.minimum(od_r, od_g)
    if smooth_px > 0:
        dark = ndimage.gaussian_filter(dark, smooth_px, truncate=2.5)
    if red_od is None or beyond_red_od <= 0 or od_b is None:
        return dark, True
    e = np.asarray(red_od, np.float32)
    amount = np.minimum(np.minimum(od_r / e[0], od_g / e[1]), od_b / e[2])
    beyond = np.minimum(od_r - amount * e[0], od_g - amount * e[1])
    if smooth_px > 0:
        beyond = ndimage.gaussian_filter(beyond, smooth_px, truncate=2.5)
    return dark, beyond > beyond_red_od


def nuclear_mask(
    rgb: np.ndarray,
    nuclear_od: float,
    smooth_px: float = 0.0,
    red_od: np.ndarray | None = None,
    beyond_red_od: float = 0.0,
) -> np.ndarray:
    """Nuclear pixels of an RGB tile (OD against white 255): see `nuclear_from_od`."""
    dark, allowed = tile_darkness(rgb, smooth_px, red_od, beyond_red_od)
    return (dark > nuclear_od) & allowed


def tile_darkness(
    rgb: np.ndarray, smooth_px: float = 0.0, red_od: np.ndarray | None = None, beyond_red_od: float = 0.0
) -> tuple[np.ndarray, np.ndarray | bool]:
    """`nuclear_darkness` of an RGB tile (OD against white 255)."""
    od_b = _OD_255[rgb[..., 2]] if red_od is not None and beyond_red_od > 0 else None
    return nuclear_darkness(
        _OD_255[rgb[..., 0]], _OD_255[rgb[..., 1]], od_b, smooth_px, red_od, beyond_red_od
    )


def eosinophilic_granules(
    rgb: np.ndarray,
    smooth_px: float,
    ratio: float,
    min_green_od: float,
    min_px: int,
    nuclear: np.ndarray,
    fallback_blue: float | None = None,
) -> np.ndarray:
    """Pixels of packed eosinophilic granules in an RGB tile (OD against white 255): blue OD above `ratio` x
    green OD x the red cells' own blue-to-green ratio, green OD above `min_green_od`, in connected masses of
    at least `min_px` pixels.

    Eosin-orange granules absorb blue far more than red cells do (orange against salmon-pink), and are
    darker; the red-cell colour veto (`nuclear_from_od`) reads them as red-cell stain, and with a small or
    pale nucleus among them an eosinophil leaves nothing nuclear behind. The red cells' ratio is measured on
    the tile (median over stained, non-nuclear pixels: mostly red cells), because the slide's red-cell colour
    from the coarse QC map mixes red cells with the film between them and is ~20 % off in blue;
    `fallback_blue` (that colour's blue-to-green) stands in where the tile has under `min_px` x 20 such
    pixels. Without either, no pixel is granular."""
    od_g, od_b = _OD_255[rgb[..., 1]], _OD_255[rgb[..., 2]]
    if smooth_px > 0:
        od_g = ndimage.gaussian_filter(od_g, smooth_px, truncate=2.5)
        od_b = ndimage.gaussian_filter(od_b, smooth_px, truncate=2.5)
    stained = (od_g > min_green_od) & ~nuclear
    if stained.sum() >= 20 * min_px:
        reference = float(np.median(od_b[stained] / od_g[stained]))
    elif fallback_blue is not None:
        reference = float(fallback_blue)
    else:
        return np.zeros(rgb.shape[:2], bool)
    granular = (od_b > ratio * reference * od_g) & (od_g > min_green_od)
    comp, n = ndimage.label(granular)
    if n == 0:
        return granular
    return (np.bincount(comp.ravel(), minlength=n + 1) >= min_px)[comp] & granular


def red_cell_colour(
    od_r: np.ndarray, od_g: np.ndarray, od_b: np.ndarray, stained: np.ndarray
) -> np.ndarray | None:
    """The slide's red-cell OD colour (3,), scaled so green = 1: the median OD direction of stained pixels
    without the darkest fifth (nuclei). Red cells cover most of the stained area of a smear, so this is their
    colour at this site and stain, whatever the hue; detection vetoes it (`nuclear_from_od`)."""
    dark = np.minimum(od_r, od_g)[stained]
    if dark.size < 100:
        return None
    keep = dark <= np.percentile(dark, 80)
    total = (od_r + od_g + od_b)[stained][keep]
    colour = np.array([np.median(c[stained][keep] / total) for c in (od_r, od_g, od_b)])
    return np.maximum(colour / colour[1], 0.05).astype(np.float32)


__all__ = [
    "channel_od",
    "eosinophilic_granules",
    "nuclear_darkness",
    "nuclear_from_od",
    "nuclear_mask",
    "od_lut",
    "red_cell_colour",
    "tile_darkness",
]
