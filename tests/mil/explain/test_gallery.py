"""Galleries re-read cells from the SOURCE (cell image files, slide crops), not from the encoder input."""

from __future__ import annotations

import numpy as np
import pytest

from features.bagstore import BagStore
from features.core.errors import SlideError
from features.smear.crops import read_crops, resize_batch
from features.sources.cells import read_cell_image
from features.sources.openslide_reader import SlideReader
from mil.explain.gallery import Section, montage, read_cells, slide_galleries, top_bottom
from tests.mil.explain.cohort import get_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return get_tiny(tmp_path_factory)


def test_top_bottom_orders_and_caps():
    top, bottom = top_bottom(np.array([0.1, 0.5, 0.3, 0.5, 0.0]), 2)
    assert list(top) == [1, 3] and list(bottom) == [4, 0]  # ties keep bag order
    top, bottom = top_bottom(np.array([2.0]), 5)
    assert list(top) == [0] and list(bottom) == [0]


def test_cells_are_the_source_images(tiny):
    store = BagStore(tiny.cells)
    meta, bag = store.meta("P003"), store.read("P003")
    images = read_cells(meta, bag, np.array([5, 0]), display_px=96)
    expected = read_cell_image(tiny.synth / "cells" / "P003" / bag.paths[5])
    assert expected.shape == (96, 96, 3)  # the synthetic crops are 96 px: shown unresized
    np.testing.assert_array_equal(images[0], expected)
    bigger = read_cells(meta, bag, np.array([5]), display_px=128)
    np.testing.assert_array_equal(bigger[0], resize_batch(expected[None], 128, 128)[0])


def test_slide_cells_are_crops_of_the_slide(tiny):
    store = BagStore(tiny.slides)
    meta, bag = store.meta("P003_s1"), store.read("P003_s1")
    images = read_cells(meta, bag, np.array([1, 2]), display_px=64)
    with SlideReader(tiny.synth / "slides" / "P003_s1.tiff") as reader:
        expected = read_crops(reader, bag.coords[[1, 2]], 24.0, 64)
    np.testing.assert_array_equal(images, expected)
    assert images.std() > 5  # real pixels, not a blank tile


def test_missing_source_is_a_slide_error(tiny, tmp_path):
    store = BagStore(tiny.cells)
    meta, bag = store.meta("P003"), store.read("P003")
    from dataclasses import replace

    with pytest.raises(SlideError, match="not found"):
        read_cells(replace(meta, source_path=str(tmp_path / "gone")), bag, np.array([0]), 64)
    slides = BagStore(tiny.slides)
    smeta = slides.meta("P003_s1")
    with pytest.raises(SlideError, match="not found"):
        read_cells(
            replace(smeta, source_path=str(tmp_path / "gone.tiff")), slides.read("P003_s1"), np.array([0]), 64
        )
    with pytest.raises(SlideError, match="no images"):
        read_cells(replace(smeta, source_kind="h5"), slides.read("P003_s1"), np.array([0]), 64)
    with pytest.raises(SlideError, match="no crop size"):  # never a guessed crop size
        read_cells(replace(smeta, crop_um=None), slides.read("P003_s1"), np.array([0]), 64)


def test_montage_layout_and_gallery_per_class(tiny):
    store = BagStore(tiny.cells)
    meta, bag = store.meta("P003"), store.read("P003")
    tiles = np.full((10, 32, 32, 3), 90, np.uint8)
    image = montage(
        [Section("top", tiles, ["#1\na.png"] * 10), Section("bottom", tiles[:0], [])], "title", columns=4
    )
    assert image.size[0] == 4 * 36 + 4 and image.size[1] > 3 * 32
    values = {
        "APL": np.arange(len(bag.features), dtype=float),
        "AML": -np.arange(len(bag.features), dtype=float),
    }
    out = slide_galleries(meta, bag, values, top_k=3, display_px=48)
    assert set(out) == {"APL", "AML"} and out["APL"].size == out["AML"].size
    assert np.asarray(out["APL"]).std() > 5
