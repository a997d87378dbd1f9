"""`--source auto` (features.sources.detect): nested slides, folders that mix kinds, images outside patient
folders, plain TIFFs, and fields whose red cells are hard to measure."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from features.core.errors import InputError
from features.sources import detect_source, discover
from tests.paths import DATA


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def _png(path, side=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((side, side, 3), (200, 120, 130), np.uint8)).save(path)
    return path


def test_slides_in_patient_sub_folders_are_found(tmp_path):
    _touch(tmp_path / "P1" / "s1.svs")
    _touch(tmp_path / "P2" / "deeper" / "s2.ndpi")
    assert detect_source(tmp_path) == "slides"
    assert [r.slide_id for r in discover(tmp_path)] == ["s1", "s2"]
    tiled = tmp_path / "tiled"
    tifffile.imwrite(_touch(tiled / "P3" / "s3.tif"), np.zeros((64, 64, 3), np.uint8), tile=(16, 16))
    assert detect_source(tiled) == "slides"  # a tiled TIFF is a slide, also one folder down


def test_a_folder_mixing_kinds_is_refused_naming_both(tmp_path):
    mix = tmp_path / "mix"
    _png(mix / "P1" / "cell.png")
    _touch(mix / "slide.svs")
    with pytest.raises(InputError) as err:
        detect_source(mix)
    message = str(err.value)
    assert "\n" not in message and message.startswith(
        f"{mix}: mixes 1 whole-slide file (slide.svs) with 1 folder"
    )
    assert "(P1)" in message and "--source slides, cells or fields" in message
    h5 = tmp_path / "h5"
    _png(h5 / "P1" / "cell.png")
    _touch(h5 / "x.h5")
    with pytest.raises(
        InputError, match=r"mixes 1 \.h5 feature file \(x\.h5\) with 1 folder .*--source h5, cells"
    ):
        detect_source(h5)
    nested = tmp_path / "nested"
    _touch(nested / "P1" / "s1.svs")
    _png(nested / "P2" / "cell.png")
    with pytest.raises(InputError, match=r"mixes 1 whole-slide file \(P1/s1\.svs\) with 1 folder .*\(P2\)"):
        detect_source(nested)
    # the explicit source still reads its own kind from the mix
    assert [r.slide_id for r in discover(mix, source="slides")] == ["slide"]
    vms = tmp_path / "vms"
    _touch(vms / "s.vms")
    _png(vms / "s_0_0.jpg")  # no mix: Hamamatsu VMS is an index file and its JPEG tiles side by side
    assert detect_source(vms) == "slides"


def test_images_outside_patient_folders_are_refused(tmp_path):
    _png(tmp_path / "P1" / "cell.png")
    _png(tmp_path / "stray.png")
    with pytest.raises(
        InputError, match=r"1 image directly in it \(stray\.png\) beside 1 folder.*move each image"
    ):
        detect_source(tmp_path)


def test_a_plain_tiff_outside_patient_folders_gets_the_fields_fix(tmp_path):
    rgb = np.full((300, 400, 3), (236, 231, 241), np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", rgb)  # untiled, single page: a camera field, not a slide
    with pytest.raises(
        InputError, match=r"1 image\(s\) lie directly in it: put each patient's .* in a sub-folder"
    ):
        detect_source(tmp_path)
    with pytest.raises(InputError, match="a.tif: one image, not a slide; put each patient's"):
        detect_source(tmp_path / "a.tif")
    slides = tmp_path / "slides"
    tifffile.imwrite(_touch(slides / "a.tif"), rgb)
    _touch(slides / "b.svs")
    assert detect_source(slides) == "slides"  # beside a slide it is taken for one (and fails alone at open)
    crops = tmp_path / "crops" / "P1"
    crops.mkdir(parents=True)
    (crops / "00 unreadable.tif").write_bytes(b"not a tiff")  # a damaged crop is no slide: left out alone
    for i in range(20):
        tifffile.imwrite(crops / f"{i:02}.tif", rgb[:96, :96])
    assert detect_source(crops.parent) == "cells"


def test_large_images_without_measurable_red_cells_are_fields(tmp_path):
    for p in ("A", "B"):  # no red cell to measure, but no single-cell export is 1400 px wide
        (tmp_path / p).mkdir()
        Image.fromarray(np.full((1050, 1400, 3), (230, 225, 235), np.uint8)).save(tmp_path / p / "1.png")
    assert detect_source(tmp_path) == "fields"


@pytest.mark.skipif(not (DATA / "bccd").is_dir(), reason="shared data not present")
def test_crowded_bccd_fields_are_recognised(tmp_path):
    """BCCD's first fields hold few separate red cells (none or one each): 8 decoded images found too few."""
    images = sorted((DATA / "bccd" / "BCCD" / "JPEGImages").glob("*.jpg"))[:15]
    for n, image in enumerate(images):
        folder = tmp_path / f"F{n % 3}"
        folder.mkdir(exist_ok=True)
        os.symlink(image, folder / image.name)
    assert detect_source(tmp_path) == "fields"


def test_a_macos_archive_folder_is_not_a_patient(tmp_path):
    """Unzipping a macOS archive leaves `__MACOSX/` (resource forks named like the images) beside the
    patients: it is not data, neither a patient nor a mix."""
    for p in ("P1", "P2"):
        _png(tmp_path / p / "a.png", side=64)
        _touch(tmp_path / "__MACOSX" / p / "._a.png")
    _touch(tmp_path / "P1" / "__MACOSX" / "._a.png")
    assert detect_source(tmp_path) == "cells"
    refs = discover(tmp_path)
    assert [r.slide_id for r in refs] == ["P1", "P2"] and all(r.images == ("a.png",) for r in refs)


def test_oblong_images_are_not_taken_for_crops_on_their_red_cells_alone(tmp_path, monkeypatch):
    """Crops are square around their cell; 4:3 images whose measured red cells say "crop" (a few large
    objects taken for red cells, BCCD images 215-219) are refused with the fix, never read one cell per field."""
    from features.sources import fields

    monkeypatch.setattr(fields, "_red_cell_px", lambda rounds: (150.0, " in 5 image(s)"))  # ~4.3 across
    oblong = [_png(tmp_path / "oblong" / f"{i}.png", side=1) for i in range(5)]
    for path in oblong:
        Image.new("RGB", (640, 480), (200, 120, 130)).save(path)
    with pytest.raises(InputError, match=r"1\.33:1 like a camera field.*--source cells or --source fields"):
        fields.recognise_images(oblong, None, "oblong")
    square = [tmp_path / "square" / f"{i}.png" for i in range(5)]
    for path in square:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (640, 640), (200, 120, 130)).save(path)
    assert fields.recognise_images(square, None, "square") == "cells"
