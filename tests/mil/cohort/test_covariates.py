"""Clinical covariates: read and checked with one line per problem; encoded with a fold's training patients
only (poisoning the test patients' values leaves the fold's statistics unchanged); saved and reloaded exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.core.errors import InputError
from mil.cohort.covariates import CovariateEncoder, parse_columns, read_covariates

PATIENTS = [f"P{i}" for i in range(8)]


def table(**columns) -> pd.DataFrame:
    frame = pd.DataFrame({"patient_id": PATIENTS, **columns})
    return frame.astype(object).where(frame.notna(), None)


def base() -> pd.DataFrame:
    return table(
        wbc=["4.1", "12", "3", None, "50", "7.5", "2.2", "9"],
        sex=["M", "F", "F", "M", None, "M", "F", "M"],
    )


def test_columns_parse_from_commas_and_repeats():
    assert parse_columns(["wbc,age", " sex "]) == ["wbc", "age", "sex"]


def test_kinds_are_read_from_the_data():
    cov = read_covariates(["wbc", "sex"], base(), "labels.csv", PATIENTS)
    assert cov.kinds == {"wbc": "numeric", "sex": "categorical"}
    assert np.isnan(cov.values.loc["P3", "wbc"]) and cov.values.loc["P4", "sex"] is None


def test_a_column_that_does_not_exist_is_one_line():
    with pytest.raises(InputError, match=r"labels.csv: covariate column 'wbcc' not found") as err:
        read_covariates(["wbcc"], base(), "labels.csv", PATIENTS)
    assert "\n" not in str(err.value)


def test_words_in_a_numeric_column_name_the_patients():
    bad = base()
    bad.loc[2, "wbc"] = "3,5"
    bad.loc[6, "wbc"] = "high"
    with pytest.raises(
        InputError, match=r"'wbc' is numeric but 2 patient\(s\) hold non-numbers: P2 \('3,5'\), P6"
    ):
        read_covariates(["wbc"], bad, "labels.csv", PATIENTS)


def test_an_all_missing_column_is_refused_at_training():
    empty = table(hb=[None] * 8)
    with pytest.raises(InputError, match=r"'hb' is empty for all 8 patients"):
        read_covariates(["hb"], empty, "labels.csv", PATIENTS)


def test_a_patient_without_a_row_in_the_clinical_table_is_named():
    with pytest.raises(InputError, match=r"clinical.csv: 1 patient\(s\) have no row \(P9\)"):
        read_covariates(["wbc"], base(), "clinical.csv", [*PATIENTS, "P9"])


def test_a_column_missing_at_prediction_says_what_the_run_needs():
    with pytest.raises(InputError, match="covariate column 'age' not found.*trained with covariates age"):
        read_covariates(
            ["age"], base(), "new.csv", PATIENTS, {"age": "numeric"}, "trained with covariates age"
        )


def test_encoding_standardises_imputes_and_one_hot_encodes():
    cov = read_covariates(["wbc", "sex"], base(), "labels.csv", PATIENTS)
    encoder = CovariateEncoder.fit(cov, PATIENTS[:6])
    assert encoder.names == ["wbc", "wbc_missing", "sex=F", "sex=M", "sex_missing"]
    x, warnings = encoder.transform(cov, PATIENTS)
    assert warnings == []
    train = x[:6]
    np.testing.assert_allclose(train[:, 0].mean(), 0, atol=1e-6)
    np.testing.assert_allclose(train[:, 0].std(), 1, atol=1e-5)
    assert x[3, 1] == 1 and x[3, 0] == pytest.approx(
        (7.5 - encoder.columns[0]["mean"]) / encoder.columns[0]["sd"]
    )
    assert x[4].tolist()[2:] == [0, 1, 1]  # missing sex -> the mode (M) + indicator
    assert encoder.columns[0]["median"] == 7.5  # median of 4.1, 12, 3, 50, 7.5 (P3 missing)


def test_statistics_use_the_training_patients_only_poisoned_test_values_change_nothing():
    """The leakage test: give the fold's test patients absurd values (and missing cells, and a new category);
    the fold's statistics and the training rows of the design must not move."""
    train, test = PATIENTS[:5], PATIENTS[5:]
    clean = read_covariates(["wbc", "sex"], base(), "labels.csv", PATIENTS)
    poisoned_table = base()
    poisoned_table.loc[5:, "wbc"] = ["1e9", None, "-1e9"]
    poisoned_table.loc[5:, "sex"] = [None, "X", "X"]
    poisoned = read_covariates(["wbc", "sex"], poisoned_table, "labels.csv", PATIENTS)
    a, b = CovariateEncoder.fit(clean, train), CovariateEncoder.fit(poisoned, train)
    assert a.to_dict() == b.to_dict()
    np.testing.assert_array_equal(a.transform(clean, train)[0], b.transform(poisoned, train)[0])
    # and the statistics do depend on whoever IS in training (the test above is not vacuous)
    assert CovariateEncoder.fit(poisoned, PATIENTS).to_dict() != a.to_dict()
    _, warnings = b.transform(poisoned, test)
    assert len(warnings) == 1 and "category 'X' not seen in training (2 patient(s), e.g. P6)" in warnings[0]
    assert b.transform(poisoned, ["P6"])[0][0, 2:4].tolist() == [0, 0]  # unknown category: all zeros


def test_encoder_round_trips_through_plain_types():
    cov = read_covariates(["wbc", "sex"], base(), "labels.csv", PATIENTS)
    encoder = CovariateEncoder.fit(cov, PATIENTS)
    again = CovariateEncoder.from_dict(encoder.to_dict())
    np.testing.assert_array_equal(again.transform(cov, PATIENTS)[0], encoder.transform(cov, PATIENTS)[0])


def test_prediction_imputes_a_column_empty_for_every_new_patient():
    cov = read_covariates(["wbc", "sex"], base(), "labels.csv", PATIENTS)
    encoder = CovariateEncoder.fit(cov, PATIENTS)
    new = table(wbc=[None] * 8, sex=["F"] * 8)
    got = read_covariates(["wbc", "sex"], new, "new.csv", PATIENTS, encoder.kinds)
    x, _ = encoder.transform(got, PATIENTS)
    assert np.isfinite(x).all() and (x[:, 1] == 1).all()
