"""Bad label tables stop before training with one line naming the file and the fix."""

from __future__ import annotations

import pandas as pd
import pytest

from features.bagstore import BagStore
from features.core.errors import ConfigError, InputError
from mil.cohort.labels import build_cohort, check_counts, read_labels
from mil.config import TrainConfig
from tests.train_helpers import make_cohort


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    bags, labels = make_cohort(root, n_patients=30, n_instances=(5, 10))
    return bags, labels, BagStore(bags).metas()


def cohort(labels, metas, **train):
    return build_cohort(labels, metas, TrainConfig(**train), store="bags")


def write(tmp_path, df: pd.DataFrame, name="l.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_multiclass_with_empty_rows_left_out(cohort_files):
    bags, labels, metas = cohort_files
    c = cohort(labels, metas, target="apl_aml_healthy")
    assert c.spec.kind == "classification" and c.spec.classes == ["AML", "APL", "healthy"]
    table = pd.read_csv(labels, dtype=str).drop_duplicates("patient_id")
    in_task = table["apl_aml_healthy"].notna()
    assert c.patients == sorted(table.loc[in_task, "patient_id"])
    assert c.left_out_empty == sorted(table.loc[~in_task, "patient_id"])
    two = [p for p, s in c.slides.items() if len(s) == 2]
    assert two and all(s == sorted(s) for s in c.slides.values())  # patients with 2 slides are one sample


def test_numeric_01_is_binary_and_config_classes_order(cohort_files):
    _, labels, metas = cohort_files
    c = cohort(labels, metas, target="npm1")
    assert c.spec.kind == "classification" and c.spec.classes == ["0", "1"]
    c = cohort(labels, metas, target="apl_aml_healthy", classes=["APL", "AML", "healthy"])
    assert c.spec.classes == ["APL", "AML", "healthy"]


def test_list_target_is_multilabel_and_survival_needs_naming(cohort_files):
    _, labels, metas = cohort_files
    c = cohort(labels, metas, target=["npm1", "cbfb_myh11"])
    assert c.spec.kind == "multilabel" and c.y.shape == (len(c.patients), 2)
    with pytest.raises(ConfigError, match="--task survival"):
        cohort(labels, metas, target="os_months")
    c = cohort(labels, metas, task="survival", time_col="os_months", event_col="os_event")
    assert c.spec.target == ["os_months", "os_event"] and len(c.patients) == 30


def test_unknown_class(cohort_files):
    _, labels, metas = cohort_files
    with pytest.raises(InputError, match=r"value\(s\) 'healthy' not in the classes .* train.classes"):
        cohort(labels, metas, target="apl_aml_healthy", classes=["APL", "AML"])


def test_missing_column_and_file(cohort_files, tmp_path):
    _, labels, metas = cohort_files
    with pytest.raises(InputError, match=f"{labels}: no column 'flt3'"):
        cohort(labels, metas, target="flt3")
    with pytest.raises(InputError, match="labels file .*nope.csv not found"):
        cohort(tmp_path / "nope.csv", metas, target="npm1")
    binary = tmp_path / "x.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InputError, match="not a readable CSV|not a CSV|no patient_id"):
        read_labels(binary)
    semi = tmp_path / "semi.csv"
    semi.write_text("patient_id;npm1\nP1;1\n")
    with pytest.raises(InputError, match="';'-separated"):
        read_labels(semi)


def test_duplicates_and_conflicting_slides(cohort_files, tmp_path):
    _, labels, metas = cohort_files
    table = pd.read_csv(labels, dtype=str)
    with pytest.raises(InputError, match="duplicate slide_id"):
        cohort(write(tmp_path, pd.concat([table, table.iloc[:1]])), metas, target="npm1")
    per_patient = table.drop(columns="slide_id").drop_duplicates("patient_id")
    with pytest.raises(InputError, match="duplicate patient_id P000"):
        cohort(write(tmp_path, pd.concat([per_patient, per_patient.iloc[:1]])), metas, target="diagnosis")
    two = table[table.duplicated("patient_id", keep=False)].index
    bad = table.copy()
    bad.loc[two[0], "diagnosis"] = "MDS" if bad.loc[two[0], "diagnosis"] != "MDS" else "AA"
    with pytest.raises(InputError, match="different targets"):
        cohort(write(tmp_path, bad), metas, target="diagnosis")


def test_missing_bags_and_unlabelled_slides(cohort_files, tmp_path):
    _, labels, metas = cohort_files
    table = pd.read_csv(labels, dtype=str)
    extra = pd.concat(
        [table, pd.DataFrame([{**table.iloc[0].to_dict(), "patient_id": "GHOST", "slide_id": "G-S0"}])]
    )
    with pytest.raises(InputError, match=r"1 labelled slides have no bag in bags \(G-S0\).*--allow-missing"):
        cohort(write(tmp_path, extra), metas, target="diagnosis")
    c = cohort(write(tmp_path, extra), metas, target="diagnosis", allow_missing=True)
    assert c.missing_bags == ["G-S0"] and "GHOST" not in c.patients
    fewer = table[table["patient_id"] != "P001"]
    with pytest.raises(InputError, match=r"bags: 1 slides have no row in .*P001-S0"):
        cohort(write(tmp_path, fewer), metas, target="diagnosis")
    c = cohort(write(tmp_path, fewer), metas, target="diagnosis", allow_missing=True)
    assert c.unlabelled_slides == ["P001-S0"] and c.left_out()["unlabelled_slide"] == 1
    # without slide_id, patients are matched through the store's patient ids
    per_patient = table.drop(columns="slide_id").drop_duplicates("patient_id")
    with pytest.raises(InputError, match=r"2 labelled patients have no bag .*first: X1, X2"):
        extra = pd.DataFrame([{**per_patient.iloc[0].to_dict(), "patient_id": x} for x in ("X1", "X2")])
        cohort(write(tmp_path, pd.concat([per_patient, extra])), metas, target="diagnosis")


def test_absent_slide_of_a_patient_with_other_bags_is_reported_not_fatal(cohort_files, tmp_path):
    # e.g. `mil synth --layout both`: each patient has a cells row and a slides row; a store holds one of them
    _, labels, metas = cohort_files
    table = pd.read_csv(labels, dtype=str)
    row = table.iloc[0].to_dict()
    extra = pd.concat([table, pd.DataFrame([{**row, "slide_id": row["patient_id"] + "-cells"}])])
    c = cohort(write(tmp_path, extra), metas, target="diagnosis")
    assert c.slides_without_bag == [row["patient_id"] + "-cells"] and c.missing_bags == []
    assert row["patient_id"] in c.patients and c.left_out()["slide_without_bag"] == 1


def test_class_smaller_than_folds(cohort_files):
    _, labels, metas = cohort_files
    c = cohort(labels, metas, target="npm1")
    positives = int((c.y == 1).sum())
    check_counts(c, positives)
    with pytest.raises(
        InputError, match=f"class '1' has {positives} patients, fewer than the {positives + 1} folds"
    ):
        check_counts(c, positives + 1)


def test_group_column(cohort_files, tmp_path):
    _, labels, metas = cohort_files
    c = cohort(labels, metas, target="diagnosis", group_by="site")
    assert sorted(set(c.groups)) == ["site_a", "site_b", "site_c"]
    with pytest.raises(InputError, match="no column 'hospital' for --group-by"):
        cohort(labels, metas, target="diagnosis", group_by="hospital")
