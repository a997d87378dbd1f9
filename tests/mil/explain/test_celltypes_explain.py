"""`mil heatmap --cells` and `mil report --cells` on the tiny cohort: every cell shown says what it is.

The cell model is trained on the slides store from the cohort's synth truth (placed by position), so its types
can be checked against the truth; the store's features encode the true type (tests/mil/explain/cohort.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.core.errors import StoreError
from mil.cells.model import CellModel
from mil.cells.train import train_cells
from mil.config import CellsConfig, ExplainConfig, ReportConfig
from mil.explain.gallery import type_caption
from mil.explain.heatmap import heatmap
from mil.report.build import report
from tests.mil.cells.helpers import class_folders, store_for
from tests.mil.explain.cohort import get_tiny
from tests.mil.explain.geojson_spec import qupath_problems, rfc7946_problems


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return get_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def cell_model(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_cells") / "cellmodel"
    train_cells(tiny.slides, tiny.synth, out, CellsConfig(vocabulary="synth20", folds=3))
    return out


@pytest.fixture(scope="module")
def typed_heatmap(tiny, cell_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_cells_hm") / "hm"
    summary = heatmap(tiny.clam_mb, tiny.slides, out, slides=["P001_s1", "P002_s1"], config=ExplainConfig(top_k=3),
                      cells=cell_model)  # fmt: skip
    assert summary.count("written") == 2
    return out


def test_attention_csv_names_each_cells_type(typed_heatmap, tiny, cell_model):
    frame = pd.read_csv(typed_heatmap / "P001_s1" / "attention.csv")
    model = CellModel.load(cell_model)
    assert set(frame["cell_type"]) <= set(model.classes)
    assert frame["cell_type_p"].between(0, 1).all()
    truth = pd.read_csv(tiny.synth / "truth" / "slides" / "P001_s1.csv")
    truth = truth[truth["nucleated"] == 1].reset_index(drop=True)  # the tiny store holds these, in order
    expected = model.vocabulary.lookup(truth["cell_type"].to_numpy(object))
    known = np.isin(expected.astype(str), model.classes)
    assert (frame["cell_type"].to_numpy(object)[known] == expected[known]).mean() > 0.95
    record = json.loads((typed_heatmap / "heatmap.json").read_text())
    assert record["cells"]["classes"] == model.classes


def test_geojson_carries_qupath_classifications_and_is_valid_geojson(typed_heatmap, cell_model):
    doc = json.loads((typed_heatmap / "P002_s1" / "cells.geojson").read_text())
    assert rfc7946_problems(doc) == []
    assert qupath_problems(doc, classified=True) == []
    frame = pd.read_csv(typed_heatmap / "P002_s1" / "attention.csv")
    colours = CellModel.load(cell_model).colours()
    for feature, (_, row) in zip(doc["features"], frame.iterrows(), strict=True):
        c = feature["properties"]["classification"]
        assert c["name"] == row["cell_type"] and c["color"] == list(colours[row["cell_type"]])
        assert feature["properties"]["measurements"]["cell_type_p"] == pytest.approx(row["cell_type_p"])


def test_the_checker_catches_broken_files():
    doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Polygon",
           "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}, "properties": {"objectType": "detection",
           "classification": {"name": "blast", "color": "#ff0000"}}}]}  # fmt: skip
    assert any("not closed" in p for p in rfc7946_problems(doc))
    assert any("color" in p for p in qupath_problems(doc, classified=True))


def test_type_overlay_and_typed_galleries_are_written(typed_heatmap):
    files = {p.name for p in (typed_heatmap / "P001_s1").iterdir()}
    assert "overlay_celltype.png" in files and any(f.startswith("gallery_") for f in files)
    names, proba = np.array(["abnormal_promyelocyte"], dtype=object), np.array([0.913])
    assert type_caption((names, proba), 0) == "abnormal promyelocyte 91%\n" and type_caption(None, 0) == ""


def test_a_cell_model_of_another_encoder_is_refused(tiny, tmp_path):
    folders = class_folders(tmp_path / "export", patients=2)
    bags = store_for(folders, tmp_path / "bags")
    other = tmp_path / "other_model"
    train_cells(bags, folders, other, CellsConfig(folds=2))
    with pytest.raises(StoreError, match="model's encoder"):
        heatmap(tiny.clam_mb, tiny.slides, tmp_path / "hm", cells=other)
    assert not (tmp_path / "hm").exists()


def test_report_shows_the_differential_and_types_the_clusters(tiny, cell_model, tmp_path):
    out = tmp_path / "report.html"
    report(tiny.clam_mb, tiny.slides, out, config=ReportConfig(top_k=4, clusters=2, cluster_members=3),
           cells=cell_model)  # fmt: skip
    html = out.read_text()
    assert 'id="differential"' in html and "Clopper-Pearson" in html and "± " in html
    assert "blast % (95% CI)" in html and "not diagnoses" in html
    assert "cell types (cell model)" in html  # each discovery cluster's type mix
    import re

    assert re.search(r"cluster 0: \d+ % [a-z ]+, enriched \d+\.\dx in (APL|AML|healthy)", html)
