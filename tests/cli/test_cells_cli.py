"""`mil cells train` and `mil cells count` through the CLI, on a class-folder export (spaces, commas, unicode,
nesting) and a bag store of it: files written, what was left out said in one line each, refusals exit 2."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from mil.cli import app, main
from tests.mil.cells.helpers import FOLDERS, OTHER_ENCODER, UNLABELLED_PER_PATIENT, class_folders, store_for


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells_cli")
    folders = class_folders(root / "export", patients=4)
    return folders, store_for(folders, root / "bags")


@pytest.fixture(scope="module")
def trained(export, tmp_path_factory):
    folders, bags = export
    out = tmp_path_factory.mktemp("model") / "cellmodel"
    result = run("cells", "train", "--bags", bags, "--labels", folders, "-o", out, "--folds", "2")
    assert result.exit_code == 0, result.output
    return out, result.output


def test_train_writes_the_model_and_its_cross_validation(trained):
    out, output = trained
    for name in (
        "cellmodel.json",
        "model.npz",
        "metrics.json",
        "cv_predictions.csv",
        "confusion.png",
        "config.yaml",
    ):
        assert (out / name).is_file(), name
    model = json.loads((out / "cellmodel.json").read_text())
    # no vocabulary: the folders' own names are the classes, as written
    assert set(model["classes"]) == set(FOLDERS) - {"Hairy cells"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_folds"] == 2 and metrics["balanced_accuracy"] > 0.9
    assert set(metrics["per_class"]["Lymphocyte, variant"]) == {"precision", "recall", "f1", "support"}
    cv = pd.read_csv(out / "cv_predictions.csv")
    assert cv.groupby("patient_id")["fold"].nunique().max() == 1  # no patient in two folds
    assert "balanced accuracy" in output and "patient-grouped CV" in output


def test_train_reports_small_classes_and_unlabelled_cells_in_one_line_each(trained):
    _, output = trained
    lines = [line for line in output.splitlines() if line.startswith("note:")]
    assert any("class Hairy cells has 4 labelled cells (< 5" in line for line in lines)
    assert any(f"{4 * UNLABELLED_PER_PATIENT} stored cells" in line for line in lines)


def test_count_counts_every_cell_with_intervals(trained, export, tmp_path):
    model, _ = trained
    _, bags = export
    out = tmp_path / "counts"
    result = run("cells", "count", model, "--bags", bags, "-o", out)
    assert result.exit_code == 0, result.output
    slides = pd.read_csv(out / "slides.csv")
    assert len(slides) == 4 and {"n_cells", "n_counted", "pct_lymphocyte_variant_lo", "flags"} <= set(
        slides.columns
    )
    per_patient = sum(FOLDERS.values()) + UNLABELLED_PER_PATIENT
    assert (
        slides["n_cells"] == per_patient
    ).all()  # unlabelled and small-class cells are typed and counted too
    assert slides["in_training"].all()
    doc = json.loads((out / "counts.json").read_text())
    assert doc["interval"].startswith("95 % Clopper-Pearson") and len(doc["patients"]) == 4
    assert "Clopper-Pearson" in result.output and "not diagnoses" in result.output


def test_a_store_of_another_encoder_is_refused_in_one_line(trained, export, tmp_path, capsys):
    model, _ = trained
    folders, _ = export
    other = store_for(folders, tmp_path / "other", encoder=OTHER_ENCODER)
    with pytest.raises(SystemExit) as exit_info:
        main(["cells", "count", str(model), "--bags", str(other), "-o", str(tmp_path / "c")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "test-other" in err and "test-cells" in err and "model's encoder" in err
    assert len([line for line in err.splitlines() if line.strip()]) <= 3  # one (wrapped) line, no traceback
    assert not (tmp_path / "c").exists()


def test_labels_naming_no_class_are_refused(export, tmp_path, capsys):
    _, bags = export
    flat = tmp_path / "flat" / "P1"
    flat.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (4, 4)).save(flat / "a.png")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "cells",
                "train",
                "--bags",
                str(bags),
                "--labels",
                str(tmp_path / "flat"),
                "-o",
                str(tmp_path / "m"),
            ]
        )
    assert exit_info.value.code == 2 and "class folder" in capsys.readouterr().err


def test_flags_take_their_defaults_from_the_schema():
    result = run("cells", "train", "--help")
    assert "linear probe" in result.output and "[default: linear]" in result.output


def test_labels_the_vocabulary_does_not_know_are_named_in_the_refusal(export, tmp_path, capsys):
    """When no class survives because every name is unknown to the vocabulary, the refusal says so (the
    per-name notes come only after a successful fit, so the error itself must carry the reason)."""
    _, bags = export
    from features.bagstore import BagStore

    store = BagStore(bags, "r")
    rows = [
        (slide, i, ("foo", "bar", "baz")[i % 3])
        for slide in store.slide_ids()
        for i in range(store.meta(slide).n_instances)
    ]
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=["slide_id", "instance", "cell_type"]).to_csv(labels, index=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["cells", "train", "--bags", str(bags), "--labels", str(labels), "-o", str(tmp_path / "m"),
              "--vocabulary", "munich21"])  # fmt: skip
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "'bar' not in vocabulary munich21" in err and "'foo' not in vocabulary munich21" in err, err
    assert len(err.strip().splitlines()) == 1, err
