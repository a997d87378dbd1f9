"""Fixed-physical-size crops around level-0 centres, resized to the encoder's input, read in groups.

A crop is `crop_um` wide whatever the scanner, so a 0.25 µm/px and a 0.5 µm/px slide give the encoder the
same field of view. Pixels come from the coarsest pyramid level that is still at least as fine as the output
(never upsampling a coarse level when a finer one exists), and are resized with an exact area average when
shrinking (anti-aliased) or bilinear interpolation when enlarging.

Why groups: one `read_region` per cell costs a tile decode per cell, and neighbouring cells share tiles.
Centres are bucketed on a grid of `group_px` level pixels and each bucket is one read of the bounding box of
its crops; memory stays bounded by `batch` crops plus one bucket region. Detections arrive in tile order, so
a batch of consecutive cells falls into few buckets. Crops reaching past the slide edge are padded with
white (glass), which is what OpenSlide's transparent out-of-slide pixels become in `SlideReader.read_region`;
no pixel is invented inside the slide.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only the code that opens slides imports OpenSlide (see features.smear.imageops)
    from features.sources.openslide_reader import SlideReader


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """n_out x n_in weights: box (area) integration when shrinking, linear interpolation when enlarging."""
    scale = n_in / n_out
    if scale >= 1.0:
        lo = np.arange(n_out)[:, None] * scale
        hi = lo + scale
        j = np.arange(n_in)[None, :]
        overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
        return (overlap / scale).astype(np.float32)
    pos = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0, n_in - 1)
    left = np.floor(pos).astype(int)
    right = np.minimum(left + 1, n_in - 1)
    frac = pos - left
    m = np.zeros((n_out, n_in), np.float32)
    np.add.at(m, (np.arange(n_out), left), 1 - frac)
    np.add.at(m, (np.arange(n_out), right), frac)
    return m


def _taps(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A sparse resize matrix as per-output taps: indices and weights, each n_out x T (T = widest row)."""
    width = int((matrix > 0).sum(axis=1).max())
    idx = np.argsort(~(matrix > 0), axis=1, kind="stable")[:, :width]
    return idx, np.take_along_axis(matrix, idx, axis=1)


def _resize_axis(x: np.ndarray, idx: np.ndarray, wt: np.ndarray, axis: int) -> np.ndarray:
    shape = [1] * x.ndim
    shape[axis] = -1
    out = np.take(x, idx[:, 0], axis=axis).astype(np.float32)
    out *= wt[:, 0].reshape(shape)
    for t in range(1, idx.shape[1]):
        tap = np.take(x, idx[:, t], axis=axis).astype(np.float32)
        tap *= wt[:, t].reshape(shape)
        out += tap
    return out


def resize_batch(images: np.ndarray, out_h: int, out_w: int, chunk: int = 16) -> np.ndarray:
    """N x H x W x C uint8 -> N x out_h x out_w x C uint8, one axis at a time as a weighted sum of a few
    gathered columns/rows (2 taps enlarging, ~scale+1 shrinking). Vectorised over the batch; `chunk` images at
    a time keep the float intermediates in cache (memory traffic, not arithmetic, is the cost here)."""
    n, h, w, c = images.shape
    if (h, w) == (out_h, out_w):
        return images
    col_idx, col_wt = _taps(resize_matrix(w, out_w))
    row_idx, row_wt = _taps(resize_matrix(h, out_h))
    out = np.empty((n, out_h, out_w, c), np.uint8)
    for s in range(0, n, chunk):
        x = _resize_axis(images[s : s + chunk], col_idx, col_wt, axis=2)
        x = _resize_axis(x, row_idx, row_wt, axis=1)
        # Weights are non-negative and sum to 1, so values stay in [0, 255]: round half up, no clip needed.
        x += 0.5
        out[s : s + chunk] = x
    return out


def _plan(reader: SlideReader, crop_um: float, out_px: int) -> tuple[int, float, int]:
    """(level, level downsample, crop side in level px) for crops of `crop_um` shown at `out_px`."""
    crop0 = crop_um / reader.mpp
    level = reader.best_level(crop0 / out_px)
    level_ds = reader.level_downsamples[level]
    return level, level_ds, max(1, round(crop0 / level_ds))


def iter_crops(
    reader: SlideReader, xy: np.ndarray, crop_um: float, out_px: int, batch: int = 256, group_px: int = 1024
) -> Iterator[np.ndarray]:
    """Crops of consecutive `batch`-sized slices of `xy` (N x 2 level-0 x, y), in input order."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    level, level_ds, side = _plan(reader, crop_um, out_px)
    for start in range(0, len(xy), batch):
        yield _read_batch(reader, xy[start : start + batch], level, level_ds, side, out_px, group_px)


def read_crops(reader: SlideReader, xy: np.ndarray, crop_um: float, out_px: int) -> np.ndarray:
    """N x out_px x out_px x 3 uint8 crops of `crop_um` centred on each level-0 (x, y)."""
    parts = list(iter_crops(reader, xy, crop_um, out_px))
    return np.concatenate(parts) if parts else np.zeros((0, out_px, out_px, 3), np.uint8)


def _read_batch(
    reader: SlideReader, xy: np.ndarray, level: int, level_ds: float, side: int, out_px: int, group_px: int
) -> np.ndarray:
    # Top-left corner of every crop in level pixels (the crop centre is the pixel centre nearest to xy).
    tl = np.round(xy / level_ds - side / 2).astype(np.int64)
    key = tl // group_px
    _, group = np.unique(key, axis=0, return_inverse=True)
    group = group.ravel()
    raw = np.empty((len(xy), side, side, 3), np.uint8)
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    ar = np.arange(side)
    for members in np.split(order, bounds):
        lo = tl[members].min(axis=0)
        hi = tl[members].max(axis=0) + side
        region = reader.read_region(
            round(lo[0] * level_ds), round(lo[1] * level_ds), int(hi[0] - lo[0]), int(hi[1] - lo[1]), level
        )
        off = tl[members] - lo
        raw[members] = region[
            off[:, 1, None, None] + ar[None, :, None], off[:, 0, None, None] + ar[None, None, :]
        ]
    return resize_batch(raw, out_px, out_px)
