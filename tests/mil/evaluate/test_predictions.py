"""The predictions table: round trip, sidecar, validation, labels attached from a CSV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.core.errors import InputError
from mil.evaluate.predictions import (
    attach_labels,
    read_predictions,
    require_truth,
    spec_path,
    write_predictions,
)
from mil.tasks import TaskSpec, create_task
from tests.mil.evaluate.synth import classification_table, multilabel_table, survival_table


@pytest.mark.parametrize("make", [classification_table, survival_table, multilabel_table])
def test_round_trip_keeps_values_and_spec(tmp_path, make):
    df, spec = make(n=30)
    path = tmp_path / "preds.csv"
    write_predictions(df, spec, path)
    back, spec2 = read_predictions(path)
    assert spec2 == spec
    assert json.loads(spec_path(path).read_text())["schema"] == "mil.predictions/1"
    task = create_task(spec)
    assert list(back.columns) == task.columns()
    assert list(back["fold"].unique()) == ["0", "1", "2"]
    for col in task.prediction_columns():
        if col != "y_pred":
            assert np.allclose(back[col].to_numpy(float), df[col].to_numpy(float))
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


def test_ids_stay_text_and_integer_classes_normalise(tmp_path):
    df = pd.DataFrame(
        {
            "patient_id": ["007", "010"],
            "fold": [0.0, np.nan],
            "y_true": [1, 0],
            "y_pred": [1, 1],
            "prob_0": [0.2, 0.4],
            "prob_1": [0.8, 0.6],
        }
    )
    spec = TaskSpec("classification", "npm1", [0, 1])
    write_predictions(df, spec, tmp_path / "p.csv")
    back, spec2 = read_predictions(tmp_path / "p.csv")
    assert spec2.classes == ["0", "1"]
    assert list(back["patient_id"]) == ["007", "010"]
    assert back["fold"].iloc[0] == "0" and pd.isna(back["fold"].iloc[1])
    assert list(back["y_true"]) == ["1", "0"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.drop(columns="prob_AML"), "missing column(s) prob_AML"),
        (lambda d: d.assign(patient_id=["P000"] * len(d)), "not unique"),
        (lambda d: d.assign(y_pred="CML"), "'CML' not in the spec"),
        (lambda d: d.assign(prob_APL=np.nan), "non-finite"),
        (lambda d: d.assign(prob_APL="high"), "must be numeric"),
    ],
)
def test_write_refuses_bad_tables(tmp_path, mutate, message):
    df, spec = classification_table(n=12)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_predictions(mutate(df), spec, tmp_path / "p.csv")
    assert not list(tmp_path.iterdir())


def test_spec_validation():
    with pytest.raises(InputError, match="kind"):
        TaskSpec("regression", "x", [])
    with pytest.raises(InputError, match="time_col, event_col"):
        TaskSpec("survival", "os", [])
    with pytest.raises(InputError, match="at least 2 classes"):
        TaskSpec("classification", "dx", ["AML"])


def test_read_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_predictions(tmp_path / "nope.csv")
    df, spec = classification_table(n=12)
    path = tmp_path / "p.csv"
    df.to_csv(path, index=False)
    with pytest.raises(InputError, match="spec sidecar") as err:
        read_predictions(path)
    assert "\n" not in str(err.value)
    spec_path(path).write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_predictions(path)
    spec_path(path).write_text(json.dumps(spec.to_dict()))
    df.drop(columns="y_pred").to_csv(path, index=False)
    with pytest.raises(InputError, match="missing column"):
        read_predictions(path)


def external_cohort(tmp_path):
    """`mil predict` output: no fold, no truth; labels in a separate clinical CSV with an extra patient."""
    df, spec = classification_table(n=20)
    preds = df.assign(fold=np.nan, y_true=np.nan)
    labels = df[["patient_id", "y_true"]].rename(columns={"y_true": "diagnosis"})
    labels = pd.concat(
        [labels, pd.DataFrame({"patient_id": ["X999"], "diagnosis": ["CML"]})]
    )  # not predicted
    labels.loc[labels.patient_id == "P003", "diagnosis"] = np.nan  # unlabelled
    labels = labels[labels.patient_id != "P004"]  # absent
    path = tmp_path / "labels.csv"
    labels.to_csv(path, index=False)
    return preds, spec, df, path


def test_attach_labels_fills_truth_and_counts_unlabelled(tmp_path):
    preds, spec, truth, labels = external_cohort(tmp_path)
    with pytest.raises(InputError, match="no truth"):
        require_truth(preds, spec, "preds.csv")
    out = attach_labels(preds, spec, labels)
    assert out.attrs["unlabelled_patients"] == ["P003", "P004"]
    assert len(out) == 18
    expected = truth.set_index("patient_id").loc[out.patient_id, "y_true"].to_numpy()
    assert list(out["y_true"]) == list(expected)
    require_truth(out, spec, "preds.csv")


def test_attach_labels_errors(tmp_path):
    preds, spec, truth, _ = external_cohort(tmp_path)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["P001"], "diagnosis": ["AML"]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match="no patient_id column"):
        attach_labels(preds, spec, bad)
    pd.DataFrame({"patient_id": ["Z1"], "diagnosis": ["AML"]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match="no patient_id in common"):
        attach_labels(preds, spec, bad)
    pd.DataFrame({"patient_id": ["P001", "P002"], "diagnosis": ["AML", "MDS"]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match="'MDS' that the model does not predict"):
        attach_labels(preds, spec, bad)
    pd.DataFrame({"patient_id": ["P001"], "dx": ["AML"]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match="missing target column"):
        attach_labels(preds, spec, bad)
    pd.DataFrame({"patient_id": ["P001", "P001"], "diagnosis": ["AML", "APL"]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match="patient 'P001' has rows with different diagnosis"):
        attach_labels(preds, spec, bad)


def test_attach_labels_collapses_agreeing_rows_per_slide(tmp_path):
    # A labels table with one row per slide (as `mil synth` writes and `mil train` reads): two rows per
    # patient that agree on the target collapse to one; the result equals the one-row-per-patient table's.
    preds, spec, _, one_row = external_cohort(tmp_path)
    per_patient = pd.read_csv(one_row, dtype=str)
    per_slide = pd.concat(
        [per_patient.assign(slide_id=per_patient.patient_id + "_s1"), per_patient.assign(slide_id="cells")]
    ).sample(frac=1.0, random_state=0)  # rows of one patient apart, in any order
    per_slide.to_csv(tmp_path / "slides.csv", index=False)
    assert per_slide.patient_id.duplicated().sum() == len(per_patient)
    out = attach_labels(preds, spec, tmp_path / "slides.csv")
    pd.testing.assert_frame_equal(out, attach_labels(preds, spec, one_row))
    assert out.attrs["unlabelled_patients"] == ["P003", "P004"] and out.patient_id.is_unique

    df, sspec = survival_table(n=8)
    labels = df[["patient_id", "time", "event"]].rename(columns={"time": "os_months", "event": "dead"})
    twice = pd.concat([labels, labels.assign(dead=labels.dead.map({1: "1.0", 0: "0"}))])  # same values
    twice.to_csv(tmp_path / "s.csv", index=False)
    out = attach_labels(df.assign(time=np.nan, event=np.nan), sspec, tmp_path / "s.csv")
    assert len(out) == 8 and np.allclose(out["time"], df["time"]) and np.allclose(out["event"], df["event"])
    twice.iloc[len(labels) + 2, 1] = labels.iloc[2, 1] + 1.0  # the second row of S002 says another time
    twice.to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(InputError, match=r"patient 'S002' has rows with different os_months, dead \(.* vs "):
        attach_labels(df.assign(time=np.nan, event=np.nan), sspec, tmp_path / "s.csv")


def test_attach_labels_refuses_disagreeing_truth(tmp_path):
    df, spec = classification_table(n=10)
    labels = df[["patient_id", "y_true"]].rename(columns={"y_true": "diagnosis"})
    labels.loc[0, "diagnosis"] = "healthy" if df.y_true[0] != "healthy" else "AML"
    labels.to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(InputError, match="disagree"):
        attach_labels(df, spec, tmp_path / "l.csv")


def test_attach_survival_and_multilabel_labels(tmp_path):
    df, spec = survival_table(n=15)
    labels = df[["patient_id", "time", "event"]].rename(columns={"time": "os_months", "event": "dead"})
    labels["dead"] = labels["dead"].map({1: "True", 0: "False"})  # booleans as a spreadsheet writes them
    labels.to_csv(tmp_path / "s.csv", index=False)
    out = attach_labels(df.assign(time=np.nan, event=np.nan), spec, tmp_path / "s.csv")
    assert np.allclose(out["event"], df["event"]) and np.allclose(out["time"], df["time"])
    df, spec = multilabel_table(n=15)
    truth = create_task(spec).truth_columns()
    labels = df[["patient_id", *truth]].rename(columns=dict(zip(truth, spec.target, strict=True)))
    labels.to_csv(tmp_path / "m.csv", index=False)
    out = attach_labels(df, spec, tmp_path / "m.csv")  # agreeing truth already present: fine
    assert (out[truth].to_numpy() == df[truth].to_numpy()).all()
