"""`open_instances`: the sources layer reopens a bag's cells (slide crops at the bag's crop_um, cell images)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from features.bagstore import BagStore
from features.core.errors import SlideError
from features.smear.crops import read_crops
from features.sources import open_instances
from features.sources.cells import read_cell_image
from features.sources.instances import CellInstances, SlideInstances, square
from features.sources.openslide_reader import SlideReader
from tests.mil.explain.cohort import get_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return get_tiny(tmp_path_factory)


def test_slide_crops_are_the_bags_crop_um_and_default_to_its_crop_px(tiny):
    store = BagStore(tiny.slides)
    meta, bag = store.meta("P003_s1"), store.read("P003_s1")
    with open_instances(meta, bag) as source:
        assert isinstance(source, SlideInstances)
        default = source.crops(np.array([2, 0]))
        shown = source.crops(np.array([2, 0]), 40)
        overview = source.overview(max_px=300)
    assert default.shape == (2, meta.crop_px, meta.crop_px, 3) and shown.shape == (2, 40, 40, 3)
    with SlideReader(tiny.synth / "slides" / "P003_s1.tiff") as reader:
        np.testing.assert_array_equal(shown, read_crops(reader, bag.coords[[2, 0]], meta.crop_um, 40))
        width, height = reader.dimensions
    # about max_px: the block average uses a whole factor, never a coarser map than asked
    assert 150 <= max(overview.image.shape[:2]) < 2 * 300 < max(width, height) and overview.mpp == meta.mpp
    assert overview.image.shape[1] == pytest.approx(width / overview.downsample, abs=1)
    assert overview.image.shape[0] == pytest.approx(height / overview.downsample, abs=1)
    assert source.reader._slide is None  # closed on leaving the block


def test_cell_images_are_read_whole_and_have_no_overview(tiny):
    store = BagStore(tiny.cells)
    meta, bag = store.meta("P003"), store.read("P003")
    with open_instances(meta, bag) as source:
        assert isinstance(source, CellInstances) and source.overview() is None
        images = source.crops(np.array([5]), 64)
        default = source.crops(np.array([5]))
    original = read_cell_image(tiny.synth / "cells" / "P003" / bag.paths[5])
    np.testing.assert_array_equal(images[0], square(original, 64))
    np.testing.assert_array_equal(default[0], square(original, meta.crop_px))


def test_square_pads_white_and_keeps_the_aspect():
    wide = np.zeros((10, 20, 3), np.uint8)
    out = square(wide, 20)
    assert out.shape == (20, 20, 3) and (out[:5] == 255).all() and (out[5:15] == 0).all()


def test_sources_without_pixels_or_moved_are_one_line_errors(tiny, tmp_path):
    slides, cells = BagStore(tiny.slides), BagStore(tiny.cells)
    smeta, sbag = slides.meta("P003_s1"), slides.read("P003_s1")
    with pytest.raises(SlideError, match="has no images to show"):
        open_instances(replace(smeta, source_kind="h5"), sbag)
    with pytest.raises(SlideError, match="source slide .* not found"):
        open_instances(replace(smeta, source_path=str(tmp_path / "gone.tiff")), sbag)
    with pytest.raises(SlideError, match="no crop size"):
        open_instances(replace(smeta, crop_um=None), sbag)
    cmeta, cbag = cells.meta("P003"), cells.read("P003")
    with pytest.raises(SlideError, match="source folder .* not found"):
        open_instances(replace(cmeta, source_path=str(tmp_path / "gone")), cbag)
    with pytest.raises(SlideError, match="no crop size in px"):
        open_instances(replace(cmeta, crop_px=None), cbag).crops(np.array([0]))
