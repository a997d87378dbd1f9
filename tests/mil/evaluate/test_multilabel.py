"""Multi-label: each label is a binary task; stratified by label pattern; labels without positives."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from mil.config import EvaluateConfig
from mil.evaluate.multilabel import multilabel_metrics
from mil.tasks import create_task
from tests.mil.evaluate.synth import multilabel_table


def test_per_label_metrics_match_sklearn():
    df, spec = multilabel_table(n=150, seed=0)
    truth, probs = (
        df[create_task(spec).truth_columns()].to_numpy(),
        df[create_task(spec).prob_columns()].to_numpy(),
    )
    m = multilabel_metrics(truth, probs, spec.classes, EvaluateConfig(n_bootstrap=200))
    aucs = []
    for j, name in enumerate(spec.classes):
        row = m["per_class"][name]
        pred = probs[:, j] >= 0.5
        assert row["auc"]["estimate"] == pytest.approx(roc_auc_score(truth[:, j], probs[:, j]))
        assert row["sensitivity"] == pytest.approx(recall_score(truth[:, j], pred))
        assert row["precision"] == pytest.approx(precision_score(truth[:, j], pred))
        assert row["support"] == truth[:, j].sum() and row["prevalence"] == pytest.approx(truth[:, j].mean())
        assert row["auc"]["n_valid"] == 200  # stratified by label pattern: no draw lacks a class
        assert row["auc"]["low"] <= row["auc"]["estimate"] <= row["auc"]["high"]
        aucs.append(row["auc"]["estimate"])
    assert m["macro_auc"]["estimate"] == pytest.approx(np.mean(aucs))


def test_label_without_positives_is_excluded_from_macro():
    df, spec = multilabel_table(n=60, seed=1)
    truth, probs = (
        df[create_task(spec).truth_columns()].to_numpy(),
        df[create_task(spec).prob_columns()].to_numpy(),
    )
    truth[:, 1] = 0
    m = multilabel_metrics(truth, probs, spec.classes, EvaluateConfig(n_bootstrap=50))
    rare = m["per_class"][spec.classes[1]]
    assert rare["auc"]["estimate"] is None and "no positive" in rare["auc"]["reason"]
    assert rare["sensitivity"] is None and rare["reasons"]["sensitivity"]
    assert m["macro_auc_classes"] == [spec.classes[0]]
    assert m["macro_auc"]["estimate"] == pytest.approx(m["per_class"][spec.classes[0]]["auc"]["estimate"])
