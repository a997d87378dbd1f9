"""clinical.csv of `mil synth`: per-diagnosis counts, age and sex with overlap; its own random stream, so every
file a cohort had before it came repeats byte for byte; age carries prognosis in AML."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.synth import SynthConfig, generate_cohort
from features.synth import generate as generate_module
from features.synth.clinical import CLINICAL_COLUMNS, clinical_rows
from features.synth.cohort import build_cohort


def frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    patients = build_cohort(SynthConfig(patients=n, seed=seed))
    rows = [[np.nan if v == "" else v for v in row] for row in clinical_rows(patients, seed)]
    table = pd.DataFrame(rows, columns=CLINICAL_COLUMNS)
    table["diagnosis"] = [p.diagnosis for p in patients]
    table["os_months"] = [p.os_months for p in patients]
    return table


def test_every_file_that_existed_before_is_unchanged(tmp_path, monkeypatch):
    config = SynthConfig(patients=4, layout="cells", sites=2, seed=5, cells_per_patient=6)
    generate_cohort(tmp_path / "with", config)
    monkeypatch.setattr(generate_module, "write_clinical", lambda *args: None)  # the generator without it
    generate_cohort(tmp_path / "without", config)
    before = sorted(
        p.relative_to(tmp_path / "without") for p in (tmp_path / "without").rglob("*") if p.is_file()
    )
    after = sorted(p.relative_to(tmp_path / "with") for p in (tmp_path / "with").rglob("*") if p.is_file())
    assert sorted([*map(str, before), "clinical.csv"]) == sorted(map(str, after))
    for rel in before:
        assert (tmp_path / "with" / rel).read_bytes() == (tmp_path / "without" / rel).read_bytes(), rel
    clinical = pd.read_csv(tmp_path / "with" / "clinical.csv", dtype=str)
    assert list(clinical.columns) == CLINICAL_COLUMNS and len(clinical) == 4


def test_same_seed_same_rows_other_seed_other_rows():
    patients = build_cohort(SynthConfig(patients=20, seed=1))
    assert clinical_rows(patients, 1) == clinical_rows(patients, 1)
    assert clinical_rows(patients, 1) != clinical_rows(patients, 2)


def test_counts_follow_the_diagnosis_with_overlap():
    table = frame()
    median = table.groupby("diagnosis")[["wbc", "hemoglobin", "platelets", "age"]].median()
    assert (
        median.loc["APL", "platelets"] < median.loc["AML", "platelets"] < median.loc["healthy", "platelets"]
    )
    assert median.loc["APL", "wbc"] < median.loc["AML", "wbc"]
    aa = median.loc["AA"]  # pancytopenic: all three below the healthy
    assert (
        aa[["wbc", "hemoglobin", "platelets"]] < median.loc["healthy", ["wbc", "hemoglobin", "platelets"]]
    ).all()
    assert median["age"].idxmax() == "MDS"
    # overlap: the counts alone do not separate APL from AML perfectly
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    part = table[table["diagnosis"].isin(["APL", "AML"])].dropna()
    x = np.log(part[["wbc", "platelets"]].to_numpy(float))
    y = (part["diagnosis"] == "APL").to_numpy()
    auc = roc_auc_score(y, LogisticRegression().fit(x, y).predict_proba(x)[:, 1])
    assert 0.6 < auc < 0.97
    missing = table[["wbc", "hemoglobin", "platelets"]].isna().mean()
    assert (missing > 0.005).all() and (missing < 0.08).all()


def test_age_is_prognostic_in_aml():
    table = frame(1000)
    aml = table[table["diagnosis"] == "AML"]
    rho = pd.Series(aml["age"].to_numpy(float)).corr(
        pd.Series(np.log(aml["os_months"].to_numpy(float))), "spearman"
    )
    assert rho < -0.2
