"""The one headline format: an estimate with its CI as one cell or two, and each kind's summary line."""

from __future__ import annotations

import pytest

from mil.config import EvaluateConfig
from mil.evaluate import compute_metrics
from mil.tasks import create_task
from mil.tasks.formatting import ci_cells, format_ci
from tests.mil.evaluate.synth import classification_table, multilabel_table, survival_table

CI = {"estimate": 0.8123, "low": 0.7004, "high": 0.9, "n_boot": 100, "n_valid": 100}


def test_ci_cells():
    assert ci_cells(CI) == ("0.812", "0.700-0.900")
    assert ci_cells({"estimate": 0.5, "low": None, "high": None, "reason": "bootstrap disabled (n=0)"}) == (
        "0.500",
        "bootstrap disabled (n=0)",
    )
    assert ci_cells({"estimate": None, "low": None, "high": None, "reason": "no events"}) == (
        "-",
        "no events",
    )
    assert ci_cells(0.25) == ("0.250", "") and ci_cells(None) == ("-", "")
    assert ci_cells({"estimate": -0.5, "low": -1.25, "high": 0.1}) == ("-0.500", "-1.250 to 0.100")


def test_format_ci_one_cell():
    assert format_ci(CI) == "0.812 (95% CI 0.700-0.900)"
    assert format_ci({"estimate": 0.5, "low": None, "high": None, "reason": "bootstrap disabled"}) == "0.500"
    assert (
        format_ci({"estimate": None, "low": None, "high": None, "reason": "no events"}) == "n/a (no events)"
    )
    assert format_ci({}) == "n/a" and format_ci(None) == "n/a" and format_ci(0.25) == "0.250"


@pytest.mark.parametrize(
    "make, label, key",
    [(classification_table, "macro AUC", "macro_auc"), (multilabel_table, "macro AUC", "macro_auc"),
     (survival_table, "c-index", "c_index")],
)  # fmt: skip
def test_summary_line_of_each_kind(make, label, key):
    df, spec = make(n=60)
    pooled = compute_metrics(df, spec, EvaluateConfig(n_bootstrap=50))["pooled"]
    est, low, high = (pooled[key][k] for k in ("estimate", "low", "high"))
    # the line `mil demo` prints after training, e.g. "macro AUC 0.812 (95% CI 0.700-0.900)"
    assert create_task(spec).summary(pooled) == f"{label} {est:.3f} (95% CI {low:.3f}-{high:.3f})"


def test_comparison_line_claims_no_more_than_the_interval():
    from mil.tasks.formatting import comparison_line

    def line(est, low, high, **extra):
        diff = {"estimate": est, "low": low, "high": high, **extra}
        return comparison_line({"difference": diff}, "macro AUC", "pooled_stats", "the pooled statistics")

    assert line(-0.04, -0.10, 0.02) == (
        "macro AUC: head − pooled_stats = -0.040 [-0.100, +0.020]: no evidence the head adds to the pooled statistics"
    )
    assert line(0.04, 0.0, 0.08).endswith("no evidence the head adds to the pooled statistics")  # 0 is in it
    assert line(0.06, 0.01, 0.11).endswith(
        "the head scores above the pooled statistics (the 95% CI excludes 0)"
    )
    assert line(-0.2, -0.3, -0.1).endswith(
        "the head scores below the pooled statistics (the 95% CI excludes 0)"
    )
    assert "no evidence either way" in line(0.1, None, None, reason="bootstrap disabled (n=0)")
    assert line(None, None, None, reason="no events") == "macro AUC: head − pooled_stats: n/a (no events)"


def test_comparison_rows_show_each_baseline_or_why_it_did_not_run():
    from mil.tasks.formatting import comparison_rows

    diff = {"estimate": -0.05, "low": -0.12, "high": 0.02}
    rows = comparison_rows(
        "macro_auc",
        {"macro_auc": CI},
        {"pooled_stats": {"status": "ok"}, "cells": {"status": "skipped", "reason": "no cell model"}},
        {"pooled_stats": {"baseline": {"estimate": 0.86, "low": 0.8, "high": 0.9}, "difference": diff}},
        "abmil (head)",
    )
    assert rows == [
        ("abmil (head)", "0.812", "0.700-0.900", "", ""),
        ("pooled_stats", "0.860", "0.800-0.900", "-0.050", "-0.120 to 0.020"),
        ("cells", "-", "skipped: no cell model", "", ""),
    ]
