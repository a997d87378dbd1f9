"""The pixel size of a microscope field, from its red cells: a user rarely knows a camera's µm per pixel.

Red cells are the one object of a blood or marrow smear with a near-constant size: about 7.5 µm across on a dried
smear (`rbc_diameter_um`), whatever the patient (micro- and macrocytosis move the median by ~10-15 %, which
is the honest limit of this method). So mpp = 7.5 µm / the median diameter of the field's red cells in pixels.

What is measured, without knowing the scale (every step is relative or in pixels of the field itself):
1. stained matter: green optical density (red cells absorb green) against the field's own glass, thresholded
   by Otsu between glass and cells, so the outline sits half-way up the blurred edge whatever the blur;
   holes are filled (the central pallor);
2. components that touch the border (cut cells) or hold nuclear pixels (purple: red AND green OD high; a
   nucleated cell and whatever red cells touch it) are dropped;
3. single cells are the components shaped like one ellipse: second-moment aspect >= `MIN_ASPECT` and
   area >= `MIN_FILL` of the ellipse with the same moments (two touching cells, a stack, or a ring whose pallor
   opens to the glass all fail);
4. specks (platelets, debris, ~1/3 of a red cell across) are left out by size relative to the field's red
   cells: the area-weighted median diameter (red cells dominate the area) sets the reference, and the
   singles within [`SIZE_BAND`] of it are the red cells; their equivalent diameter (2 sqrt(area / pi)) is the
   measurement.
The work happens on a block-averaged copy whose shorter side is ~240-480 px (red cells ~20-50 px across in
a field; measured again closer when they come out under `MIN_WORKING_PX`), so a 4000 x 3000 camera frame
costs what a 640 x 480 one does.

The fields of one patient's smear share a camera and an objective, and crowded fields hold few separate red
cells (BCCD: a median of 2 per field), so the estimate pools the single red cells of all the patient's fields;
each field's own median is kept to show whether the fields agree (benchmarks/fields.py measures the error on
`mil synth` fields at known mpp from 0.05 to 0.5 µm/px).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from features.smear.imageops import block_mean, fill_holes
from features.smear.stain_od import od_lut

MIN_ASPECT = 0.75  # minor / major axis of a single red cell (ovalocytes ~0.7 are left out, a minority)
MIN_FILL = 0.93  # area / area of the moment ellipse: a convex, unbroken outline
SIZE_BAND = (0.6, 1.5)  # singles within this share of the reference diameter are red cells
NUCLEAR_OD = 0.25  # red AND green OD above this: chromatin (red cells pass red light)
MIN_WORKING_PX = 16.0  # red cells smaller than this in the working copy are measured again, closer
TARGET_PX = 32.0  # red-cell diameter aimed at when measuring again
MIN_AREA_PX = 12  # smaller components are noise at any working scale


@dataclass(frozen=True)
class FieldRedCells:
    """The single un-nucleated cells of one field (red cells and specks): equivalent diameters in the field's
    own (full-resolution) pixels. Which of them are red cells is decided over all the fields pooled
    (`red_cell_sizes`): a field whose only single is a platelet cannot tell by itself."""

    diameters_px: np.ndarray


@dataclass(frozen=True)
class MppEstimate:
    """The pooled estimate of one patient's fields (or one field) and how sure it is."""

    mpp: float  # µm per pixel
    rbc_diameter_px: float  # pooled median single-red-cell diameter
    rbc_diameter_um: float  # the assumed median diameter
    n_cells: int  # single red cells measured
    n_fields: int  # fields that contributed at least one
    spread: float  # interquartile range of the diameters / their median (cell-to-cell spread)
    ci95: tuple[float, float]  # mpp range from the median's 95 % interval (median +- 1.58 IQR / sqrt n)
    field_mpp: dict[str, float] = field(default_factory=dict)  # per field with >= 3 singles: its own estimate

    def to_dict(self) -> dict:
        return {
            "mpp": round(self.mpp, 6),
            "method": "red cells",
            "rbc_diameter_um": self.rbc_diameter_um,
            "rbc_diameter_px": round(self.rbc_diameter_px, 3),
            "red_cells": self.n_cells,
            "fields_with_red_cells": self.n_fields,
            "diameter_spread_iqr": round(self.spread, 4),
            "mpp_ci95": [round(v, 6) for v in self.ci95],
            "field_mpp_spread": _field_spread(self.field_mpp),
        }


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that best splits `values` into two classes (Otsu 1979: maximal between-class variance)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    m0 = np.cumsum(hist * centres)
    total, mean_all = w0[-1], m0[-1]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_all * w0 / total - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1.0
    return float(centres[int(np.argmax(between))])


def _singles(rgb: np.ndarray) -> np.ndarray:
    """Equivalent diameters (px of `rgb`) of the components shaped like one un-nucleated cell."""
    sample = rgb.reshape(-1, 3)[:: max(1, rgb.shape[0] * rgb.shape[1] // 100_000)]
    white = np.clip(np.percentile(sample, 99.5, axis=0), 60, 255) + 0.5
    od_r, od_g = od_lut(white[0])[rgb[..., 0]], od_lut(white[1])[rgb[..., 1]]
    if float(od_g.max() - od_g.min()) < 0.02:  # a flat image: nothing stained to measure
        return np.zeros(0)
    # The threshold is set between glass and red cells only: large, dark nucleated cells would otherwise make
    # a third mode and pull it up to between red cells and them.
    purple = np.minimum(od_r, od_g) > NUCLEAR_OD
    mask = fill_holes((od_g > otsu_threshold(od_g[~purple] if (~purple).any() else od_g))[None])[0]
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(0)
    dropped = np.zeros(n + 1, bool)
    dropped[np.unique(labels[purple])] = True
    edges = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    dropped[np.unique(edges)] = True
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    area = np.bincount(lab, minlength=n + 1).astype(np.float64)
    safe = np.maximum(area, 1)
    cx, cy = np.bincount(lab, xs, n + 1) / safe, np.bincount(lab, ys, n + 1) / safe
    dx, dy = xs - cx[lab], ys - cy[lab]
    sxx = np.bincount(lab, dx * dx, n + 1) / safe + 1 / 12  # + 1/12: a pixel's own extent
    syy = np.bincount(lab, dy * dy, n + 1) / safe + 1 / 12
    sxy = np.bincount(lab, dx * dy, n + 1) / safe
    half_trace, det = (sxx + syy) / 2, np.maximum(sxx * syy - sxy * sxy, 1e-12)
    disc = np.sqrt(np.maximum(half_trace**2 - det, 0))
    aspect = np.sqrt(np.maximum(half_trace - disc, 0) / np.maximum(half_trace + disc, 1e-12))
    fill = area / (4 * np.pi * np.sqrt(det))  # 1 for any filled ellipse
    single = ~dropped & (area >= MIN_AREA_PX) & (aspect >= MIN_ASPECT) & (fill >= MIN_FILL)
    single[0] = False
    return 2 * np.sqrt(area[single] / np.pi)


def red_cell_sizes(diameters: np.ndarray) -> np.ndarray:
    """The singles of red-cell size: specks (platelets, debris) are a third of a red cell across and carry
    little area, so the area-weighted median diameter is the red cells' and sets the band."""
    if len(diameters) == 0:
        return diameters
    order = np.argsort(diameters)
    weight = np.cumsum(diameters[order] ** 2)
    reference = diameters[order][np.searchsorted(weight, weight[-1] / 2)]
    keep = (diameters >= SIZE_BAND[0] * reference) & (diameters <= SIZE_BAND[1] * reference)
    return diameters[keep]


def measure_red_cells(rgb: np.ndarray) -> FieldRedCells:
    """The single red cells (and specks) of one RGB field, measured on a block-averaged working copy."""
    h, w = rgb.shape[:2]
    k = max(1, min(h, w) // 240)  # fields are a few to a few dozen red cells across: ~20-50 px each here
    found = _singles(block_mean(rgb, k))
    if k > 1 and (len(found) == 0 or np.median(red_cell_sizes(found)) < MIN_WORKING_PX):
        # red cells came out too small to measure well (a low magnification): look closer
        k = max(1, int(k * (np.median(red_cell_sizes(found)) if len(found) else 0) / TARGET_PX))
        found = _singles(block_mean(rgb, k))
    return FieldRedCells(found * k)


def estimate_mpp(
    fields: dict[str, FieldRedCells], rbc_diameter_um: float = 7.5, min_red_cells: int = 10
) -> MppEstimate | None:
    """The pooled mpp of fields that share a camera, or None when fewer than `min_red_cells` single red cells
    were found in all of them together (the caller refuses with one line)."""
    singles = np.concatenate([f.diameters_px for f in fields.values()] or [np.zeros(0)])
    pooled = red_cell_sizes(singles)
    if len(pooled) < max(1, min_red_cells):
        return None
    lo_px, hi_px = pooled.min(), pooled.max()
    red = {
        name: f.diameters_px[(f.diameters_px >= lo_px) & (f.diameters_px <= hi_px)]
        for name, f in fields.items()
    }
    median = float(np.median(pooled))
    q1, q3 = np.percentile(pooled, [25, 75])
    half = 1.58 * (q3 - q1) / math.sqrt(len(pooled))
    lo, hi = max(median - half, 1e-6), median + half
    per_field = {name: rbc_diameter_um / float(np.median(d)) for name, d in red.items() if len(d) >= 3}
    return MppEstimate(
        mpp=rbc_diameter_um / median,
        rbc_diameter_px=median,
        rbc_diameter_um=rbc_diameter_um,
        n_cells=len(pooled),
        n_fields=sum(1 for d in red.values() if len(d)),
        spread=float((q3 - q1) / median),
        ci95=(rbc_diameter_um / hi, rbc_diameter_um / lo),
        field_mpp=per_field,
    )


def _field_spread(field_mpp: dict[str, float]) -> float | None:
    """Median absolute deviation of the per-field estimates / their median: large when fields disagree
    (mixed objectives in one folder)."""
    if len(field_mpp) < 2:
        return None
    values = np.array(list(field_mpp.values()))
    centre = np.median(values)
    return round(float(np.median(np.abs(values - centre)) / centre), 4)


__all__ = ["FieldRedCells", "MppEstimate", "estimate_mpp", "measure_red_cells", "otsu_threshold"]
