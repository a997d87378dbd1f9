"""The fast batch image operations behind cytomorph, each against a slow, obvious twin (scipy or a loop)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import ConvexHull

from features.encoders import morph_ops as M


@pytest.fixture(scope="module")
def masks() -> np.ndarray:
    """Blobby random masks with holes, several components and pixels on the border."""
    rng = np.random.default_rng(0)
    noise = ndimage.gaussian_filter(rng.random((12, 40, 40)), (0, 2.5, 2.5))
    return noise > np.quantile(noise, 0.55, axis=(1, 2), keepdims=True)


def test_erode_dilate_match_scipy_with_background_outside(masks):
    square = np.ones((1, 3, 3), bool)
    for r in (1, 2):
        expected_e = ndimage.binary_erosion(masks, square, iterations=r, border_value=0)
        expected_d = ndimage.binary_dilation(masks, square, iterations=r)
        np.testing.assert_array_equal(M.erode(masks, r), expected_e)
        np.testing.assert_array_equal(M.dilate(masks, r), expected_d)


def test_euler_number_is_components_minus_holes(masks):
    eight = np.ones((3, 3), bool)
    for img, e in zip(masks, M.euler_number(masks), strict=True):
        components = ndimage.label(img, eight)[1]
        holes = ndimage.label(~np.pad(img, 1))[1] - 1  # 4-connected background, minus the outer one
        assert e == components - holes


def test_fill_holes_matches_scipy_per_image(masks):
    expected = np.stack([ndimage.binary_fill_holes(m) for m in masks])
    np.testing.assert_array_equal(M.fill_holes(masks), expected)


def test_labels_never_join_images():
    stack = np.ones((3, 5, 5), bool)  # every image full: one component each, not one for the stack
    labels, n = M.label(stack)
    assert n == 3 and len(np.unique(labels)) == 3


def test_hull_area_close_to_scipy_convex_hull(masks):
    support = M.hull_support(masks)
    areas = M.hull_area(support)
    for img, area in zip(masks, areas, strict=True):
        ys, xs = np.nonzero(img)
        corners = np.concatenate(
            [np.stack([xs + dx, ys + dy], 1) for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)]
        )
        exact = ConvexHull(corners).volume
        assert exact <= area * 1.001 and area <= exact * 1.04  # circumscribed 16-gon: slightly larger
    assert M.hull_area(M.hull_support(np.zeros((1, 8, 8), bool)))[0] == 0


def test_hull_mask_contains_the_shape(masks):
    hull = M.hull_mask(M.hull_support(masks), masks.shape[1:])
    assert not (masks & ~hull).any()


def _between_class_variance(x: np.ndarray, c: float) -> float:
    """Otsu's criterion for splitting the values x at c."""
    return (x < c).mean() * (x >= c).mean() * (x[x < c].mean() - x[x >= c].mean()) ** 2


def test_otsu_matches_exhaustive_search():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(1, 0.2, (4, 300)), rng.normal(3, 0.4, (4, 200))], axis=1)
    mask = rng.random(values.shape) < 0.9
    thr = M.otsu(values, mask, nbins=256)
    for v, m, t in zip(values, mask, thr, strict=True):
        x = np.sort(v[m])
        best = max(_between_class_variance(x, c) for c in (x[1:] + x[:-1]) / 2)
        assert (
            _between_class_variance(x, t) >= 0.995 * best
        )  # the optimum is flat across the gap; the score is what counts
        assert 1.3 < t < 2.4
    assert np.isinf(M.otsu(values, np.zeros_like(mask))).all()


def test_box_mean_block_sum_and_local_maxima_against_loops():
    rng = np.random.default_rng(2)
    x = rng.random((2, 10, 12)).astype(np.float32)
    box = M.box_mean(x, 1)
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    slow = np.stack(
        [[[p[b, i : i + 3, j : j + 3].mean() for j in range(12)] for i in range(10)] for b in range(2)]
    )
    np.testing.assert_allclose(box, slow, rtol=1e-5)
    rgb = rng.integers(0, 256, (2, 10, 12, 3), dtype=np.uint8)
    np.testing.assert_array_equal(M.block_sum2(rgb), rgb.astype(int).reshape(2, 5, 2, 6, 2, 3).sum((2, 4)))
    peaks = M.local_maxima(x)
    footprint = np.ones((1, 3, 3), bool)
    footprint[0, 1, 1] = False
    slow_peaks = x > ndimage.maximum_filter(x, footprint=footprint, mode="constant", cval=np.inf)
    np.testing.assert_array_equal(peaks, slow_peaks)


def test_moments_and_perimeter_of_a_disc_and_a_bar():
    yy, xx = np.mgrid[0:60, 0:60]
    disc = (np.hypot(yy - 30, xx - 30) < 20)[None]
    bar = ((abs(yy - 30) < 3) & (abs(xx - 30) < 25))[None]
    area, cy, cx, elong = M.moments(np.concatenate([disc, bar]))
    assert abs(cy[0] - 30) < 0.01 and abs(cx[0] - 30) < 0.01
    assert elong[0] < 0.02 and elong[1] > 0.85
    assert abs(M.perimeter(disc)[0] - 2 * np.pi * 20) / (2 * np.pi * 20) < 0.08
