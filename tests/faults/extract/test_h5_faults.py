"""`.h5` feature import (issue 13, item 6): NaN/inf features and NaN coords, and a manifest of `.h5` files.

NaN features were stored and reported written; they surfaced folds later in training, and `predict` then
failed the whole cohort. NaN coords were stored as -9223372036854775808. Now a file with non-finite features
or coords fails alone in one line (the encoder path refuses its own NaN the same way), and a manifest of
`.h5` files imports like a folder of them.
"""

from __future__ import annotations

import h5py
import numpy as np

from features.bagstore import BagStore
from tests.faults.extract.conftest import cli
from tests.features.pipeline.test_h5_import import TOPLEFT, write_trident


def test_non_finite_features_or_coords_fail_alone(tmp_path, ledger):
    src = tmp_path / "h5"
    src.mkdir()
    good = write_trident(src / "a.h5")
    write_trident(src / "b.h5", seed=1)
    with h5py.File(src / "b.h5", "r+") as f:
        f["features"][1, 3] = np.nan
    write_trident(src / "c.h5", seed=2)
    with h5py.File(src / "c.h5", "r+") as f:
        coords = TOPLEFT.astype(np.float64)
        coords[2, 0] = np.nan
        del f["coords"]
        f["coords"] = coords
    write_trident(src / "d.h5", seed=3)
    with h5py.File(src / "d.h5", "r+") as f:
        f["features"][0, 0] = np.inf
    store = tmp_path / "bags.zarr"
    run = cli("extract", src, "-o", store, "--source", "h5", "--encoder", "uni_v1")
    assert run.traceback is None and run.code == 3, run.output
    assert "1 written, 0 skipped, 3 failed" in run.output
    failures = run.output.split("failures (3):")[1]
    assert "b.h5: 1 of 4 instances have NaN/inf in `features`" in failures
    assert "c.h5: 1 of 4 instances have NaN/inf in `coords`" in failures
    assert "d.h5: 1 of 4 instances have NaN/inf in `features`" in failures
    bags = BagStore(store)
    assert bags.slide_ids() == ["a"] and np.array_equal(bags.read("a").features, good)
    assert cli("bags", "validate", store, "--deep").code == 0
    ledger("input", ".h5 files with a NaN feature, an inf feature, a NaN coordinate",
           "each fails alone in one line; the good file is imported")  # fmt: skip


def test_manifest_of_h5_files(tmp_path, ledger):
    src = tmp_path / "h5"
    src.mkdir()
    first = write_trident(src / "a.h5")
    write_trident(src / "b.h5", seed=1)
    manifest = tmp_path / "slides.csv"
    manifest.write_text("slide_id,path,patient_id,mpp\nslide A,h5/a.h5,P1,0.25\nslide B,h5/b.h5,P1,\n")
    store = tmp_path / "bags.zarr"
    for args in ((), ("--source", "manifest")):
        run = cli("extract", manifest, "-o", store, "--encoder", "uni_v1", *args)
        assert run.traceback is None and run.code == 0, run.output
    bags = BagStore(store)
    assert bags.slide_ids() == ["slide A", "slide B"] and {m.patient_id for m in bags.metas()} == {"P1"}
    assert bags.meta("slide A").mpp == 0.25 and bags.meta("slide A").mpp_source == "manifest"
    assert bags.encoder.weights_sha256 == "imported:trident"
    assert np.array_equal(bags.read("slide A").features, first)
    ledger("input", "a CSV manifest of .h5 feature files (auto and --source manifest)",
           "imported with the rows' ids, patients and mpp")  # fmt: skip
