"""Classification metrics against slow reference twins (sklearn and O(n^2) loops) and edge cases."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from mil.config import EvaluateConfig
from mil.evaluate.bootstrap import bootstrap_ci, resample_weights
from mil.evaluate.classification import (
    auc_weighted,
    balanced_accuracy_weighted,
    classification_metrics,
    confusion_matrix,
)
from mil.tasks import create_task
from tests.mil.evaluate.synth import classification_table


def prob_columns(spec) -> list[str]:
    return create_task(spec).prob_columns()


def naive_auc(positive, score):
    """Mann-Whitney by definition: every positive-negative pair, ties count one half."""
    pos, neg = score[positive], score[~positive]
    total = 0.0
    for p in pos:
        for q in neg:
            total += 1.0 if p > q else 0.5 if p == q else 0.0
    return total / (len(pos) * len(neg))


def naive_confusion(y, pred, k):
    cm = np.zeros((k, k), int)
    for t, p in zip(y, pred, strict=True):
        cm[t, p] += 1
    return cm


def ones(n):
    return np.ones((1, n))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_and_pairwise_twin(seed):
    rng = np.random.default_rng(seed)
    positive = rng.random(60) < 0.3
    score = np.round(rng.random(60) + 0.3 * positive, 1)  # rounding makes many ties
    fast = auc_weighted(positive, score, ones(60))[0]
    assert fast == pytest.approx(roc_auc_score(positive, score), abs=1e-12)
    assert fast == pytest.approx(naive_auc(positive, score), abs=1e-12)


def test_weighted_auc_equals_auc_of_explicitly_resampled_rows():
    rng = np.random.default_rng(3)
    positive = rng.random(40) < 0.5
    score = np.round(rng.random(40), 2)
    weights = resample_weights(40, 20, rng, strata=positive)
    fast = auc_weighted(positive, score, weights)
    for w, value in zip(weights, fast, strict=True):
        rows = np.repeat(np.arange(40), w.astype(int))
        assert value == pytest.approx(roc_auc_score(positive[rows], score[rows]), abs=1e-12)


def test_weighted_auc_nan_when_draw_lacks_a_class():
    positive = np.array([True, False, False])
    w = np.array([[0.0, 2, 1], [1, 1, 1]])
    out = auc_weighted(positive, np.array([0.9, 0.1, 0.2]), w)
    assert np.isnan(out[0]) and out[1] == 1.0


def test_balanced_accuracy_and_confusion_match_twins():
    rng = np.random.default_rng(4)
    y, pred = rng.integers(0, 3, 90), rng.integers(0, 3, 90)
    assert balanced_accuracy_weighted(y, pred, ones(90))[0] == pytest.approx(balanced_accuracy_score(y, pred))
    assert np.array_equal(confusion_matrix(y, pred, 3), naive_confusion(y, pred, 3))


def test_per_class_threshold_metrics_match_sklearn():
    df, spec = classification_table(n=90, signal=1.0, seed=5)
    m = classification_metrics(
        df.y_true.to_numpy(),
        df.y_pred.to_numpy(),
        df[prob_columns(spec)].to_numpy(),
        spec.classes,
        EvaluateConfig(n_bootstrap=50),
    )
    labels = spec.classes
    sens = recall_score(df.y_true, df.y_pred, labels=labels, average=None)
    prec = precision_score(df.y_true, df.y_pred, labels=labels, average=None)
    f1 = f1_score(df.y_true, df.y_pred, labels=labels, average=None)
    for j, c in enumerate(labels):
        row = m["per_class"][c]
        assert (row["sensitivity"], row["precision"], row["f1"]) == pytest.approx((sens[j], prec[j], f1[j]))
        neg = df.y_true != c
        assert row["specificity"] == pytest.approx((df.y_pred[neg] != c).mean())
        assert row["auc"]["estimate"] == pytest.approx(roc_auc_score(df.y_true == c, df[f"prob_{c}"]))
    ordered = sorted(labels)  # sklearn wants sorted labels; the macro mean does not depend on the order
    macro = roc_auc_score(
        df.y_true, df[[f"prob_{c}" for c in ordered]].to_numpy(), multi_class="ovr", labels=ordered
    )
    assert m["macro_auc"]["estimate"] == pytest.approx(macro)
    assert m["balanced_accuracy"]["estimate"] == pytest.approx(balanced_accuracy_score(df.y_true, df.y_pred))
    assert m["accuracy"] == pytest.approx((df.y_true == df.y_pred).mean())
    assert m["confusion"]["matrix"] == pd_crosstab(df, labels)


def pd_crosstab(df, labels):
    return [[int(((df.y_true == t) & (df.y_pred == p)).sum()) for p in labels] for t in labels]


def test_absent_class_gives_nan_with_reason_and_macro_over_present():
    df, spec = classification_table(n=90, seed=6)
    df = df[df.y_true != "healthy"]  # a fold without healthy donors
    m = classification_metrics(
        df.y_true.to_numpy(),
        df.y_pred.to_numpy(),
        df[prob_columns(spec)].to_numpy(),
        spec.classes,
        EvaluateConfig(n_bootstrap=100),
    )
    healthy = m["per_class"]["healthy"]
    assert healthy["auc"]["estimate"] is None and "no patient of class healthy" in healthy["auc"]["reason"]
    assert healthy["sensitivity"] is None and "sensitivity" in healthy["reasons"]
    assert m["macro_auc_classes"] == ["APL", "AML"]
    present = [m["per_class"][c]["auc"]["estimate"] for c in ("APL", "AML")]
    assert m["macro_auc"]["estimate"] == pytest.approx(np.mean(present))


def test_one_class_only_is_undefined_not_a_crash():
    df, spec = classification_table(n=30, seed=7)
    df = df[df.y_true == "AML"]
    m = classification_metrics(
        df.y_true.to_numpy(),
        df.y_pred.to_numpy(),
        df[prob_columns(spec)].to_numpy(),
        spec.classes,
        EvaluateConfig(n_bootstrap=20),
    )
    assert m["macro_auc"]["estimate"] is None and m["macro_auc"]["reason"]
    assert m["per_class"]["AML"]["auc"]["reason"].startswith("every patient is AML")


def test_perfect_predictions():
    y = np.array(["a", "b"] * 20)
    probs = np.stack([(y == "a") * 0.9 + 0.05, (y == "b") * 0.9 + 0.05], axis=1)
    m = classification_metrics(y, y, probs, ["a", "b"], EvaluateConfig(n_bootstrap=200))
    assert m["macro_auc"]["estimate"] == 1 and m["macro_auc"]["low"] == 1 and m["macro_auc"]["high"] == 1
    assert m["balanced_accuracy"]["estimate"] == 1
    assert m["binary"]["youden"]["sensitivity"] == 1 and m["binary"]["youden"]["specificity"] == 1


def test_random_predictions_auc_near_half_and_ci_covers_it():
    covered, estimates = 0, []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        positive = rng.random(200) < 0.4
        ci = bootstrap_ci(auc_weighted, positive, rng.random(200), n=300, rng=seed, strata=positive)
        estimates.append(ci.estimate)
        covered += ci.low <= 0.5 <= ci.high
    assert abs(np.mean(estimates) - 0.5) < 0.02
    assert covered >= 34  # nominal 95% of 40 = 38; a CI collapsed onto the estimate would cover ~never


def test_binary_block_uses_second_class_as_positive():
    rng = np.random.default_rng(8)
    y = np.where(rng.random(80) < 0.5, "neg", "pos")
    p_pos = np.clip(0.5 + 0.3 * (y == "pos") + rng.normal(scale=0.25, size=80), 0, 1)
    pred = np.where(p_pos > 0.5, "pos", "neg")
    m = classification_metrics(
        y, pred, np.stack([1 - p_pos, p_pos], axis=1), ["neg", "pos"], EvaluateConfig(n_bootstrap=100)
    )
    b = m["binary"]
    assert b["positive_class"] == "pos"
    assert b["auc"]["estimate"] == pytest.approx(roc_auc_score(y == "pos", p_pos))
    assert b["argmax"]["sensitivity"] == pytest.approx((pred[y == "pos"] == "pos").mean())
    j_youden = b["youden"]["sensitivity"] + b["youden"]["specificity"]
    j_argmax = b["argmax"]["sensitivity"] + b["argmax"]["specificity"]
    assert j_youden >= j_argmax - 1e-12  # Youden is the best J on these data by construction
    hit = p_pos >= b["youden"]["threshold"]
    assert b["youden"]["sensitivity"] == pytest.approx(hit[y == "pos"].mean())


def test_ci_reproducible_and_contains_estimate():
    df, spec = classification_table(n=150, seed=9)
    args = (df.y_true.to_numpy(), df.y_pred.to_numpy(), df[prob_columns(spec)].to_numpy(), spec.classes)
    a, b, c = (
        classification_metrics(*args, EvaluateConfig(n_bootstrap=300, seed=1)),
        classification_metrics(*args, EvaluateConfig(n_bootstrap=300, seed=1)),
        classification_metrics(*args, EvaluateConfig(n_bootstrap=300, seed=2)),
    )
    assert a == b
    assert a["macro_auc"]["low"] != c["macro_auc"]["low"]
    for block in (a["macro_auc"], a["balanced_accuracy"], *[r["auc"] for r in a["per_class"].values()]):
        assert block["low"] <= block["estimate"] <= block["high"]


def test_auc_bootstrap_1000_draws_500_patients_under_2s():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    probs = rng.dirichlet(np.ones(3), 500)
    start = time.perf_counter()
    m = classification_metrics(
        y.astype(str), probs.argmax(1).astype(str), probs, ["0", "1", "2"], EvaluateConfig(n_bootstrap=1000)
    )
    elapsed = time.perf_counter() - start  # 3 per-class + macro AUC + balanced accuracy, 1000 draws each
    assert m["macro_auc"]["n_valid"] == 1000
    assert elapsed < 2.0, f"{elapsed:.2f} s"
