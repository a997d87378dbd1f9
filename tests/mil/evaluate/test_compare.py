"""Paired comparison of two prediction tables: exact on constructed cases, equal to a hand-rolled paired
bootstrap, consistent with each table's own metrics, and honest in its verdict."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from features.core.errors import InputError
from mil.config import EvaluateConfig
from mil.evaluate.bootstrap import resample_weights
from mil.evaluate.compare import compare_predictions
from mil.evaluate.metrics import compute_metrics
from mil.tasks import create_task
from mil.tasks.formatting import comparison_line
from tests.mil.evaluate.synth import classification_table, multilabel_table, survival_table

EVALUATE = EvaluateConfig(n_bootstrap=300, seed=4)
TABLES = {"classification": classification_table, "multilabel": multilabel_table, "survival": survival_table}


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_identical_predictions_differ_by_exactly_zero_with_a_zero_width_interval(kind):
    table, spec = TABLES[kind]()
    result = compare_predictions(table, table.copy(), spec, EVALUATE, ("head", "baseline"))
    assert (
        result["difference"]["estimate"] == 0
        and result["difference"]["low"] == 0 == result["difference"]["high"]
    )
    assert result["difference"]["n_valid"] == 300 and result["head"] == result["baseline"]
    assert "no evidence the head adds" in comparison_line(result, "AUC", "b", "the baseline")


def test_a_perfect_and_a_reversed_ranking_differ_by_one_in_every_draw():
    table, spec = classification_table(classes=("neg", "pos"))
    truth = (table["y_true"] == "pos").to_numpy(float)
    perfect = table.assign(prob_pos=0.2 + 0.6 * truth, prob_neg=0.8 - 0.6 * truth)
    reversed_ = perfect.assign(prob_pos=perfect["prob_neg"], prob_neg=perfect["prob_pos"])
    result = compare_predictions(perfect, reversed_, spec, EVALUATE, ("head", "baseline"))
    assert (result["head"]["estimate"], result["baseline"]["estimate"]) == (1.0, 0.0)
    assert (
        result["difference"]["estimate"] == result["difference"]["low"] == result["difference"]["high"] == 1.0
    )
    assert "scores above" in comparison_line(result, "AUC", "b", "the baseline")
    flipped = compare_predictions(reversed_, perfect, spec, EVALUATE, ("head", "baseline"))
    assert "scores below" in comparison_line(flipped, "AUC", "b", "the baseline")


def test_the_interval_is_a_paired_bootstrap_of_the_macro_auc_difference():
    a, spec = classification_table(seed=1, signal=1.5)
    b, _ = classification_table(seed=1, signal=0.7)  # same patients and truth, weaker scores
    classes = spec.classes
    result = compare_predictions(a, b, spec, EVALUATE, ("a", "b"))
    y = a["y_true"].map({c: i for i, c in enumerate(classes)}).to_numpy()

    def macro(table, weights=None):  # sklearn's AUC; a bootstrap draw = integer sample weights
        probs = table[[f"prob_{c}" for c in classes]].to_numpy()
        return np.mean(
            [roc_auc_score(y == c, probs[:, c], sample_weight=weights) for c in range(len(classes))]
        )

    assert result["difference"]["estimate"] == pytest.approx(macro(a) - macro(b), abs=1e-12)
    draws = resample_weights(len(y), 300, np.random.default_rng(EVALUATE.seed), strata=y)  # same draws
    diffs = [macro(a, w) - macro(b, w) for w in draws]
    low, high = np.percentile(diffs, [2.5, 97.5])
    assert (result["difference"]["low"], result["difference"]["high"]) == pytest.approx(
        (low, high), abs=1e-12
    )
    # pairing: the difference varies far less than either AUC does on its own
    width = {k: result[k]["high"] - result[k]["low"] for k in ("a", "b", "difference")}
    assert 0 < result["difference"]["low"] and width["difference"] < max(width["a"], width["b"])


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_each_models_interval_equals_the_one_in_its_own_metrics(kind):
    a, spec = TABLES[kind](seed=2)
    b, _ = TABLES[kind](seed=2)
    cols = create_task(spec).prediction_columns()
    b[cols[-1]] = np.random.default_rng(0).permutation(b[cols[-1]].to_numpy())  # another model's scores
    result = compare_predictions(a, b, spec, EVALUATE, ("a", "b"))
    metric = create_task(spec).metric_name
    for name, table in (("a", a), ("b", b)):
        own = compute_metrics(table, spec, EVALUATE)["pooled"][metric]
        assert result[name]["estimate"] == pytest.approx(own["estimate"], abs=1e-9)
        assert (result[name]["low"], result[name]["high"]) == pytest.approx(
            (own["low"], own["high"]), abs=1e-12
        )


def test_survival_a_negated_risk_mirrors_the_c_index():
    table, spec = survival_table(n=80)
    table["time"] = table["time"] + np.arange(len(table)) * 1e-4  # no tied times
    result = compare_predictions(
        table, table.assign(risk=-table["risk"]), spec, EVALUATE, ("head", "baseline")
    )
    c = result["head"]["estimate"]
    assert result["baseline"]["estimate"] == pytest.approx(1 - c) and result["difference"][
        "estimate"
    ] == pytest.approx(2 * c - 1)


def test_tables_of_other_patients_or_other_truth_are_refused_in_one_line():
    a, spec = classification_table()
    with pytest.raises(InputError, match="only in head.*same patients"):
        compare_predictions(a, a.iloc[1:], spec, EVALUATE, ("head", "baseline"))
    other = a.copy()
    other.loc[0, "y_true"] = "APL" if a.loc[0, "y_true"] != "APL" else "AML"
    with pytest.raises(InputError, match="truth y_true differs for patient P000"):
        compare_predictions(a, other, spec, EVALUATE)
    shuffled = a.sample(frac=1, random_state=0)  # row order does not matter, only the patients
    assert compare_predictions(a, shuffled, spec, EVALUATE)["difference"]["estimate"] == 0


def test_without_bootstrap_the_difference_has_no_interval_and_the_verdict_says_so():
    a, spec = classification_table(seed=3)
    b, _ = classification_table(seed=3, signal=0.5)
    result = compare_predictions(a, b, spec, EvaluateConfig(n_bootstrap=0), ("head", "baseline"))
    assert result["difference"]["estimate"] > 0 and result["difference"]["low"] is None
    line = comparison_line(result, "macro AUC", "pooled_stats", "the pooled statistics")
    assert line.startswith("macro AUC: head − pooled_stats = +") and "no evidence either way" in line
