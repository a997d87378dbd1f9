"""A new task kind is one module: registered at test time, it is listed, trains, evaluates and reports.

`tests/mil/tasks/regression.py` is written like a kind in `mil/tasks/`; nothing else in `mil` knows it.
"""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mil.cli import app
from mil.evaluate.predictions import read_predictions
from mil.tasks import TASKS
from tests.train_helpers import SINGLE_MODEL_FLAGS, make_cohort, single_thread  # noqa: F401

MODULE = "tests.mil.tasks.regression"
runner = CliRunner()


@pytest.fixture
def regression(monkeypatch):
    """Import the kind's module (it registers itself) into a copy of the registry, restored afterwards."""
    TASKS.names()  # the built-in kinds load into the original registry first
    monkeypatch.setattr(TASKS, "_entries", dict(TASKS._entries))
    sys.modules.pop(MODULE, None)
    yield importlib.import_module(MODULE)
    sys.modules.pop(MODULE, None)


def test_a_kind_in_one_module_lists_trains_evaluates_and_reports(regression, tmp_path):
    bags, labels = make_cohort(tmp_path / "cohort", n_patients=30, n_instances=(10, 20))

    listed = runner.invoke(app, ["list", "tasks"])
    assert listed.exit_code == 0, listed.output
    assert "regression" in listed.output and "Continuous target" in listed.output

    run = tmp_path / "run"
    trained = runner.invoke(app, [
        "train", "--bags", str(bags), "--labels", str(labels), "--task", "regression", "--target", "os_months",
        "-o", str(run), "--folds", "3", "--epochs", "3", "--device", "cpu", "--model", "mean_pool",
        "--set", "evaluate.n_bootstrap=20", "--set", "train.batch_size=8", *SINGLE_MODEL_FLAGS,
    ])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert "regression of os_months - r2" in trained.output
    # the default baseline needs a linear model from the kind (`Task.baseline_model`); this one has none
    assert "pooled_stats" in trained.output and "has no baseline model" in trained.output
    table, spec = read_predictions(run / "predictions.csv")
    assert spec.kind == "regression" and list(table.columns) == ["patient_id", "fold", "y_true", "y_pred"]
    truth = pd.read_csv(labels).drop_duplicates("patient_id").set_index("patient_id")["os_months"]
    assert np.allclose(table["y_true"], truth.loc[table["patient_id"]], rtol=1e-6)  # float32 targets
    assert (run / "plots" / "scatter.png").is_file() and sorted(table["fold"].unique()) == ["0", "1", "2"]

    out = tmp_path / "eval"
    evaluated = runner.invoke(app, [
        "evaluate", str(run / "predictions.csv"), "-o", str(out / "metrics.json"), "--plots", str(out),
        "--bootstrap", "30",
    ])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "regression" and set(metrics["fold_summary"]) == {"r2", "mae"}
    assert metrics["pooled"]["mae"]["n_boot"] == 30 and metrics["pooled"]["mae"]["estimate"] > 0
    assert (
        metrics["pooled"]["mae"]["low"]
        <= metrics["pooled"]["mae"]["estimate"]
        <= metrics["pooled"]["mae"]["high"]
    )
    assert "r2" in evaluated.output and "mae" in evaluated.output and (out / "scatter.png").is_file()

    html = tmp_path / "report.html"
    reported = runner.invoke(
        app, ["report", str(run), "--bags", str(bags), "-o", str(html), "--clusters", "2"]
    )
    assert reported.exit_code == 0, reported.output
    text = html.read_text()
    assert "Regression errors (pooled)" in text and "predicted vs true values" in text
    assert "high value (predicted)" in text and "low value (predicted)" in text


def test_the_kind_is_gone_after_the_test():
    assert "regression" not in TASKS.names()
