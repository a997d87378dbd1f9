"""benchmarks/covariates.py end to end on tiny cohorts: every cohort kind writes, trains the three models and
returns their metrics (the real figures come from running the script; benchmarks/RESULTS.md)."""

from __future__ import annotations

import sys

import pytest

from tests.paths import BENCH

sys.path.insert(0, str(BENCH))

import covariates as bench  # noqa: E402


@pytest.mark.parametrize("cohort", ["both", "synth_clinical", "survival"])
def test_each_cohort_runs_the_three_models(cohort, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "BENCH_DIR", tmp_path)
    result = bench.run_one(cohort, seed=0, patients=30, epochs=2)
    for model in ("covariates_only", "image_only", "fused"):
        assert 0.0 <= result[model] <= 1.0
    low, high = result["fused_minus_best_ci"]
    assert low <= high
