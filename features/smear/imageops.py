"""Small numpy image operations shared by the slide reader, region QC, detection, cell-folder extraction and
the cytomorph encoder.

Nothing here opens a file or knows a slide: arrays in, arrays out. Kept apart from
`features.sources.openslide_reader` so that QC, detection and the config that holds their parameters can be
imported (and tested on painted arrays) without loading OpenSlide.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FOCUS_SIGMA_PX = 1.0  # Gaussian of the Laplacian of Gaussian, in pixels of the measured image
FOCUS_BORDER_PX = 3  # border left out of the variance: the filter there sees the (reflected) edge


def block_mean(img: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k blocks (a partial last block averages the pixels it has): exact area downsampling."""
    if k == 1:
        return img
    rows = np.arange(0, img.shape[0], k)
    cols = np.arange(0, img.shape[1], k)
    s = np.add.reduceat(np.add.reduceat(img, rows, axis=0, dtype=np.uint32), cols, axis=1, dtype=np.uint32)
    nr = np.diff(np.append(rows, img.shape[0]))
    nc = np.diff(np.append(cols, img.shape[1]))
    count = (nr[:, None] * nc[None, :]).reshape(len(rows), len(cols), *([1] * (img.ndim - 2)))
    return ((s + count // 2) // count).astype(img.dtype)


def focus_scores(images: np.ndarray) -> np.ndarray:
    """The focus measure: B x H x W x 3 RGB (8-bit scale) -> B float32 variance of the Laplacian of a
    `FOCUS_SIGMA_PX` Gaussian of the green channel, `FOCUS_BORDER_PX` from the border.

    Blur removes the high frequencies the Laplacian measures, so a low score flags an out-of-focus image.
    The Gaussian keeps sensor noise (white, all frequencies) from passing for sharpness, which a plain
    variance of the Laplacian does on a noisy but blurred image. Green: the channel where both chromatin and
    red cells absorb, so it carries most of the edges of a stained smear. Region QC (one patch per focus
    tile) and cell-image folders (one score per image) both use this one measure, so their thresholds and
    values compare. An image too small to leave out the full border (under 7 px) keeps its centre pixel(s).
    """
    green = np.asarray(images)[..., 1].astype(np.float32)
    log = ndimage.gaussian_laplace(green, FOCUS_SIGMA_PX, axes=(1, 2))
    b = min(FOCUS_BORDER_PX, (min(green.shape[1:]) - 1) // 2)
    h, w = green.shape[1:]
    return log[:, b : h - b, b : w - b].reshape(len(green), -1).var(axis=1).astype(np.float32)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions that do not touch the image border (4-connected background), for a B x H x W
    stack of masks at once: one labelling call whose structuring element never connects two images."""
    cross = np.zeros((3, 3, 3), bool)
    cross[1, 1, :] = cross[1, :, 1] = True
    labels, _ = ndimage.label(~mask, cross)
    border = np.zeros(labels.max() + 1, bool)
    for edge in (labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]):
        border[edge.ravel()] = True
    border[0] = True
    return mask | ~border[labels]


__all__ = ["block_mean", "fill_holes", "focus_scores"]
