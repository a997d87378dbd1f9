"""compute_metrics: per-fold and pooled blocks, fold summary, strict JSON with a reason for every null."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from features.core.errors import InputError
from mil.config import EvaluateConfig
from mil.evaluate import compute_metrics
from tests.mil.evaluate.synth import classification_table, multilabel_table, survival_table


def nulls_have_reasons(node, parent=None, key=None):
    """Every None sits in a CI object with `reason`, or its key is in the parent's `reasons`."""
    if isinstance(node, dict):
        for k, v in node.items():
            nulls_have_reasons(v, node, k)
    elif isinstance(node, list):
        for v in node:
            nulls_have_reasons(v, parent, key)
    elif node is None:
        assert "reason" in parent or key in parent.get("reasons", {}), f"null {key!r} without a reason"


@pytest.mark.parametrize("make", [classification_table, survival_table, multilabel_table])
def test_document_shape_and_strict_json(make):
    df, spec = make(n=90)
    m = compute_metrics(df, spec, EvaluateConfig(n_bootstrap=100, seed=0))
    json.dumps(m, allow_nan=False)
    assert m["schema"] == "mil.metrics/1" and m["kind"] == spec.kind and m["n_patients"] == 90
    assert list(m["folds"]) == ["0", "1", "2"]
    assert sum(b["n"] for b in m["folds"].values()) == m["pooled"]["n"] == 90
    headline = "c_index" if spec.kind == "survival" else "macro_auc"
    assert set(m["pooled"][headline]) >= {"estimate", "low", "high", "n_boot", "n_valid"}
    summary = m["fold_summary"][headline]
    assert summary["n_folds"] == 3
    assert summary["mean"] == pytest.approx(np.mean([b[headline]["estimate"] for b in m["folds"].values()]))
    nulls_have_reasons(m)


def test_fold_blocks_are_the_fold_rows_only():
    df, spec = classification_table(n=90, seed=1)
    m = compute_metrics(df, spec, EvaluateConfig(n_bootstrap=0))
    fold1 = df[df.fold == 1]
    assert m["folds"]["1"]["per_class"]["AML"]["auc"]["estimate"] == pytest.approx(
        roc_auc_score(fold1.y_true == "AML", fold1.prob_AML)
    )
    assert m["pooled"]["macro_auc"]["low"] is None and "disabled" in m["pooled"]["macro_auc"]["reason"]


def test_fold_missing_a_class_is_visible():
    df, spec = classification_table(n=90, seed=2)
    df = df[~((df.fold == 2) & (df.y_true == "healthy"))]
    m = compute_metrics(df, spec, EvaluateConfig(n_bootstrap=50))
    assert m["folds"]["2"]["macro_auc_classes"] == ["APL", "AML"]
    assert m["folds"]["2"]["per_class"]["healthy"]["auc"]["estimate"] is None
    assert m["pooled"]["macro_auc_classes"] == ["APL", "AML", "healthy"]
    nulls_have_reasons(m)


def test_external_cohort_without_folds_and_degenerate_survival():
    df, spec = survival_table(n=20)
    df = df.assign(fold=np.nan, event=0)
    m = compute_metrics(df, spec, EvaluateConfig(n_bootstrap=20))
    assert m["folds"] == {} and m["fold_summary"] == {}
    assert m["pooled"]["c_index"]["estimate"] is None
    json.dumps(m, allow_nan=False)
    nulls_have_reasons(m)


def test_missing_truth_is_an_input_error():
    df, spec = classification_table(n=10)
    with pytest.raises(InputError, match="--labels"):
        compute_metrics(df.assign(y_true=np.nan), spec, EvaluateConfig())


def test_seed_reproducible():
    df, spec = survival_table(n=60, seed=3)
    a, b = (
        compute_metrics(df, spec, EvaluateConfig(n_bootstrap=100, seed=4)),
        compute_metrics(df, spec, EvaluateConfig(n_bootstrap=100, seed=5)),
    )
    assert a == compute_metrics(df, spec, EvaluateConfig(n_bootstrap=100, seed=4))
    assert a["pooled"]["c_index"]["low"] != b["pooled"]["c_index"]["low"]
    assert a["pooled"]["c_index"]["estimate"] == b["pooled"]["c_index"]["estimate"]
