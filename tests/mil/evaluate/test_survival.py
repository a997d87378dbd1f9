"""Survival: c-index vs lifelines and a naive Harrell loop, risk sign, risk groups, degenerate cohorts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lifelines.utils import concordance_index

from mil.config import EvaluateConfig
from mil.evaluate.bootstrap import resample_weights
from mil.evaluate.survival import concordance, concordance_weighted, risk_groups, survival_metrics
from tests.mil.evaluate.synth import survival_table


def naive_harrell(time, event, risk):
    """Harrell's C by definition, every unordered pair once. Comparable: the earlier time is an event, or equal
    times where exactly one is an event (the censored one outlived the event). Credit: higher risk for the
    earlier (or event) patient = 1, tied risk = 1/2."""
    num = den = 0.0
    n = len(time)
    for a in range(n):
        for b in range(a + 1, n):
            if time[a] == time[b]:
                if event[a] == event[b]:
                    continue
                first, second = (a, b) if event[a] else (b, a)
            else:
                first, second = (a, b) if time[a] < time[b] else (b, a)
                if not event[first]:
                    continue
            den += 1
            num += 1.0 if risk[first] > risk[second] else 0.5 if risk[first] == risk[second] else 0.0
    return num / den if den else math.nan


def ones(n):
    return np.ones((1, n))


@pytest.mark.parametrize("seed", range(6))
def test_cindex_matches_lifelines_and_naive_twin_with_ties_and_censoring(seed):
    rng = np.random.default_rng(seed)
    n = 50
    time = rng.integers(1, 12, n).astype(float)  # many tied times
    event = (rng.random(n) < 0.6).astype(int)
    risk = np.round(rng.normal(size=n) - 0.1 * time, 0)  # many tied risks
    reference = naive_harrell(time, event, risk)
    assert concordance(time, event, risk) == pytest.approx(reference, abs=1e-12)
    assert concordance_weighted(time, event, risk, ones(n))[0] == pytest.approx(reference, abs=1e-12)


def test_risk_sign_higher_risk_earlier_event_is_concordant():
    time = np.array([1.0, 2, 3, 4, 5])
    event = np.ones(5, int)
    risk = -time  # the earliest death has the highest risk: perfect
    assert concordance(time, event, risk) == 1.0
    assert concordance(time, event, -risk) == 0.0
    assert concordance_index(time, risk, event) == 0.0  # the trap: a raw risk handed to lifelines inverts C


def test_weighted_cindex_equals_lifelines_on_resampled_rows():
    df, _ = survival_table(n=40, seed=1)
    t, e, r = df.time.to_numpy(), df.event.to_numpy(), df.risk.to_numpy()
    weights = resample_weights(40, 15, np.random.default_rng(2))
    fast = concordance_weighted(t, e, r, weights)
    for w, value in zip(weights, fast, strict=True):
        rows = np.repeat(np.arange(40), w.astype(int))
        assert value == pytest.approx(concordance_index(t[rows], -r[rows], e[rows]), abs=1e-12)


def test_blocked_pairs_equal_one_block(monkeypatch):
    import mil.evaluate.survival as sv

    df, _ = survival_table(n=60, seed=2)
    args = (df.time.to_numpy(), df.event.to_numpy(), df.risk.to_numpy())
    weights = resample_weights(60, 10, np.random.default_rng(0))
    whole = concordance_weighted(*args, weights)
    monkeypatch.setattr(sv, "_MAX_BLOCK_CELLS", 120)  # 2 rows per block
    assert np.allclose(concordance_weighted(*args, weights), whole)


def test_metrics_block_ci_groups_and_logrank():
    df, _ = survival_table(n=150, seed=3)
    m = survival_metrics(df.time, df.event, df.risk, EvaluateConfig(n_bootstrap=300, seed=0))
    c = m["c_index"]
    assert c["estimate"] == pytest.approx(concordance_index(df.time, -df.risk, df.event))
    assert 0.6 < c["low"] <= c["estimate"] <= c["high"] < 0.95
    assert m["groups"]["low"]["n"] + m["groups"]["high"]["n"] == 150
    assert m["groups"]["high"]["median_survival"] < m["groups"]["low"]["median_survival"]
    assert m["logrank_p"] < 0.01
    assert m == survival_metrics(df.time, df.event, df.risk, EvaluateConfig(n_bootstrap=300, seed=0))


def test_random_risk_cindex_near_half():
    values = []
    for seed in range(20):
        df, _ = survival_table(n=100, seed=seed)
        values.append(concordance(df.time, df.event, np.random.default_rng(1000 + seed).normal(size=100)))
    assert abs(np.mean(values) - 0.5) < 0.03


def test_all_censored_is_a_reason_not_a_crash():
    df, _ = survival_table(n=30, seed=4)
    m = survival_metrics(df.time, np.zeros(30, int), df.risk, EvaluateConfig(n_bootstrap=100))
    assert m["c_index"]["estimate"] is None and "censored" in m["c_index"]["reason"]
    assert m["logrank_p"] is None and "no events" in m["reasons"]["logrank_p"]
    assert m["n_events"] == 0


def test_no_comparable_pair():
    time = np.array([1.0, 2, 3, 10])
    event = np.array([0, 0, 0, 1])  # the only event is the last time: nobody is known to outlive anyone
    m = survival_metrics(time, event, np.array([0.1, 0.2, 0.3, 0.4]), EvaluateConfig(n_bootstrap=50))
    assert m["c_index"]["estimate"] is None and "comparable" in m["c_index"]["reason"]


def test_few_events_skips_draws_and_counts_them():
    rng = np.random.default_rng(5)
    time = rng.exponential(10, 40)
    event = np.zeros(40, int)
    event[np.argsort(time)[:2]] = 1  # 2 events: many draws hold no event
    m = survival_metrics(time, event, rng.normal(size=40), EvaluateConfig(n_bootstrap=300))
    c = m["c_index"]
    assert c["estimate"] is not None and c["n_valid"] < 300
    assert (c["low"] is None) == (c["n_valid"] < 270)


def test_tied_risk_cannot_be_split():
    df, _ = survival_table(n=20, seed=6)
    m = survival_metrics(df.time, df.event, np.zeros(20), EvaluateConfig(n_bootstrap=20))
    assert m["c_index"]["estimate"] == 0.5  # all risks tied: every comparable pair scores 1/2
    assert m["groups"]["high"]["n"] == 0 and m["groups"]["high"]["reason"] == "empty group"
    assert m["logrank_p"] is None and "tied" in m["reasons"]["logrank_p"]


def test_risk_groups_median_and_tertiles():
    risk = np.arange(9.0)
    groups, cuts = risk_groups(risk)
    assert cuts == [4.0] and list(groups) == ["low"] * 5 + ["high"] * 4
    groups, cuts = risk_groups(risk, "tertiles")
    assert list(groups) == ["low"] * 3 + ["intermediate"] * 3 + ["high"] * 3
    with pytest.raises(ValueError):
        risk_groups(risk, "quartiles")
    df, _ = survival_table(n=90, seed=7)
    m = survival_metrics(df.time, df.event, df.risk, EvaluateConfig(n_bootstrap=0), group_method="tertiles")
    assert set(m["groups"]) == {"low", "intermediate", "high"} and m["logrank_p"] is not None
