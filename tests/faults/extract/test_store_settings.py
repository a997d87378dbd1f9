"""One extraction setting per store (issue 13, item 4).

Slides cropped at 32 µm used to join a store of 24 µm bags, and `mil predict` accepted a store whose crop size
differed from the one the run was trained on. Now the store records its setting when it is created; a run
with another one is refused in one line before any work (the store is left as it was), and `predict` and
`heatmap` refuse a store whose setting differs from the one the run recorded at train time.
"""

from __future__ import annotations

import shutil

import pytest
import yaml

from features.bagstore import BagStore
from features.pipeline.extract import extract
from mil.config import EvaluateConfig, TrainConfig
from mil.training.train import train_cv
from tests.faults.extract.conftest import CFG, FAST, cli, differing, error_lines, snapshot
from tests.mil.explain.cohort import get_tiny
from tests.train_helpers import SINGLE_MODEL


def test_a_slide_with_another_crop_is_refused(cohort, clean_slides, tmp_path, ledger):
    first, late = tmp_path / "first", tmp_path / "late"
    first.mkdir(), late.mkdir()
    for name in ("P001_s1", "P002_s1"):
        shutil.copy(cohort / "slides" / f"{name}.tiff", first)
    shutil.copy(cohort / "slides" / "P003_s1.tiff", late)
    store = tmp_path / "bags.zarr"
    assert cli("extract", first, "-o", store, *FAST).code == 0
    before = sorted(p.relative_to(store) for p in store.rglob("*") if "runs" not in p.parts)
    for extra in (["--set", "extract.crop_um=32"], ["--set", "extract.crop_um=32", "--overwrite"]):
        run = cli("extract", late, "-o", store, *FAST, *extra)
        assert run.traceback is None and run.code == 2, run.output
        (line,) = error_lines(run)
        assert "crop_um: 24.0 -> 32.0" in line and "one extraction setting" in line
    after = sorted(p.relative_to(store) for p in store.rglob("*") if "runs" not in p.parts)
    assert after == before  # refused before any work: no bag, no QC, nothing staged
    assert cli("extract", late, "-o", store, *FAST).code == 0  # the store's own setting is welcome
    assert differing(store, clean_slides) == []
    ledger("store", "a slide added at crop 32 µm to a store of 24 µm bags (with and without --overwrite)",
           "refused in one line before any work, store unchanged")  # fmt: skip


@pytest.fixture(scope="module")
def extracted_run(tmp_path_factory):
    """A run trained on bags extracted from the tiny cohort's cell folders, and that store."""
    root = tmp_path_factory.mktemp("settings_run")
    synth = get_tiny(tmp_path_factory).synth
    store = root / "cells.zarr"
    extract(synth / "cells", store, CFG)
    config = TrainConfig(target="apl_aml_healthy", head="mean_pool", folds=2, epochs=3, allow_missing=True,
                         device="cpu", batch_size=4, **SINGLE_MODEL)  # fmt: skip
    train_cv(store, synth / "labels.csv", config, root / "run", evaluate=EvaluateConfig(n_bootstrap=10))
    return synth, store, root / "run"


def test_predict_and_heatmap_refuse_a_store_made_otherwise(extracted_run, tmp_path, ledger):
    synth, store, run = extracted_run
    recorded = yaml.safe_load((run / "config.yaml").read_text())["provenance"]["store_extraction"]
    assert recorded == BagStore(store).extraction and recorded["crop_um"] == 24.0
    ok = cli("predict", run, "--bags", store, "-o", tmp_path / "ok.csv")
    assert ok.code == 0, ok.output
    other = tmp_path / "capped.zarr"  # the same cells, subsampled to 10 per patient
    assert cli("extract", synth / "cells", "-o", other, *FAST, "--max-instances", "10").code == 0
    before = snapshot(other)
    for args in (("predict", run, "--bags", other, "-o", tmp_path / "p.csv"),
                 ("heatmap", run, "--bags", other, "-o", tmp_path / "hm")):  # fmt: skip
        refused = cli(*args)
        assert refused.traceback is None and refused.code == 2, refused.output
        (line,) = error_lines(refused)
        assert "max_instances: None -> 10" in line and "other settings than run" in line
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "hm").exists()
    assert snapshot(other).keys() == before.keys()
    ledger("store", "predict / heatmap on a store extracted with other settings than the run's (max_instances)",
           "refused in one line naming the difference, nothing written")  # fmt: skip
