"""Import of CLAM / TRIDENT / STAMP .h5 feature files: layouts written here the way each tool writes them
(read from their code), so a change in our reader that misplaces coordinates or units fails loudly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from features.bagstore import BagStore
from features.pipeline.config import ExtractConfig
from features.pipeline.extract import extract
from features.sources.h5 import grid_stride, read_h5_bag
from mil.cli import app

D = 8
TOPLEFT = np.array([[0, 0], [256, 0], [512, 256], [768, 512]], np.int64)  # a 256-px grid, level 0


def _feats(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


def write_trident(path: Path, seed: int = 0) -> np.ndarray:
    feats = _feats(len(TOPLEFT), seed)
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=feats).attrs.update({"name": path.stem, "savetodir": "x"})
        c = f.create_dataset("coords", data=TOPLEFT)
        c.attrs.update(
            {
                "patch_size": 256,
                "patch_size_level0": 512,  # 20x patches on a 40x slide
                "level0_magnification": 40,
                "target_magnification": 20,
                "overlap": 0,
                "name": path.stem,
                "level0_width": 4096,
                "level0_height": 4096,
            }
        )
    return feats


def write_clam(path: Path, batch_axis: bool = False, seed: int = 0) -> np.ndarray:
    feats = _feats(len(TOPLEFT), seed)
    with h5py.File(path, "w") as f:  # CLAM's compute_w_loader: no attrs at all, int32 coords
        f["features"] = feats[None] if batch_axis else feats
        f["coords"] = TOPLEFT.astype(np.int32)
    return feats


def write_stamp(path: Path, seed: int = 0, extractor: str = "dinobloom-b") -> tuple[np.ndarray, np.ndarray]:
    feats = _feats(3, seed).astype(np.float16)
    coords_um = np.array([[0.0, 0.0], [112.0, 0.0], [224.0, 112.0]])
    with h5py.File(path, "w") as f:
        f["coords"] = coords_um
        f["feats"] = feats
        f.attrs.update(
            {
                "stamp_version": "2.2.0",
                "extractor": extractor,
                "unit": "um",
                "tile_size_um": 112.0,
                "tile_size_px": 224,
                "code_hash": "abcd1234",
                "feat_type": "tile",
            }
        )
    return feats, coords_um


def test_trident_centres_and_attrs(tmp_path):
    feats = write_trident(tmp_path / "s1.h5")
    bag = read_h5_bag(tmp_path / "s1.h5")
    assert bag.tool == "trident" and bag.encoder_name is None
    np.testing.assert_array_equal(bag.features, feats)
    np.testing.assert_array_equal(bag.coords, TOPLEFT + 256)  # half of patch_size_level0
    assert bag.mpp is None and bag.info["patch_level0_source"] == "attrs:patch_size_level0"
    assert bag.info["sha256"] == hashlib.sha256((tmp_path / "s1.h5").read_bytes()).hexdigest()


def test_clam_batch_axis_and_stride(tmp_path):
    feats = write_clam(tmp_path / "s1.h5", batch_axis=True)
    bag = read_h5_bag(tmp_path / "s1.h5", mpp=0.25, mpp_source="user")
    assert bag.tool == "clam" and bag.features.shape == (4, D)
    np.testing.assert_array_equal(bag.features, feats)
    np.testing.assert_array_equal(bag.coords, TOPLEFT + 128)  # grid stride 256 -> half is 128
    assert bag.info["patch_level0_source"] == "coords stride"
    assert bag.tile_um == pytest.approx(64.0) and bag.mpp == 0.25
    assert grid_stride(TOPLEFT.astype(float)) == 256


def test_stamp_um_to_px(tmp_path):
    feats, coords_um = write_stamp(tmp_path / "s1.h5")
    bag = read_h5_bag(tmp_path / "s1.h5")
    assert bag.tool == "stamp" and bag.encoder_name == "dinobloom-b"
    assert bag.mpp == pytest.approx(0.5) and bag.mpp_source == "h5:tile_size_um/tile_size_px"
    np.testing.assert_array_equal(bag.coords, np.rint((coords_um + 56.0) / 0.5).astype(np.int64))
    np.testing.assert_allclose(bag.features, feats.astype(np.float32))
    # With the slide's level-0 mpp, coords become true level-0 px and µm are unchanged.
    bag = read_h5_bag(tmp_path / "s1.h5", mpp=0.25, mpp_source="user")
    np.testing.assert_allclose(bag.coords * 0.25, coords_um + 56.0)


def test_stamp_v1_grid(tmp_path):
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f["feats"] = _feats(3)
        f["coords"] = np.array([[0, 0], [224, 0], [448, 224]], float)
    bag = read_h5_bag(tmp_path / "old.h5")
    assert bag.info["version"] == "stamp-1" and bag.tile_um == 256.0
    np.testing.assert_allclose(bag.coords * bag.mpp, [[128, 128], [384, 128], [640, 384]], atol=bag.mpp)


def test_bad_files_fail_alone(tmp_path):
    src = tmp_path / "h5"
    src.mkdir()
    write_trident(src / "a.h5")
    (src / "b.h5").write_bytes(b"not hdf5 at all")
    with h5py.File(src / "c.h5", "w") as f:
        f["embeddings"] = _feats(2)
    summary = extract(src, tmp_path / "bags.zarr", ExtractConfig(source="h5", encoder="uni_v1", workers=0))
    status = {o.slide_id: o for o in summary.outcomes}
    assert status["a"].status == "written"
    assert status["b"].status == "failed" and "HDF5" in status["b"].message
    assert status["c"].status == "failed" and "expected `features`" in status["c"].message
    store = BagStore(tmp_path / "bags.zarr")
    assert store.encoder.name == "uni_v1" and store.encoder.weights_sha256 == "imported:trident"
    assert store.encoder.unit == "tiles" and store.validate() == {"a": []}
    meta = store.meta("a")
    assert meta.source_kind == "h5" and meta.settings["h5"]["tool"] == "trident"


def test_clam_without_encoder_name_is_refused(tmp_path):
    write_clam(tmp_path / "s.h5")
    summary = extract(tmp_path / "s.h5", tmp_path / "bags.zarr", ExtractConfig(source="h5", workers=0))
    assert summary.encoder is None and summary.outcomes[0].status == "failed"
    assert "--encoder" in summary.outcomes[0].message
    assert not (tmp_path / "bags.zarr").exists()  # never labelled with the default encoder


def test_stamp_name_from_attrs_and_tool_mix_refused(tmp_path):
    src = tmp_path / "h5"
    src.mkdir()
    write_stamp(src / "a.h5", seed=1)
    write_stamp(src / "b.h5", seed=2)
    write_trident(src / "c.h5")  # same width, another tool: must not join a STAMP store
    summary = extract(src, tmp_path / "bags.zarr", ExtractConfig(source="h5", workers=0))
    assert summary.encoder.name == "dinobloom-b" and summary.encoder.weights_sha256 == "imported:stamp"
    status = {o.slide_id: o.status for o in summary.outcomes}
    assert status == {"a": "written", "b": "written", "c": "failed"}
    # Rerun: complete bags are skipped, nothing rewritten.
    again = extract(src, tmp_path / "bags.zarr", ExtractConfig(source="h5", workers=0))
    assert {o.slide_id: o.status for o in again.outcomes} == {"a": "skipped", "b": "skipped", "c": "failed"}


def test_cli_import_and_info(tmp_path):
    src = tmp_path / "h5"
    src.mkdir()
    write_trident(src / "slide one.h5")
    write_trident(src / "s2.h5", seed=3)
    runner = CliRunner()
    store = tmp_path / "bags.zarr"
    result = runner.invoke(
        app, ["extract", str(src), "-o", str(store), "--source", "h5", "--encoder", "uni_v1"]
    )
    assert result.exit_code == 0, result.output
    assert "2 written" in result.output
    result = runner.invoke(app, ["bags", "info", str(store)])
    assert result.exit_code == 0 and "slide one" in result.output and "uni_v1" in result.output
    result = runner.invoke(app, ["bags", "validate", str(store)])
    assert result.exit_code == 0, result.output


def test_no_mpp_is_imported_and_said(tmp_path):
    """CLAM and TRIDENT files record no pixel size: they are imported (refusing them would block the common
    import), the bags keep mpp None, and the run says so in one note naming them and the fix; with --mpp (or
    a STAMP tile grid) there is no note."""
    src = tmp_path / "h5"
    src.mkdir()
    write_clam(src / "a.h5")
    write_trident(src / "b.h5", seed=1)
    store = tmp_path / "bags.zarr"
    summary = extract(src, store, ExtractConfig(source="h5", encoder="uni_v1", workers=0))
    assert [o.status for o in summary.outcomes] == ["written", "failed"]  # another tool than the store's
    assert [m.mpp for m in BagStore(store).metas()] == [None]
    (note,) = summary.notes
    assert note.startswith("1 bag(s) imported without an mpp (a): ") and "\n" not in note
    assert note.endswith("rerun with --mpp (or a manifest's mpp column) and --overwrite")
    assert BagStore(store).runs()[next(iter(BagStore(store).runs()))]["notes"] == [note]

    args = ["extract", str(src / "b.h5"), "-o", str(tmp_path / "t.zarr"), "--source", "h5", "--encoder", "x"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert "1 bag(s) imported without an mpp (b)" in line and "--mpp" in line
    again = CliRunner().invoke(app, args)  # a rerun that skips the bag writes nothing, so says nothing of it
    assert again.exit_code == 0 and "note:" not in again.output, again.output

    given = extract(src / "a.h5", tmp_path / "m.zarr", ExtractConfig(source="h5", encoder="uni_v1", mpp=0.5))
    assert given.notes == [] and BagStore(tmp_path / "m.zarr").meta("a").mpp == 0.5
    write_stamp(tmp_path / "s.h5")
    stamp = extract(tmp_path / "s.h5", tmp_path / "s.zarr", ExtractConfig(source="h5", workers=0))
    assert stamp.notes == [] and BagStore(tmp_path / "s.zarr").meta("s").mpp == pytest.approx(0.5)
