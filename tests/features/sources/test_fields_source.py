"""The `fields` source: patient folders of field images, reading them, telling fields from crops, manifests."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from features.core.errors import InputError, SlideError
from features.sources import detect_source, discover
from features.sources.fields import FieldImage, FieldsRef, read_field_image, recognise
from features.synth import SynthConfig, generate_cohort
from tests.paths import DATA


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Two patients with cell crops and, in a second cohort, two with 480 x 360 px fields (0.25 µm/px)."""
    root = tmp_path_factory.mktemp("synth")
    cfg = dict(patients=2, sites=1, seed=5)
    generate_cohort(root / "crops", SynthConfig(**cfg, layout="cells", cells_per_patient=3))
    generate_cohort(root / "fields", SynthConfig(**cfg, layout="fields", fields_per_patient=2, field_px=480))
    return root


def test_discover_fields_one_bag_per_patient(synth, tmp_path):
    refs = discover(synth / "fields" / "fields", source="fields", mpp=0.25)
    assert [r.slide_id for r in refs] == ["P001", "P002"]
    assert all(
        isinstance(r, FieldsRef) and r.kind == "fields" and r.images == ("1.jpg", "2.jpg") for r in refs
    )
    assert refs[0].mpp_of(0) == (0.25, "user")
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(loose / "a.png")
    with pytest.raises(InputError, match="lie directly in it"):
        discover(loose, source="fields")


def test_auto_tells_fields_from_crops(synth):
    assert detect_source(synth / "fields" / "fields") == "fields"
    assert detect_source(synth / "crops" / "cells") == "cells"  # 96 px crops: no decoding needed
    assert recognise(synth / "fields" / "fields", mpp=0.25) == "fields"


def test_auto_refuses_what_it_cannot_tell(tmp_path):
    for p in ("A", "B"):
        (tmp_path / p).mkdir()
        Image.fromarray(np.full((400, 400, 3), (230, 225, 235), np.uint8)).save(tmp_path / p / "1.png")
    with pytest.raises(InputError, match="--source cells or --source fields"):
        detect_source(tmp_path)


@pytest.mark.skipif(not (DATA / "bccd").is_dir(), reason="shared data not present")
def test_auto_on_real_crops_and_fields(tmp_path):
    for name, folder, count in (("pbc", DATA / "pbc-subset" / "neutrophil", 4), ("bccd", DATA / "bccd" / "BCCD" / "JPEGImages", 4)):  # fmt: skip
        patient = tmp_path / name / "P1"
        patient.mkdir(parents=True)
        for image in sorted(folder.glob("*.jpg"))[:count]:
            (patient / image.name).symlink_to(image)
    assert detect_source(tmp_path / "pbc") == "cells"  # CellaVision crops: ~5 red cells across
    assert detect_source(tmp_path / "bccd") == "fields"  # camera fields: ~7


def test_read_field_image_refuses_grey_and_unreadable(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "ok.png")
    assert read_field_image(tmp_path / "ok.png").shape == (40, 50, 3)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(np.repeat(rgb[..., :1], 3, axis=2)).save(tmp_path / "grey_rgb.jpg")
    for name in ("grey.png", "grey_rgb.jpg"):
        with pytest.raises(SlideError, match="grayscale image"):
            read_field_image(tmp_path / name)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SlideError, match="bad.jpg: cannot read image"):
        read_field_image(tmp_path / "bad.jpg")
    rgba = np.dstack([rgb, np.zeros((40, 50), np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    assert (read_field_image(tmp_path / "clear.png") == 255).all()  # transparent = glass


def test_field_image_reads_like_a_slide():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    with FieldImage(rgb, 0.1, "user") as reader:
        assert reader.dimensions == (5, 4) and reader.best_level(8.0) == 0
        region = reader.read_region(-1, -1, 3, 3)
        assert (region[0] == 255).all() and (region[1:, 1:] == rgb[:2, :2]).all()
        small, ds = reader.read_downsampled(0.2)
        assert ds == 2.0 and small.shape == (2, 3, 3)


def test_manifest_rows_of_fields_form_one_bag_per_patient(synth, tmp_path):
    fields = synth / "fields" / "fields"
    rgb = np.asarray(Image.open(fields / "P001" / "1.jpg"))
    tifffile.imwrite(tmp_path / "plain.tif", rgb)  # an untiled camera TIFF is a field, not a slide
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "slide_id,patient_id,path,mpp\n"
        f"a,X,{fields / 'P001' / '1.jpg'},0.25\n"
        f"b,X,{fields / 'P002' / '2.jpg'},\n"
        f"c,Y,plain.tif,0.3\n"
        f"d,Z,{fields / 'P002'},0.25\n"
    )
    refs = {r.slide_id: r for r in discover(manifest)}
    assert set(refs) == {"X", "Y", "d"}
    x = refs["X"]
    assert x.kind == "fields" and x.path == fields.resolve() and x.images == ("P001/1.jpg", "P002/2.jpg")
    assert x.mpp_of(0) == (0.25, "manifest") and x.mpp_of(1) == (None, "manifest")
    assert refs["Y"].images == ("plain.tif",) and refs["Y"].mpp_of(0)[0] == 0.3
    assert refs["d"].kind == "fields" and refs["d"].images == ("1.jpg", "2.jpg")
