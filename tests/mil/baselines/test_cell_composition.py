"""`cell_composition`: each patient's cell-type shares as `mil cells count` counts them, fitted on the run's folds
only, beside the head and `pooled_stats`; bad cell models refused before training, through the library and
the CLI (`mil.cli.main`)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from features.bagstore import BagStore, EncoderIdentity
from features.core.errors import ConfigError
from mil.baselines import create_baseline
from mil.baselines.base import bags_from_store
from mil.baselines.run import BaselineData, fit_baselines
from mil.cells.differential import count_store
from mil.cells.flags import load_reference_ranges
from mil.cells.model import CellModel
from mil.cli import app
from mil.cohort.labels import build_cohort
from mil.cohort.splits import make_splits
from mil.config import CellsConfig, TrainConfig
from mil.tasks import create_task
from tests.faults.cli_cases import Outcome, mil
from tests.mil.baselines.cell_model_helpers import CLASSES, make_cell_model
from tests.train_helpers import ENCODER, SINGLE_MODEL_FLAGS, make_cohort, single_thread  # noqa: F401

FAST = ["--folds", "3", "--epochs", "2", "--device", "cpu", "--model", "mean_pool",
        "--set", "train.batch_size=8", "--set", "evaluate.n_bootstrap=50", *SINGLE_MODEL_FLAGS]  # fmt: skip
runner = CliRunner()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("composition"), n_patients=45, n_instances=(20, 40))


@pytest.fixture(scope="module")
def cell_model(tmp_path_factory):
    return make_cell_model(tmp_path_factory.mktemp("cellmodel") / "cm")


def _data(cohort, config: TrainConfig):
    bags, labels = cohort
    store = BagStore(bags)
    built = build_cohort(labels, store.metas(), config, store=bags)
    task = create_task(built.spec)
    split = make_splits(built.patients, task.strata(built.y), config.folds, seed=config.seed)
    data = BaselineData(
        lambda: bags_from_store(store, built.patients, built.slides),
        ENCODER.dim,
        built.patients,
        built.y,
        split,
        config.seed,
    )
    return store, built, task, data


def test_the_shares_are_those_of_mil_cells_count(cohort, cell_model):
    """Same typing, same exclusions: each patient's features are patients.csv's pct_<type> / 100."""
    bags, labels = cohort
    model = CellModel.load(cell_model)
    store, built, _, data = _data(cohort, TrainConfig(target="apl_aml_healthy"))
    features = create_baseline("cell_composition", cell_model=model).features(data.bags(), data.dim)
    assert features.names == ["share[blast]", "share[lymphocyte]"]  # the artefact class is not a share
    owners = {s: p for p, slides in built.slides.items() for s in slides}
    counted = count_store(model, store, load_reference_ranges(CellsConfig().reference_ranges), owners=owners)
    by_patient = {row.id: row for row in counted.patients}
    expected = np.array([[by_patient[p].pct[c].value / 100 for c in ("blast", "lymphocyte")]
                         for p in built.patients])  # fmt: skip
    np.testing.assert_allclose(features.values, expected, rtol=1e-12)
    np.testing.assert_allclose(features.values.sum(1), 1.0)
    aml = np.array([built.y[i] == built.spec.classes.index("AML") for i in range(len(built.patients))])
    assert features.values[aml, 0].mean() > 0.2 > features.values[~aml, 0].mean()  # the signal is the share


def test_a_patient_without_a_counted_cell_has_no_composition(cell_model):
    model = CellModel.load(cell_model)
    only_artefacts = np.zeros((5, ENCODER.dim), np.float32)
    only_artefacts[:, 0] = 8.0
    features = create_baseline("cell_composition", cell_model=model).features([only_artefacts], ENCODER.dim)
    assert np.isnan(features.values).all()  # NaN, which the run reports and skips, never a row of zeros


def test_the_baseline_fits_only_on_each_folds_training_patients(cohort, cell_model):
    """Changing the labels of fold 0's test patients changes none of their out-of-fold outputs, and every
    fold trained on exactly its train + validation patients."""
    config = TrainConfig(target="apl_aml_healthy", folds=3)
    _, built, task, data = _data(cohort, config)
    params = {"cell_composition": {"cell_model": CellModel.load(cell_model)}}
    (first,) = fit_baselines(["cell_composition"], data, task, params=params)
    assert first.record["status"] == "ok" and first.record["n_features"] == 2
    for f in data.split.folds:
        assert first.record["folds"][str(f.index)]["n_train"] == len(f.train) + len(f.val)
    fold = data.split.folds[0]
    tested = np.isin(built.patients, list(fold.test))
    flipped = data.y.copy()
    flipped[tested] = (flipped[tested] + 1) % len(built.spec.classes)
    changed = BaselineData(data.bags, data.dim, data.patients, flipped, data.split, data.seed)
    (second,) = fit_baselines(["cell_composition"], changed, task, params=params)
    columns = [c for c in first.table.columns if c.startswith("prob_")]
    assert len(columns) == len(built.spec.classes)
    in_fold = first.table["fold"].astype(str) == str(fold.index)
    np.testing.assert_array_equal(
        first.table.loc[in_fold, columns].to_numpy(), second.table.loc[in_fold, columns].to_numpy()
    )
    assert not np.array_equal(first.table[columns].to_numpy(), second.table[columns].to_numpy())


def test_the_default_baselines_add_composition_when_a_cell_model_is_given():
    assert TrainConfig().baselines == ["pooled_stats"]
    assert TrainConfig(cell_model="cm").baselines == ["pooled_stats", "cell_composition"]
    assert TrainConfig(cell_model="cm", baselines=["pooled_stats"]).baselines == ["pooled_stats"]
    assert TrainConfig(cell_model="cm", baselines=["none"]).baselines == []
    with pytest.raises(ValueError, match="cell_composition but no cell model"):
        TrainConfig(baselines=["pooled_stats", "cell_composition"])


def test_a_config_file_without_a_cell_model_is_refused_in_one_line(tmp_path):
    from mil.config import load_config

    (tmp_path / "c.yaml").write_text("train:\n  baselines: [cell_composition]\n")
    with pytest.raises(ConfigError, match="--cell-model"):
        load_config(str(tmp_path / "c.yaml"))


# --- through the CLI ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(cohort, cell_model, tmp_path_factory):
    bags, labels = cohort
    out = tmp_path_factory.mktemp("runs") / "run"
    argv = ["train", "--bags", str(bags), "--labels", str(labels), "--target", "apl_aml_healthy",
            "--cell-model", str(cell_model), "-o", str(out), *FAST]  # fmt: skip
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_train_shows_head_pooled_stats_and_composition_side_by_side(run, cell_model):
    out, output = run
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["baselines"]) == ["pooled_stats", "cell_composition"]
    record = metrics["baselines"]["cell_composition"]
    assert record["status"] == "ok" and record["describes"] == "the cell-type composition"
    assert record["cell_model"]["path"] == str(cell_model) and record["n_features"] == 2
    compared = metrics["comparison"]["cell_composition"]
    assert compared["verdict"].startswith("macro AUC: head − cell_composition = ")
    diff = compared["difference"]
    assert diff["low"] <= diff["estimate"] <= diff["high"] and diff["n_boot"] == 50
    assert (out / "baselines" / "cell_composition" / "predictions.csv").is_file()
    assert "cell_composition" in output and "pooled_stats" in output
    assert "warning" not in output  # the cell model learnt from none of these patients
    config = (out / "config.yaml").read_text()
    assert f"cell_model: {cell_model}" in config


def test_evaluate_and_report_compare_with_the_composition_too(run, tmp_path):
    out, _ = run
    result = runner.invoke(app, ["evaluate", str(out / "predictions.csv"), "-o", str(tmp_path / "ev"),
                                 "--set", "evaluate.n_bootstrap=50"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "cell_composition" in result.output and "the cell-type composition" in result.output
    from mil.report.sections import comparison_section

    html = comparison_section(out, json.loads((out / "metrics.json").read_text()), "mean_pool")
    assert "cell_composition" in html and "pooled_stats" in html and "the cell-type composition" in html


def test_predict_applies_the_head_of_a_run_with_the_composition_baseline(run, cohort, tmp_path):
    out, _ = run
    bags, labels = cohort
    result = runner.invoke(app, ["predict", str(out), "--bags", str(bags), "-o", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.csv").is_file()


def _train(capsys, cohort, tmp_path, *extra: str) -> Outcome:
    bags, labels = cohort
    return mil(capsys, "train", "--bags", bags, "--labels", labels, "--target", "apl_aml_healthy",
               "-o", tmp_path / "run", *FAST, *extra)  # fmt: skip


def _refused(outcome: Outcome, *words: str) -> None:
    assert outcome.code == 2, outcome.err
    line = outcome.one_line_error()
    assert all(w in line for w in words), line


def test_a_missing_cell_model_is_refused_before_training(capsys, cohort, tmp_path):
    outcome = _train(capsys, cohort, tmp_path, "--cell-model", tmp_path / "nowhere")
    _refused(outcome, "nowhere", "mil cells train")
    assert not (tmp_path / "run").exists()


def test_an_unreadable_cell_model_is_refused_before_training(capsys, cohort, cell_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(cell_model, broken)
    (broken / "cellmodel.json").write_text('{"schema": "mil.cellmodel/1", "classes": [')
    _refused(
        _train(capsys, cohort, tmp_path, "--cell-model", broken), "broken", "unreadable", "mil cells train"
    )
    assert not (tmp_path / "run").exists()


def test_a_cell_model_of_another_encoder_is_refused_before_training(capsys, cohort, tmp_path):
    other = EncoderIdentity("other-encoder", "1" * 64, ENCODER.dim, "cells")
    model = make_cell_model(tmp_path / "other", encoder=other)
    outcome = _train(capsys, cohort, tmp_path, "--cell-model", model)
    _refused(outcome, "other-encoder", "test-encoder", "this store's encoder")
    assert not (tmp_path / "run").exists()


def test_composition_without_a_cell_model_is_refused(capsys, cohort, tmp_path):
    outcome = _train(
        capsys, cohort, tmp_path, "--baselines", "pooled_stats", "--baselines", "cell_composition"
    )
    _refused(outcome, "cell_composition", "--cell-model")
    assert not (tmp_path / "run").exists()


def test_a_cell_model_that_learnt_from_the_runs_patients_is_warned_about(capsys, cohort, tmp_path):
    model = make_cell_model(tmp_path / "seen", patients=["P001", "P002", "nobody"])
    outcome = _train(capsys, cohort, tmp_path, "--cell-model", model, "--baselines", "cell_composition")
    assert outcome.code == 0, outcome.err
    warned = [line for line in outcome.out.splitlines() if "warning" in line]
    assert len(warned) == 1 and "2 patient(s) this run tests" in warned[0] and "P001, P002" in warned[0], (
        warned
    )


def test_a_cell_model_of_this_store_is_matched_to_the_runs_patients_by_slide(tmp_path):
    """A store extracted without patient ids names each patient by its slide (P001_s1), and `mil cells train`
    records those; the labels CSV maps the slides to P001. Matched by slide on the same store, by id only
    elsewhere (another store's slide ids say nothing about this run's patients)."""
    from mil.baselines.cell_composition import patients_learnt
    from mil.cells.model import CellModel

    store = tmp_path / "bags.zarr"
    store.mkdir()
    trained = {
        "bags": str(store.resolve()),
        "slides": ["P001_s1", "P002_s1"],
        "patients": ["P001_s1", "P002_s1"],
    }
    model = CellModel(classifier=None, kind="linear", params={}, classes=CLASSES, temperature=1.0,
                      vocabulary=None, encoder=None, trained_on=trained)  # fmt: skip
    slides = {"P001": ["P001_s1"], "P002": ["P002_s1", "P002_s2"], "P003": ["P003_s1"]}
    tested = ["P001", "P002", "P003"]
    assert patients_learnt(model, tested, slides, store) == ["P001", "P002"]
    assert patients_learnt(model, tested, slides, tmp_path / "other.zarr") == []
    assert patients_learnt(model, tested) == []  # by id alone: P001_s1 is not P001
