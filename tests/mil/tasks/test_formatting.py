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
