"""`heatmap()`: per-slide files, the truth join, the diagnostic cells on top, and every refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.bagstore import Bag, BagMeta, BagStore, EncoderIdentity
from features.core.errors import InputError, StoreError
from mil.config import ExplainConfig
from mil.explain.heatmap import heatmap
from mil.explain.truth import join_truth
from tests.mil.explain.cohort import copy_store, get_tiny, point_source


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return get_tiny(tmp_path_factory)


APL = ["P004", "P005", "P007", "P011"]  # the APL patients of the tiny cohort (labels.csv)


def test_cells_outputs_join_the_truth_and_rank_diagnostic_cells_first(tiny, tmp_path):
    labels = pd.read_csv(tiny.labels).drop_duplicates("patient_id").set_index("patient_id")
    assert sorted(labels.index[labels["apl_aml_healthy"] == "APL"]) == APL
    out = tmp_path / "hm"
    summary = heatmap(tiny.abmil, tiny.cells, out, slides=APL, config=ExplainConfig(top_k=4))
    assert summary.count("written") == 4 and summary.class_agnostic and summary.rows == ["all"]
    record = json.loads((out / "heatmap.json").read_text())
    assert (
        record["method"] == "attention" and record["class_agnostic"] and record["attribution_method"] is None
    )
    assert record["renormalised_per_slide"] is False and record["versions"]["torch"]
    assert record["explain"] == ExplainConfig(top_k=4).model_dump()  # the resolved section beside the results
    assert set(record["slides"]) == set(APL) and record["slides"]["P004"]["status"] == "written"
    top_share, base = [], []
    for pid in APL:
        files = sorted(p.name for p in (out / pid).iterdir())
        assert files == ["attention.csv", "gallery_all.png"]  # no overlay/geojson for cell folders
        frame = pd.read_csv(out / pid / "attention.csv")
        joined = join_truth(frame, pd.read_csv(tiny.synth / "truth" / "cells" / f"{pid}.csv"))
        assert joined["truth_diagnostic"].notna().all() and len(joined) == 24
        top = joined.sort_values("att_rel", ascending=False).head(5)
        top_share.append(top["truth_diagnostic"].mean())
        base.append(joined["truth_diagnostic"].mean())
    # the trained head puts APL's diagnostic cells (abnormal promyelocytes, faggot cells) on top
    assert np.mean(top_share) > np.mean(base) + 0.1 and np.mean(top_share) >= 0.8


def test_slides_get_overlays_geojson_and_join_by_position(tiny, tmp_path):
    out = tmp_path / "hm"
    summary = heatmap(tiny.clam_mb, tiny.slides, out, slides=["P004_s1"], config=ExplainConfig(top_k=3))
    assert summary.count("written") == 1 and not summary.class_agnostic
    folder = out / "P004_s1"
    names = {p.name for p in folder.iterdir()}
    for cls in ("AML", "APL", "healthy"):
        assert {f"gallery_{cls}.png", f"overlay_{cls}.png"} <= names
    frame = pd.read_csv(folder / "attention.csv")
    truth = pd.read_csv(tiny.synth / "truth" / "slides" / "P004_s1.csv")
    joined = join_truth(frame, truth[truth["nucleated"] == 1], radius_px=4)
    assert joined["truth_diagnostic"].notna().all()  # instances sit exactly on the truth centres
    geo = json.loads((folder / "cells.geojson").read_text())
    assert len(geo["features"]) == len(frame)
    m = geo["features"][0]["properties"]["measurements"]
    assert {"instance", "att_APL", "att_rel_APL", "att_APL_sd", "score_APL"} <= set(m)
    assert json.loads((out / "heatmap.json").read_text())["rows"] == ["AML", "APL", "healthy"]


def test_attribution_head_is_recorded(tiny, tmp_path):
    summary = heatmap(
        tiny.mean_pool, tiny.cells, tmp_path / "hm", slides=["P001"], config=ExplainConfig(top_k=2)
    )
    record = json.loads((tmp_path / "hm" / "heatmap.json").read_text())
    assert summary.method == record["method"] == record["attribution_method"] == "gradient_x_input"
    assert {"gallery_AML.png", "gallery_APL.png", "gallery_healthy.png"} <= {
        p.name for p in (tmp_path / "hm" / "P001").iterdir()
    }


def test_bad_arguments_are_one_line_errors_and_touch_nothing(tiny, tmp_path):
    with pytest.raises(InputError, match="no slide 'nope'"):
        heatmap(tiny.abmil, tiny.cells, tmp_path / "a", slides=["nope"])
    with pytest.raises(InputError, match="not a folder|no config.yaml"):
        heatmap(tmp_path / "not_a_run", tiny.cells, tmp_path / "b")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(InputError, match="no config.yaml"):
        heatmap(tmp_path / "empty_run", tiny.cells, tmp_path / "b")
    (tmp_path / "not_a_store").mkdir()
    with pytest.raises(StoreError):
        heatmap(tiny.abmil, tmp_path / "not_a_store", tmp_path / "b")
    other = EncoderIdentity("other", "none", 8, "cells")
    store = BagStore(tmp_path / "other.bags", "a", other)
    store.write(Bag(np.zeros((3, 8), np.float32), paths=np.array(["a", "b", "c"], object)),
                BagMeta("X", "X", 3, other, str(tmp_path), "cells"))  # fmt: skip
    with pytest.raises(InputError, match="trained on"):
        heatmap(tiny.abmil, store.path, tmp_path / "c")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="--overwrite"):
        heatmap(tiny.abmil, tiny.cells, existing, slides=["P001"])
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp folder left behind


def test_moved_source_fails_that_slide_only_and_overwrite_replaces(tiny, tmp_path):
    store = copy_store(tiny.slides, tmp_path / "slides.bags")
    moved = tmp_path / "moved"
    shutil.copytree(tiny.synth / "slides", moved)
    # point two slides' bags at a private copy of their TIFFs, then move one TIFF away
    for sid in ("P001_s1", "P002_s1"):
        point_source(store, sid, moved / f"{sid}.tiff")
    (moved / "P002_s1.tiff").rename(moved / "elsewhere.tiff")
    out = tmp_path / "hm"
    summary = heatmap(tiny.clam_mb, store, out, slides=["P001_s1", "P002_s1"], config=ExplainConfig(top_k=2))
    assert summary.count("written") == 1 and summary.count("failed") == 1
    failed = next(r for r in summary.slides if r.status == "failed")
    assert failed.slide_id == "P002_s1" and "not found" in failed.error
    assert not (out / "P002_s1").exists() and (out / "P001_s1" / "cells.geojson").exists()
    assert json.loads((out / "heatmap.json").read_text())["slides"]["P002_s1"]["status"] == "failed"
    # overwrite: the new run replaces the old folder entirely
    again = heatmap(
        tiny.clam_mb, store, out, slides=["P001_s1"], config=ExplainConfig(top_k=2), overwrite=True
    )
    assert again.count("written") == 1 and not (out / "P002_s1").exists()
    # a run where every slide fails leaves the existing OUT as it was
    (moved / "P001_s1.tiff").unlink()
    nothing = heatmap(tiny.clam_mb, store, out, slides=["P001_s1"], overwrite=True)
    assert nothing.count("written") == 0 and (out / "P001_s1" / "cells.geojson").exists()


def test_each_slide_is_opened_once(tiny, tmp_path, monkeypatch):
    # Galleries and the overlay's overview come from one open slide (`features.sources.open_instances`).
    from features.sources import openslide_reader

    opened = []
    original = openslide_reader.SlideReader.__init__

    def counting(self, path, *args, **kwargs):
        opened.append(Path(path).name)
        original(self, path, *args, **kwargs)

    monkeypatch.setattr(openslide_reader.SlideReader, "__init__", counting)
    summary = heatmap(
        tiny.clam_mb,
        tiny.slides,
        tmp_path / "hm",
        slides=["P004_s1", "P001_s1"],
        config=ExplainConfig(top_k=2),
    )
    assert summary.count("written") == 2 and (tmp_path / "hm" / "P004_s1" / "overlay_APL.png").exists()
    assert sorted(opened) == ["P001_s1.tiff", "P004_s1.tiff"]
