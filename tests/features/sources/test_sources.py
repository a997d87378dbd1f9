"""Sources and the slide reader: discovery of slides / cell folders / manifests, mpp provenance, broken files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from features.core.errors import ConfigError, InputError, SlideError
from features.smear.imageops import block_mean
from features.sources import SOURCES, detect_source, discover
from features.sources.cells import read_cell_image
from features.sources.openslide_reader import SlideReader, resolve_mpp
from tests.paths import DATA  # noqa: E402
from tests.smear_painter import trail_slide, write_tiff

FIX = DATA / "openslide-fixtures"


def fixture(name: str) -> Path:
    path = FIX / name
    if not path.exists():
        pytest.skip(f"test data {path} not present")
    return path


def test_registry_names():
    assert {"slides", "cells", "manifest"} <= set(SOURCES.names())
    with pytest.raises(ConfigError, match="Registered"):
        discover(Path("."), source="nope")


# ---- reader: real fixtures ------------------------------------------------------------------------------


def test_small_svs_dimensions_and_mpp():
    with SlideReader(fixture("small.svs")) as r:
        assert r.dimensions == (16, 16)
        assert r.mpp == pytest.approx(0.499)
        assert r.mpp_source == "openslide.mpp-x"
        region = r.read_region(0, 0, 16, 16)
        assert region.shape == (16, 16, 3) and region.dtype == np.uint8


def test_boxes_tiff_levels_and_tiff_resolution():
    # 28.3465 px/cm in the TIFF tags (a 72 dpi placeholder, 352.8 µm/px): no smear's pixel size, refused in one
    # line naming its source key and the fix; an override opens it.
    with pytest.raises(
        SlideError, match=r"mpp 352\.778 µm/px \(from openslide.mpp-x\) is implausible.*--mpp"
    ):
        SlideReader(fixture("boxes.tiff"))
    with SlideReader(fixture("boxes.tiff"), mpp=0.5, mpp_source="user") as r:
        assert r.dimensions == (300, 250)
        assert r.level_count == 4
        img, ds = r.read_downsampled(r.mpp * 4)  # level 2 is 4.016x: too coarse, so level 1 halved
        assert ds == 4.0 and img.shape == (63, 75, 3)
        img, ds = r.read_downsampled(r.mpp * 4.1)
        assert ds == pytest.approx(r.level_downsamples[2]) and img.shape == r.level_dimensions[2][::-1] + (3,)


def test_dicom_series_is_one_slide(tmp_path):
    folder = tmp_path / "case 7, dicom"
    folder.mkdir()
    for name in ("boxes_0.dcm", "boxes_1.dcm"):
        shutil.copy(fixture(name), folder / name)
    refs = discover(tmp_path)
    assert len(refs) == 1
    assert refs[0].slide_id == "case 7, dicom" and refs[0].path.suffix == ".dcm"
    with SlideReader(refs[0].path) as r:
        assert r.dimensions == (16, 16)
        assert r.mpp == pytest.approx(0.499)


def test_unopenable_is_one_line_slide_error():
    with pytest.raises(SlideError) as err:
        SlideReader(fixture("unopenable.tiff"))
    message = str(err.value)
    assert message.startswith("unopenable.tiff:") and "\n" not in message


def test_unreadable_region_names_slide_and_location():
    with SlideReader(fixture("unreadable.svs")) as r:
        with pytest.raises(SlideError) as err:
            r.read_region(2, 3, 8, 8)
    message = str(err.value)
    assert message.startswith("unreadable.svs:") and "x=2 y=3" in message and "\n" not in message


# ---- reader: mpp ----------------------------------------------------------------------------------------


def test_resolve_mpp_order_units_and_override():
    assert resolve_mpp({"aperio.MPP": "0.25", "openslide.mpp-x": "0.5"}, None, None) == (
        0.5,
        "openslide.mpp-x",
    )
    assert resolve_mpp({"openslide.mpp-x": "garbage", "aperio.MPP": "0.25"}, None, None) == (
        0.25,
        "aperio.MPP",
    )
    cm = {"tiff.XResolution": "40000", "tiff.ResolutionUnit": "centimeter"}
    assert resolve_mpp(cm, None, None) == (pytest.approx(0.25), "tiff.XResolution")
    inch = {"tiff.XResolution": "101600", "tiff.ResolutionUnit": "inch"}
    assert resolve_mpp(inch, None, None)[0] == pytest.approx(0.25)
    assert resolve_mpp({"tiff.XResolution": "72", "tiff.ResolutionUnit": "none"}, None, None) == (None, None)
    key = "dicom.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing[1]"
    assert resolve_mpp({key: ".000499"}, None, None)[0] == pytest.approx(0.499)
    philips = {"philips.DICOM_PIXEL_SPACING": '"0.000227" "0.000227"'}
    assert resolve_mpp(philips, None, None)[0] == pytest.approx(0.227)
    assert resolve_mpp({"openslide.mpp-x": "0"}, None, None) == (None, None)
    assert resolve_mpp({"openslide.mpp-x": "0.5"}, 0.3, "manifest") == (0.3, "manifest")


def test_slide_without_mpp_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "nompp.tiff"
    tifffile.imwrite(path, np.full((256, 256, 3), 200, np.uint8), tile=(128, 128), photometric="rgb")
    with pytest.raises(SlideError, match="pass --mpp or an mpp column in a manifest"):
        SlideReader(path)
    with SlideReader(path, mpp=0.5, mpp_source="user") as r:
        assert (r.mpp, r.mpp_source) == (0.5, "user")


def test_read_downsampled_is_chunk_independent_and_exact(tmp_path):
    painted = trail_slide(600, 500, mpp=0.5)
    path = write_tiff(tmp_path / "s.tiff", painted.image, 0.5, levels=1)
    with SlideReader(path) as r:
        big, ds = r.read_downsampled(4.0)
        small, ds2 = r.read_downsampled(4.0, chunk_px=64)
    assert ds == ds2 == 8.0 and big.shape == (63, 75, 3)
    np.testing.assert_array_equal(big, small)
    np.testing.assert_array_equal(big, block_mean(painted.image, 8))


def test_outside_the_slide_reads_white(tmp_path):
    path = write_tiff(tmp_path / "s.tiff", np.zeros((256, 256, 3), np.uint8), 0.5, levels=1)
    with SlideReader(path) as r:
        region = r.read_region(200, 200, 100, 100)
    assert (region[:56, :56] == 0).all() and (region[60:, 60:] == 255).all()


# ---- discovery --------------------------------------------------------------------------------------------


def _touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    return path


def test_slides_folder_recursive_with_unique_ids(tmp_path):
    _touch(tmp_path / "a.svs")
    _touch(tmp_path / "b.NDPI")
    _touch(tmp_path / "sub" / "a.svs")
    _touch(tmp_path / "notes.txt")
    _touch(tmp_path / ".hidden" / "c.svs")
    refs = discover(tmp_path, mpp=0.25)
    assert [r.slide_id for r in refs] == ["a.svs", "b", "sub/a.svs"]
    assert all(r.kind == "slide" and r.mpp == 0.25 and r.mpp_source == "user" for r in refs)
    assert all(r.patient_id == r.slide_id for r in refs)


def test_cells_folders_any_depth_odd_names(tmp_path):
    _png(tmp_path / "Patient 1, AML" / "run 2" / "img B.PNG")
    _png(tmp_path / "Patient 1, AML" / "img a.jpg")
    _touch(tmp_path / "Patient 1, AML" / "._img a.jpg")
    _touch(tmp_path / "Patient 1, AML" / "metadata.csv")
    _png(tmp_path / "P2" / "x.tif")
    (tmp_path / "P3 empty").mkdir()
    assert detect_source(tmp_path) == "cells"
    refs = discover(tmp_path)
    assert [r.slide_id for r in refs] == ["P2", "P3 empty", "Patient 1, AML"]
    assert refs[2].images == ("img a.jpg", "run 2/img B.PNG") and refs[2].kind == "cells"
    assert refs[1].images == ()  # reported as failed by the extractor, not dropped silently
    assert refs[2].patient_id == "Patient 1, AML"


def test_manifest_paths_patients_and_mpp(tmp_path):
    _touch(tmp_path / "slides" / "s1.svs")
    _touch(tmp_path / "slides" / "s2.ndpi")
    _png(tmp_path / "cells" / "P9" / "c.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "slide_id,path,patient_id,mpp\nS1,slides/s1.svs,P1,0.5\nS2,slides/s2.ndpi,P1,\nC,cells/P9,,\n"
    )
    refs = discover(manifest, mpp=0.3)
    assert [(r.slide_id, r.patient_id, r.kind, r.mpp, r.mpp_source) for r in refs] == [
        ("S1", "P1", "slide", 0.5, "manifest"),
        ("S2", "P1", "slide", 0.3, "user"),
        ("C", "C", "cells", 0.3, "user"),
    ]
    assert refs[2].images == ("c.png",)


def test_manifest_malformed_rows_refuse_the_file_in_one_line(tmp_path):
    _touch(tmp_path / "ok.svs")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "slide_id,path,mpp\nA,ok.svs,\nB,missing.svs,\nA,ok.svs,\nD,ok.svs,-1\nE,notes.txt,\nF,ok.svs,abc\n"
        "G,ok.svs,,extra\n"
    )
    _touch(tmp_path / "notes.txt")
    with pytest.raises(InputError) as err:
        discover(manifest)
    assert str(err.value) == (
        f"{manifest}: 4 bad rows, fix or remove them: "
        "row 4: slide_id 'A' already on row 2; "
        "row 5: ok.svs: mpp -1 µm/px is implausible; smears are scanned at 0.1–2 (photographed down to 0.02); "
        "row 7: ok.svs: mpp 'abc' is not a number (µm/px); "
        "row 8: 4 fields, header has 3"
    )


def test_manifest_rows_whose_file_is_unusable_fail_alone(tmp_path):
    from features.sources.manifest import UNUSABLE, UnusableRow

    _touch(tmp_path / "ok.svs")
    _touch(tmp_path / "notes.txt")
    manifest = tmp_path / "m.csv"
    manifest.write_text("slide_id,path\nA,ok.svs\nB,missing.svs\nE,notes.txt\n")
    refs = {r.slide_id: r for r in discover(manifest)}
    assert refs["A"].kind == "slide" and not isinstance(refs["A"], UnusableRow)
    assert refs["B"].kind == refs["E"].kind == UNUSABLE
    assert refs["B"].problem == (
        f"B: {manifest} row 3: missing.svs: file not found; fix the path or remove the row"
    )
    assert "row 4: notes.txt: notes.txt is not a whole-slide file" in refs["E"].problem
    assert all("\n" not in r.problem for r in (refs["B"], refs["E"]))


def test_manifest_bad_header(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,file\nA,a.svs\n")
    with pytest.raises(InputError, match="missing: slide_id, path"):
        discover(manifest)


def test_empty_or_unknown_input_names_path(tmp_path):
    with pytest.raises(InputError, match=str(tmp_path)):
        discover(tmp_path)
    with pytest.raises(InputError, match="no such file or folder"):
        discover(tmp_path / "nope")
    with pytest.raises(InputError, match="mpp"):
        discover(_touch(tmp_path / "a.svs"), mpp=-1)


def test_auto_detects_kinds(tmp_path):
    _touch(tmp_path / "slides" / "a.mrxs")
    _touch(tmp_path / "dicom" / "case" / "x.dcm")
    _touch(tmp_path / "feats" / "a.h5")
    assert detect_source(tmp_path / "slides") == "slides"
    assert detect_source(tmp_path / "dicom") == "slides"
    assert detect_source(tmp_path / "feats") == "h5"
    assert detect_source(_touch(tmp_path / "m.csv")) == "manifest"


# ---- cell images ------------------------------------------------------------------------------------------


def test_read_cell_image_modes(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3] = 255  # opaque red-ish pixel, the rest transparent -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_cell_image(tmp_path / "a.png")
    assert out.shape == (2, 2, 3) and tuple(out[0, 0]) == (200, 0, 0) and tuple(out[1, 1]) == (255, 255, 255)
    Image.fromarray(np.full((3, 3), 7, np.uint8), "L").save(tmp_path / "g.bmp")
    assert read_cell_image(tmp_path / "g.bmp").shape == (3, 3, 3)
    tifffile.imwrite(tmp_path / "w.tif", np.full((3, 3), 65535, np.uint16))
    assert (read_cell_image(tmp_path / "w.tif") == 255).all()
    with pytest.raises(SlideError, match="broken.jpg"):
        read_cell_image(_touch(tmp_path / "broken.jpg", b"not an image"))
