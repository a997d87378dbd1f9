"""The one bootstrap: weights are row resampling, seeds reproduce, skipped draws are counted."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mil.evaluate.bootstrap import CI, bootstrap_ci, resample_weights


def weighted_mean(x, weights):
    return (weights * x).sum(axis=1) / weights.sum(axis=1)


def test_weights_are_row_resampling_counts():
    w = resample_weights(50, 200, np.random.default_rng(0))
    assert w.shape == (200, 50)
    assert np.all(w.sum(axis=1) == 50)  # each draw has n rows
    assert np.all(w == np.round(w)) and w.min() >= 0
    assert abs(w.mean() - 1) < 0.02  # each row drawn once per draw on average


def test_stratified_weights_keep_stratum_sizes():
    strata = np.array([0] * 7 + [1] * 30 + [2] * 3)
    w = resample_weights(40, 500, np.random.default_rng(1), strata)
    for k, size in [(0, 7), (1, 30), (2, 3)]:
        assert np.all(w[:, strata == k].sum(axis=1) == size)


def test_mean_ci_matches_index_resampling_loop():
    """Slow twin: the textbook loop over index draws gives the same distribution (not the same draws)."""
    x = np.random.default_rng(2).normal(size=80)
    fast = bootstrap_ci(weighted_mean, x, n=4000, rng=3)
    rng = np.random.default_rng(4)
    slow = np.array([x[rng.integers(0, 80, 80)].mean() for _ in range(4000)])
    assert fast.estimate == pytest.approx(x.mean())
    assert fast.low == pytest.approx(np.percentile(slow, 2.5), abs=0.03)
    assert fast.high == pytest.approx(np.percentile(slow, 97.5), abs=0.03)
    se = x.std(ddof=1) / math.sqrt(80)  # and the normal approximation
    assert fast.high - fast.low == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_same_seed_same_ci_other_seed_differs():
    x = np.random.default_rng(5).normal(size=60)
    a = bootstrap_ci(weighted_mean, x, n=500, rng=7)
    b = bootstrap_ci(weighted_mean, x, n=500, rng=np.random.default_rng(7))
    c = bootstrap_ci(weighted_mean, x, n=500, rng=8)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert abs(a.low - c.low) < 0.1  # slightly different, not wildly


def test_ci_contains_estimate_and_is_ordered():
    x = np.random.default_rng(6).exponential(size=100)
    ci = bootstrap_ci(weighted_mean, x, n=1000, rng=0)
    assert ci.low < ci.estimate < ci.high
    assert ci.n_boot == ci.n_valid == 1000


def test_chunked_draws_equal_one_chunk(monkeypatch):
    import mil.evaluate.bootstrap as bs

    x = np.random.default_rng(9).normal(size=100)
    whole = bootstrap_ci(weighted_mean, x, n=300, rng=1)
    monkeypatch.setattr(bs, "_MAX_CHUNK_CELLS", 1000)  # 10 draws per chunk
    chunked = bootstrap_ci(weighted_mean, x, n=300, rng=1)
    assert chunked.n_valid == 300
    assert chunked.low == pytest.approx(whole.low, abs=0.05)  # same distribution; the stream differs


def test_undefined_draws_are_skipped_and_counted():
    x = np.arange(30.0)

    def sometimes_nan(x, weights):
        out = weighted_mean(x, weights)
        return np.where(weights[:, 0] > 0, out, np.nan)  # undefined when row 0 was not drawn (~36%)

    ci = bootstrap_ci(sometimes_nan, x, n=400, rng=0, min_valid=0.5)
    assert 200 < ci.n_valid < 330 and ci.reason is None
    strict = bootstrap_ci(sometimes_nan, x, n=400, rng=0)  # default needs 90% valid draws
    assert math.isnan(strict.low) and "only" in strict.reason and strict.estimate == pytest.approx(14.5)


def test_disabled_and_empty():
    x = np.ones(5)
    off = bootstrap_ci(weighted_mean, x, n=0, rng=0)
    assert off.estimate == 1 and math.isnan(off.low) and "disabled" in off.reason
    assert "no patients" in bootstrap_ci(weighted_mean, np.array([]), n=10, rng=0).reason


def test_to_dict_is_strict_json_with_reasons():
    d = CI.undefined("no patient of class APL here").to_dict()
    assert d["estimate"] is None and d["reason"].startswith("no patient")
    json.dumps(d, allow_nan=False)
    ok = CI(0.8, 0.7, 0.9, 100, 100).to_dict()
    assert "reason" not in ok and ok["low"] == 0.7
