"""Crop reading: physical size, centring, white padding at borders, grouped reads, and the resize's slow twin."""

from __future__ import annotations

import numpy as np
import pytest

from features.smear.crops import iter_crops, read_crops, resize_batch
from features.sources.openslide_reader import SlideReader
from tests.smear_painter import trail_slide, write_tiff


def _slow_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Reference twin, per pixel in float64: exact area average when shrinking (each output pixel integrates
    its footprint), bilinear with half-pixel centres when enlarging, separately per axis."""

    def axis_weights(n_in: int, n_out: int) -> np.ndarray:
        m = np.zeros((n_out, n_in))
        s = n_in / n_out
        for i in range(n_out):
            if s >= 1:
                lo, hi = i * s, (i + 1) * s
                for j in range(n_in):
                    m[i, j] = max(0.0, min(hi, j + 1) - max(lo, j)) / s
            else:
                p = min(max((i + 0.5) * s - 0.5, 0), n_in - 1)
                j = int(np.floor(p))
                m[i, j] += 1 - (p - j)
                m[i, min(j + 1, n_in - 1)] += p - j
        return m

    rows, cols = axis_weights(img.shape[0], out_h), axis_weights(img.shape[1], out_w)
    return np.stack([rows @ img[..., c].astype(np.float64) @ cols.T for c in range(img.shape[2])], axis=-1)


@pytest.mark.parametrize(
    "size_in,size_out", [((60, 60), (224, 224)), ((120, 90), (50, 40)), ((37, 37), (37, 20))]
)
def test_resize_equals_slow_twin(size_in, size_out):
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, *size_in, 3), dtype=np.uint8)
    fast = resize_batch(batch, *size_out, chunk=2)
    for k in range(3):
        assert np.abs(fast[k] - _slow_resize(batch[k], *size_out)).max() <= 0.5 + 1e-3


def test_resize_preserves_a_constant_image():
    batch = np.full((2, 33, 47, 3), 123, np.uint8)
    assert (resize_batch(batch, 224, 224) == 123).all() and (resize_batch(batch, 10, 7) == 123).all()


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    painted = trail_slide(800, 600, mpp=0.5, seed=4)
    path = write_tiff(tmp_path_factory.mktemp("crops") / "s.tiff", painted.image, painted.mpp, levels=2)
    with SlideReader(path) as reader:
        yield reader, painted


def test_crop_is_centred_with_fixed_physical_size(slide):
    reader, painted = slide
    xy = np.round(np.array(painted.cells[:20])).astype(np.int64)
    crops = read_crops(reader, xy, crop_um=32.0, out_px=64)
    assert crops.shape == (20, 64, 64, 3) and crops.dtype == np.uint8
    # the nucleus (dark in red and green) sits at the centre: its darkness-weighted centroid is near (32, 32)
    dark = (np.maximum(crops[..., 0], crops[..., 1]) < 130).astype(float)
    yy, xx = np.mgrid[0:64, 0:64]
    cy = (dark * yy).sum((1, 2)) / dark.sum((1, 2))
    cx = (dark * xx).sum((1, 2)) / dark.sum((1, 2))
    assert np.abs(cx - 31.5).max() < 3 and np.abs(cy - 31.5).max() < 3  # 3 px = 1.5 µm


def test_one_crop_equals_a_direct_read(slide):
    reader, _ = slide
    # 20 µm at 0.5 µm/px is 40 px: no resize, so the crop is exactly the region
    crop = read_crops(reader, np.array([[400, 300]]), crop_um=20.0, out_px=40)[0]
    np.testing.assert_array_equal(crop, reader.read_region(380, 280, 40, 40))


def test_border_crops_are_padded_with_white(slide):
    reader, _ = slide
    crop = read_crops(reader, np.array([[0, 0]]), crop_um=20.0, out_px=40)[0]
    assert (crop[:18, :18] == 255).all()  # the quadrant before the slide's origin is glass-white
    assert crop[22:, 22:].mean() < 250  # the slide itself is there


def test_batches_and_groups_give_identical_crops(slide, monkeypatch):
    reader, painted = slide
    xy = np.round(np.array(painted.cells)).astype(np.int64)
    reads = []
    original = reader.read_region
    monkeypatch.setattr(reader, "read_region", lambda *a, **k: reads.append(a) or original(*a, **k))
    together = np.concatenate(list(iter_crops(reader, xy, 30.0, 48, batch=len(xy))))
    n_grouped = len(reads)
    one_by_one = np.concatenate(list(iter_crops(reader, xy, 30.0, 48, batch=1)))
    np.testing.assert_array_equal(together, one_by_one)
    assert n_grouped <= 4 < len(xy)  # grouped: one read per 1024 px bucket, not one per cell
    assert read_crops(reader, np.zeros((0, 2)), 30.0, 48).shape == (0, 48, 48, 3)


def test_coarse_output_reads_a_coarser_level(slide, monkeypatch):
    reader, _ = slide
    levels = []
    original = reader.read_region
    monkeypatch.setattr(reader, "read_region", lambda *a, **k: levels.append(a[4]) or original(*a, **k))
    read_crops(reader, np.array([[400, 300]]), crop_um=64.0, out_px=32)  # 128 level-0 px -> 32 px: level 1
    assert levels == [1]
