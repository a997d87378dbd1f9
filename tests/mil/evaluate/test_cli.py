"""`mil evaluate` end to end on CSVs: outputs, refusal to overwrite, one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from lifelines.utils import concordance_index
from typer.testing import CliRunner

from features.core.errors import InputError
from mil.cli import app, main
from mil.config import EvaluateConfig
from mil.evaluate.predictions import spec_path, write_predictions
from mil.evaluate.run import evaluate_files
from tests.mil.evaluate.synth import classification_table, survival_table

runner = CliRunner()


@pytest.fixture
def cv_preds(tmp_path):
    df, spec = classification_table(n=60)
    path = tmp_path / "run" / "predictions.csv"
    write_predictions(df, spec, path)
    return path


def test_evaluate_writes_metrics_and_plots(cv_preds, tmp_path):
    plots = tmp_path / "plots"
    result = runner.invoke(app, ["evaluate", str(cv_preds), "--plots", str(plots), "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((cv_preds.parent / "metrics.json").read_text())
    assert metrics["n_bootstrap"] == 200 and metrics["pooled"]["macro_auc"]["n_valid"] == 200
    prov = metrics["provenance"]
    assert prov["seed"] == 0 and len(prov["predictions"]["sha256"]) == 64 and prov["versions"]["lifelines"]
    assert sorted(p.name for p in plots.iterdir()) == ["confusion.png", "roc.png"]
    assert "macro_auc" in result.output and "fold 2" in result.output
    # the library call the command wraps gives the same numbers
    lib = evaluate_files(cv_preds, evaluate=EvaluateConfig(n_bootstrap=200)).metrics
    assert lib["pooled"] == metrics["pooled"] and lib["folds"] == metrics["folds"]


def test_refuses_to_overwrite_without_flag(cv_preds, tmp_path):
    out = tmp_path / "m.json"
    assert runner.invoke(app, ["evaluate", str(cv_preds), "-o", str(out), "--bootstrap", "20"]).exit_code == 0
    before = out.read_text()
    result = runner.invoke(app, ["evaluate", str(cv_preds), "-o", str(out), "--bootstrap", "30"])
    assert isinstance(result.exception, InputError) and "--overwrite" in str(result.exception)
    assert out.read_text() == before
    again = runner.invoke(
        app, ["evaluate", str(cv_preds), "-o", str(out), "--bootstrap", "30", "--overwrite"]
    )
    assert again.exit_code == 0 and json.loads(out.read_text())["n_bootstrap"] == 30


def test_refuses_existing_plots_before_writing_anything(cv_preds, tmp_path):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "roc.png").write_bytes(b"old")
    result = runner.invoke(app, ["evaluate", str(cv_preds), "--plots", str(plots), "--bootstrap", "10"])
    assert isinstance(result.exception, InputError)
    assert not (cv_preds.parent / "metrics.json").exists() and (plots / "roc.png").read_bytes() == b"old"


def test_external_cohort_with_labels_and_survival(tmp_path):
    df, spec = survival_table(n=50)
    preds = tmp_path / "external.csv"
    write_predictions(df.assign(fold=np.nan, time=np.nan, event=np.nan), spec, preds)
    labels = (
        df[["patient_id", "time", "event"]].rename(columns={"time": "os_months", "event": "dead"}).iloc[:45]
    )
    labels.to_csv(tmp_path / "clinical.csv", index=False)
    out = tmp_path / "m.json"
    args = [
        "evaluate",
        str(preds),
        "--labels",
        str(tmp_path / "clinical.csv"),
        "-o",
        str(out),
        "--plots",
        str(tmp_path),
    ]
    result = runner.invoke(app, [*args, "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["n_patients"] == 45 and metrics["n_unlabelled_dropped"] == 5
    kept = df.iloc[:45]
    assert metrics["pooled"]["c_index"]["estimate"] == pytest.approx(
        concordance_index(kept.time, -kept.risk, kept.event)
    )
    assert metrics["folds"] == {}
    assert "5 patient(s) without a label" in result.output and (tmp_path / "km.png").exists()


def bad_inputs(tmp_path, cv_preds):
    """(argv, expected message) for each bad input the brief names."""
    nosidecar = tmp_path / "nosidecar.csv"
    nosidecar.write_text(cv_preds.read_text())
    no_id = tmp_path / "no_id.csv"
    pd.DataFrame({"id": ["P000"], "diagnosis": ["AML"]}).to_csv(no_id, index=False)
    disjoint = tmp_path / "disjoint.csv"
    pd.DataFrame({"patient_id": ["Q1"], "diagnosis": ["AML"]}).to_csv(disjoint, index=False)
    unknown = tmp_path / "unknown.csv"
    df = pd.read_csv(cv_preds)
    pd.DataFrame({"patient_id": df.patient_id, "diagnosis": df.y_true.replace("AML", "CML")}).to_csv(
        unknown, index=False
    )
    return [
        ([str(tmp_path / "missing.csv")], "not found"),
        ([str(nosidecar)], "spec sidecar"),
        ([str(cv_preds), "--labels", str(no_id)], "no patient_id column"),
        ([str(cv_preds), "--labels", str(disjoint)], "no patient_id in common"),
        ([str(cv_preds), "--labels", str(unknown)], "'CML' that the model does not predict"),
        ([str(cv_preds), "--labels", str(tmp_path / "nolabels.csv")], "labels file"),
    ]


def test_bad_input_one_line_exit_2_no_file(cv_preds, tmp_path, capsys):
    for argv, message in bad_inputs(tmp_path, cv_preds):
        out = tmp_path / "out" / "m.json"
        full = ["evaluate", *argv, "-o", str(out), "--plots", str(tmp_path / "out"), "--bootstrap", "10"]
        result = runner.invoke(app, full)
        assert isinstance(result.exception, InputError), (argv, result.output)
        assert message in str(result.exception) and "\n" not in str(result.exception)
        with pytest.raises(SystemExit) as exit_:
            main(full)  # the real entry point: one red line, exit code 2
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "out").exists()
    assert spec_path(cv_preds).exists()


def test_predictions_with_truth_for_some_patients_leave_the_others_out(tmp_path):
    """`mil predict --labels` fills truth where the labels have it (an MDS patient has no APL/AML/healthy
    label): `mil evaluate` scores the patients with truth and counts the rest, as with --labels."""
    df, spec = classification_table(n=40)
    df["fold"] = np.nan
    df.loc[:4, "y_true"] = np.nan
    path = tmp_path / "external.csv"
    write_predictions(df, spec, path)
    result = runner.invoke(app, ["evaluate", str(path), "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    assert "5 patient(s) without a label were left out" in result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_patients"] == 35 and metrics["n_unlabelled_dropped"] == 5
    df["y_true"] = np.nan  # no truth at all: still a refusal asking for --labels
    write_predictions(df, spec, path)
    with pytest.raises(InputError, match="no truth.*--labels"):
        evaluate_files(path)
