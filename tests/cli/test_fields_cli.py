"""Microscope fields end to end through the CLI: `mil synth --layout fields` -> `mil extract` (no conversion,
source recognised) -> `mil train` -> `mil heatmap` (per-field overlays and GeoJSON) -> `mil report`."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from features.bagstore import BagStore
from mil.cli import app
from tests.train_helpers import SINGLE_MODEL_FLAGS


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("fields_cli")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        synth = run("synth", root / "cohort", "--layout", "fields", "--patients", "12", "--fields-per-patient", "2",
                    "--field-px", "400", "--seed", "4", "--sites", "1", "--workers", "1")  # fmt: skip
        assert synth.exit_code == 0, synth.output
        extracted = run("extract", root / "cohort" / "fields", "-o", root / "bags.zarr", "--workers", "0")
        trained = run("train", "--bags", root / "bags.zarr", "--labels", root / "cohort" / "labels.csv",
                      "--config", "apl_aml_healthy", "-o", root / "run", "--folds", "2", "--epochs", "3",
                      "--device", "cpu", "--set", "evaluate.n_bootstrap=10", "--set", "train.allow_missing=true", *SINGLE_MODEL_FLAGS)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return root, extracted, trained


def test_extract_recognises_fields_and_train_runs(pipeline):
    root, extracted, trained = pipeline
    assert extracted.exit_code == 0, extracted.output
    assert "12 written, 0 skipped, 0 failed" in extracted.output
    metas = BagStore(root / "bags.zarr").metas()
    assert {m.source_kind for m in metas} == {"fields"} and all(m.mpp_source == "red cells" for m in metas)
    assert trained.exit_code == 0, trained.output
    assert (root / "run" / "metrics.json").exists()


def test_heatmap_writes_per_field_overlays_and_geojson(pipeline, tmp_path):
    root, _, _ = pipeline
    out = tmp_path / "hm"
    result = run(
        "heatmap", root / "run", "--bags", root / "bags.zarr", "-o", out, "--slide", "P001", "--top-k", "3"
    )
    assert result.exit_code == 0, result.output
    assert "fields/<field>/ for 2 field(s)" in result.output
    frame = pd.read_csv(out / "P001" / "attention.csv")
    assert {"file", "x", "y", "mpp"} <= set(frame.columns)
    for name in frame["file"].unique():
        folder = out / "P001" / "fields" / name
        overlays = list(folder.glob("overlay_*.png"))
        assert overlays and Image.open(overlays[0]).size[0] > 100
        cells = json.loads((folder / "cells.geojson").read_text())["features"]
        assert len(cells) == (frame["file"] == name).sum()
        ring = cells[0]["geometry"]["coordinates"][0]
        width, height = Image.open(root / "cohort" / "fields" / "P001" / name).size
        assert all(-50 < x < width + 50 and -50 < y < height + 50 for x, y in ring)  # the field's own pixels
    assert (out / "P001" / "gallery_all.png").exists() or list((out / "P001").glob("gallery_*.png"))


def test_report_on_a_fields_store(pipeline, tmp_path):
    root, _, _ = pipeline
    result = run("report", root / "run", "--bags", root / "bags.zarr", "-o", tmp_path / "report.html")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_bad_fields_print_one_line_each_and_exit_0(pipeline, tmp_path):
    root, _, _ = pipeline
    patient = tmp_path / "in" / "P1"
    shutil.copytree(root / "cohort" / "fields" / "P001", patient)
    (patient / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    result = run(
        "extract", tmp_path / "in", "-o", tmp_path / "s.zarr", "--source", "fields", "--workers", "0"
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("left out")]
    assert len(lines) == 1 and "broken.jpg" in lines[0] and "cannot read image" in lines[0]
    assert "1 input(s) left out" in result.output


def test_cell_types_on_fields_from_the_synth_truth(pipeline, tmp_path):
    from tests.mil.explain.geojson_spec import qupath_problems, rfc7946_problems

    root, _, _ = pipeline
    trained = run("cells", "train", "--bags", root / "bags.zarr", "--labels", root / "cohort", "-o", tmp_path / "cm",
                  "--vocabulary", "synth20", "--folds", "2")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    out = tmp_path / "hm"
    result = run("heatmap", root / "run", "--bags", root / "bags.zarr", "-o", out, "--slide", "P001",
                 "--top-k", "2", "--cells", tmp_path / "cm")  # fmt: skip
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "P001" / "attention.csv")
    assert frame["cell_type"].notna().all()
    for name in frame["file"].unique():
        folder = out / "P001" / "fields" / name
        assert (folder / "overlay_celltype.png").exists()
        doc = json.loads((folder / "cells.geojson").read_text())
        assert rfc7946_problems(doc) == [] and qupath_problems(doc, classified=True) == []
        names = [f["properties"]["classification"]["name"] for f in doc["features"]]
        assert names == frame.loc[frame["file"] == name, "cell_type"].tolist()


def test_too_few_red_cells_names_the_count_the_threshold_is_compared_with(tmp_path):
    """2 red cells and 6 platelet-sized specks: the refusal said "8 single cell(s) ... min_red_cells 5"."""
    import numpy as np

    rgb = np.full((360, 480, 3), (236, 231, 241), np.uint8)
    yy, xx = np.mgrid[:360, :480]
    discs = [(100, 100, 20, (205, 120, 130)), (300, 200, 20, (205, 120, 130))]
    discs += [(60 + 60 * i, 300, 6, (190, 150, 200)) for i in range(6)]
    for cx, cy, r, colour in discs:
        rgb[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = colour
    (tmp_path / "in" / "P1").mkdir(parents=True)
    Image.fromarray(rgb).save(tmp_path / "in" / "P1" / "1.png")
    result = run(
        "extract", tmp_path / "in", "-o", tmp_path / "s.zarr", "--source", "fields", "--workers", "0"
    )
    line = next(line for line in result.output.splitlines() if "too few red cells" in line)
    assert "2 single red cell(s) in 1 field(s), under fields.min_red_cells 5" in line, result.output
    assert "6 other single object(s) left out as not of red-cell size" in line
    assert "--mpp" in line and "--set extract.fields.mpp_scope=run" in line  # the fixes, crowded fields' too
