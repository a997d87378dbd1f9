"""`features.pipeline.extract.extract` on tiny synthetic cohorts: bags, provenance, resume, shards, subsampling, QC files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from features.bagstore import BagStore, bag_key
from features.bagstore.qc_export import export_qc
from features.core.errors import InputError, StoreError
from features.pipeline.config import ExtractConfig
from features.pipeline.extract import extract, parse_shard
from features.pipeline.slide_job import subsample_index
from features.smear.imageops import focus_scores
from features.smear.qc import REGIONS
from tests.extract_fixtures import APERIO, OPENSLIDE_FIXTURES, synth_cohort

CFG = ExtractConfig(encoder="cytomorph", workers=0, qc_thumbnail_px=256)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return synth_cohort(tmp_path_factory.mktemp("cohort"), patients=3)


@pytest.fixture(scope="module")
def slides_store(cohort, tmp_path_factory):
    store = tmp_path_factory.mktemp("stores") / "slides.zarr"
    summary = extract(cohort / "slides", store, CFG)
    return store, summary


def test_slides_bags_and_provenance(cohort, slides_store, tmp_path):
    store_path, summary = slides_store
    assert [o.status for o in summary.outcomes] == ["written"] * 3
    store = BagStore(store_path)
    qc_dir = tmp_path / "qc"  # the QC files a person opens: `mil bags qc STORE -o DIR`
    export_qc(store, qc_dir)
    assert store.encoder.name == "cytomorph" and store.encoder.unit == "cells"
    assert store.validate() == {sid: [] for sid in ("P001_s1", "P002_s1", "P003_s1")}
    truth = {}
    for sid in store.slide_ids():
        bag, meta = store.read(sid), store.meta(sid)
        assert bag.features.shape == (meta.n_instances, store.encoder.dim) and meta.n_instances > 0
        assert set(bag.obs) == {"region", "in_focus", "area_um2"}
        assert np.isin(
            bag.obs["region"], [REGIONS.index("trail")]
        ).all()  # default: cells from the trail only
        assert (bag.coords >= 0).all() and (bag.coords < 1500).all()
        assert meta.mpp == 0.25 and meta.mpp_source == "openslide.mpp-x"
        assert meta.crop_um == 24.0 and meta.crop_px == 96 and meta.source_kind == "slide"
        assert meta.source_size == (cohort / "slides" / f"{sid}.tiff").stat().st_size
        assert (
            meta.settings["shaping"]["crop_um"] == 24.0 and meta.settings["extract"]["encoder"] == "cytomorph"
        )
        assert (
            meta.qc["nucleated_cells"] == meta.n_instances and meta.qc["instances_found"] == meta.n_instances
        )
        qc_json = json.loads((qc_dir / f"{bag_key(sid)}.json").read_text())
        assert qc_json["status"] == "cropped" and (qc_dir / f"{bag_key(sid)}.png").stat().st_size > 1000
        truth[sid] = bag
    # Detected cells sit on the generator's nucleated cells (centres within 3 µm = 12 px).
    t = np.genfromtxt(
        cohort / "truth" / "slides" / "P001_s1.csv", delimiter=",", names=True, dtype=None, encoding="utf-8"
    )
    nucleated = np.column_stack([t["x"], t["y"]])[t["nucleated"] == 1]
    d = np.linalg.norm(truth["P001_s1"].coords[:, None, :] - nucleated[None], axis=2).min(axis=1)
    assert np.median(d) < 12
    run = store.runs()[summary.run_record.name]
    assert run["status"] == "finished" and run["config"]["encoder"] == "cytomorph" and run["seed"] == 0
    assert {"mil", "torch", "timm", "openslide-python", "zarr", "numpy"} <= set(run["versions"])
    assert [o["status"] for o in run["outcomes"]] == ["written"] * 3


def test_rerun_skips_and_mismatch_refused(cohort, slides_store, tmp_path):
    store_path, _ = slides_store
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store_path, copy)
    mtimes = {k: (copy / "bags" / k / "zarr.json").stat().st_mtime_ns for k in BagStore(copy).keys()}
    again = extract(cohort / "slides", copy, CFG)
    assert [o.status for o in again.outcomes] == ["skipped"] * 3
    assert mtimes == {k: (copy / "bags" / k / "zarr.json").stat().st_mtime_ns for k in BagStore(copy).keys()}
    # A store holds one extraction setting: another crop size is refused, --overwrite or not.
    for overwrite in (False, True):
        with pytest.raises(StoreError, match=r"crop_um: 24.0 -> 30.0.*write to a new store"):
            extract(cohort / "slides", copy, CFG.model_copy(update={"crop_um": 30.0}), overwrite=overwrite)
    # A bag made under another mpp override (a fact about these slides, not a store setting) needs --overwrite.
    with pytest.raises(StoreError, match=r"mpp: None -> 0.3.*--overwrite"):
        extract(cohort / "slides", copy, CFG.model_copy(update={"mpp": 0.3}))
    redone = extract(cohort / "slides", copy, CFG.model_copy(update={"mpp": 0.3}), overwrite=True)
    assert [o.status for o in redone.outcomes] == ["written"] * 3
    assert BagStore(copy).meta("P001_s1").mpp == 0.3
    with pytest.raises(StoreError, match="write to a new store"):  # another encoder identity: refused
        extract(cohort / "slides", copy, CFG.model_copy(update={"unit": "tiles"}))


def test_workers_and_shards_give_the_same_bags(cohort, slides_store, tmp_path):
    store_path, _ = slides_store
    ref = BagStore(store_path)
    sharded = tmp_path / "sharded.zarr"
    parts = [
        extract(cohort / "slides", sharded, CFG.model_copy(update={"workers": 2}), shard=(i, 2))
        for i in (0, 1)
    ]
    ids = [{o.slide_id for o in p.outcomes} for p in parts]
    assert ids[0] == {"P001_s1", "P003_s1"} and ids[1] == {"P002_s1"}  # round-robin over sorted ids
    out = BagStore(sharded)
    assert out.slide_ids() == ref.slide_ids()
    for sid in ref.slide_ids():
        a, b = ref.read(sid), out.read(sid)
        np.testing.assert_array_equal(a.coords, b.coords)
        np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-6)
    assert parse_shard("1/2") == (1, 2)


def test_max_instances_seeded_and_recorded(cohort, tmp_path):
    cfg = CFG.model_copy(update={"max_instances": 5, "seed": 3})
    a = extract(cohort / "slides", tmp_path / "a.zarr", cfg)
    assert all(o.instances == 5 for o in a.outcomes)
    # Another shard layout and loader workers draw the same subsample of a slide (seeded by seed + slide id).
    b = extract(cohort / "slides", tmp_path / "b.zarr", cfg.model_copy(update={"workers": 2}), shard=(1, 2))
    assert [o.slide_id for o in b.outcomes] == ["P002_s1"]
    sa, sb = BagStore(tmp_path / "a.zarr"), BagStore(tmp_path / "b.zarr")
    np.testing.assert_array_equal(sa.read("P002_s1").coords, sb.read("P002_s1").coords)
    for sid in sa.slide_ids():
        sub = sa.meta(sid).settings["subsample"]
        assert sub["seed"] == 3 and sub["kept"] == 5 and sub["from"] > 5
    keep = subsample_index(100, 10, 0, "x")
    assert len(keep) == 10 and np.all(np.diff(keep) > 0)
    assert subsample_index(5, 10, 0, "x") is None


def test_cell_folders(cohort, tmp_path):
    summary = extract(cohort / "cells", tmp_path / "cells.zarr", CFG)
    assert [o.status for o in summary.outcomes] == ["written"] * 3
    store = BagStore(tmp_path / "cells.zarr")
    bag, meta = store.read("P001"), store.meta("P001")
    assert sorted(bag.paths) == sorted(f"{n}.png" for n in range(1, 13)) and bag.coords is None
    assert bag.obs["focus"].shape == (12,) and (bag.obs["focus"] > 0).all()
    assert meta.source_kind == "cells" and meta.crop_px == 96 and meta.qc["focus_median"] > 0
    assert store.validate()["P001"] == []


def test_cell_folder_focus_is_the_qc_measure(cohort, tmp_path):
    # One focus measure for slides and cell folders: each image's score is features.smear.imageops.focus_scores
    # of the image as exported (the function region QC applies to its focus patches).
    from features.sources.cells import read_cell_image

    extract(cohort / "cells", tmp_path / "cells.zarr", CFG)
    bag = BagStore(tmp_path / "cells.zarr").read("P002")
    images = [read_cell_image(cohort / "cells" / "P002" / name) for name in bag.paths]
    expected = np.concatenate([focus_scores(image[None]) for image in images])
    np.testing.assert_allclose(bag.obs["focus"], expected, rtol=1e-6)


def test_focus_score_drops_with_blur():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (1, 64, 64, 3)).astype(np.uint8)
    blurred = ndimage.gaussian_filter(sharp.astype(float), (0, 2, 2, 0)).astype(np.uint8)
    assert focus_scores(sharp)[0] > 20 * focus_scores(blurred)[0]


def test_broken_slides_fail_alone(cohort, tmp_path):
    if not OPENSLIDE_FIXTURES.exists():
        pytest.skip("shared openslide fixtures absent")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("unopenable.tiff", "unreadable.svs"):
        (mixed / name).symlink_to(OPENSLIDE_FIXTURES / name)
    shutil.copy(cohort / "slides" / "P001_s1.tiff", mixed)
    summary = extract(mixed, tmp_path / "bags.zarr", CFG)
    status = {o.slide_id: o for o in summary.outcomes}
    assert status["P001_s1"].status == "written"
    for bad in ("unopenable", "unreadable"):
        assert (
            status[bad].status == "failed" and "\n" not in status[bad].message and bad in status[bad].message
        )
    stop = extract(mixed, tmp_path / "stop.zarr", CFG.model_copy(update={"skip_errors": False}))
    # Sorted ids: P001_s1 is written, unopenable fails and stops the run, unreadable is never tried.
    assert stop.stopped_early and [o.status for o in stop.outcomes] == ["written", "failed"]


def test_aperio_tiles(tmp_path):
    if not APERIO.exists():
        pytest.skip("shared Aperio slide absent")
    cfg = CFG.model_copy(update={"unit": "tiles"})
    summary = extract(APERIO, tmp_path / "tiles.zarr", cfg)
    assert summary.outcomes[0].status == "written" and summary.outcomes[0].instances > 10
    store = BagStore(tmp_path / "tiles.zarr")
    meta = store.meta("CMU-1-Small-Region")
    assert store.encoder.unit == "tiles" and meta.crop_um == 112.0 and meta.mpp == pytest.approx(0.499)
    step = np.diff(np.unique(store.read("CMU-1-Small-Region").coords[:, 0]))
    assert np.allclose(step % (112.0 / 0.499), 0, atol=1) or np.allclose(step, 112.0 / 0.499, atol=1)


def test_no_input_is_refused_before_any_work(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="found no slides"):
        extract(tmp_path / "empty", tmp_path / "bags.zarr", CFG)
    assert not (tmp_path / "bags.zarr").exists()


def test_non_finite_embeddings_are_not_stored(cohort, tmp_path, monkeypatch):
    import features.encoders as encoders

    real = encoders.create_encoder

    def broken(*args, **kwargs):  # an encoder whose fp16 overflowed on one cell per batch
        enc = real(*args, **kwargs)
        encode = enc.encode

        def nan_encode(images):
            out = encode(images)
            out[0, 0] = np.nan
            return out

        enc.encode = nan_encode
        return enc

    monkeypatch.setattr(encoders, "create_encoder", broken)
    summary = extract(cohort / "slides" / "P001_s1.tiff", tmp_path / "bags.zarr", CFG)
    assert summary.outcomes[0].status == "failed" and "NaN/inf" in summary.outcomes[0].message
    assert BagStore(tmp_path / "bags.zarr").keys() == []
