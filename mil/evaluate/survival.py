"""Survival metrics through lifelines: Harrell's c-index with a bootstrap CI, risk groups, Kaplan-Meier, log-rank.

Sign convention, owned by `concordance` alone: models output a risk (higher = worse = earlier event), lifelines'
`concordance_index` expects predicted survival times (higher = later), so it is given `-risk`. Nothing else in
`mil` negates a risk.

Harrell's comparable pairs (as lifelines): patient i with an event and j with a later time, or with the same
time and no event (a censored patient at the event time was still at risk). Two events at the same time, or an
earlier censoring, are not comparable. A comparable pair is concordant when the earlier patient has the higher
risk; tied risks count one half.

Decisions:
- Risk groups split at the median predicted risk ("low" <= median < "high"); `method="tertiles"` gives three
  groups. The median is the default because AML cohorts of a few hundred patients leave too few events per
  tertile for a meaningful curve. The cut is taken on the evaluated patients themselves.
- The c-index bootstrap resamples patients (no stratification); draws without a comparable pair are skipped and
  counted (see `bootstrap.py`).
- No events, no comparable pair, or a risk that cannot be split give NaN with a reason, never an exception.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test
from lifelines.utils import concordance_index

from mil.config import EvaluateConfig
from mil.evaluate.bootstrap import CI, bootstrap_ci

_MAX_BLOCK_CELLS = 4_000_000  # pairwise rows are built in blocks of at most this many cells (32 MB)
GROUP_METHODS = {"median": ("low", "high"), "tertiles": ("low", "intermediate", "high")}


def concordance(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's c-index of a risk score (higher = worse) by lifelines; NaN if no pair is comparable."""
    try:
        return float(
            concordance_index(np.asarray(time, float), -np.asarray(risk, float), np.asarray(event, float))
        )
    except ZeroDivisionError:
        return math.nan


def concordance_weighted(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Harrell's c-index for each row of bootstrap weights (B x n) in O(B*n^2) matrix products.

    With counts w, a draw holds w_i * w_j copies of each ordered pair (i, j); copies of one patient are never
    comparable (same time, same event status), so num/den = w^T K w / w^T A w with A the comparable-pair
    matrix and K the concordant credit. Ones as weights give exactly lifelines' value on the data.
    """
    time, risk = np.asarray(time, float), np.asarray(risk, float)
    event = np.asarray(event, bool)
    n = len(time)
    numerator = np.zeros(len(weights))
    denominator = np.zeros(len(weights))
    step = max(1, _MAX_BLOCK_CELLS // max(n, 1))
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        t_i, e_i, r_i = time[rows, None], event[rows, None], risk[rows, None]
        comparable = e_i & ((t_i < time) | ((t_i == time) & ~event))
        credit = comparable * ((r_i > risk) + 0.5 * (r_i == risk))
        w_rows = weights[:, rows]
        numerator += ((w_rows @ credit) * weights).sum(axis=1)
        denominator += ((w_rows @ comparable.astype(float)) * weights).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def risk_groups(risk: np.ndarray, method: str = "median") -> tuple[np.ndarray, list[float]]:
    """Group name per patient and the cut points on the risk scale (see the module docstring)."""
    if method not in GROUP_METHODS:
        raise ValueError(f"risk group method {method!r}: choose one of {', '.join(GROUP_METHODS)}")
    names = GROUP_METHODS[method]
    cuts = [float(np.quantile(risk, q)) for q in np.linspace(0, 1, len(names) + 1)[1:-1]]
    return np.asarray(names, dtype=object)[np.searchsorted(cuts, risk, side="left")], cuts


def kaplan_meier(
    time: np.ndarray, event: np.ndarray, groups: np.ndarray, order: list[str] | tuple[str, ...]
) -> dict[str, KaplanMeierFitter]:
    """One fitted Kaplan-Meier estimator per non-empty group, in the given order."""
    return {
        name: KaplanMeierFitter().fit(time[groups == name], event[groups == name], label=name)
        for name in order
        if (groups == name).any()
    }


def survival_metrics(
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    evaluate: EvaluateConfig,
    group_method: str = "median",
) -> dict:
    """c-index (+CI), risk groups with Kaplan-Meier medians and the log-rank p between them. JSON-ready."""
    time, event, risk = np.asarray(time, float), np.asarray(event, int), np.asarray(risk, float)
    n, n_events = len(time), int(event.sum())
    c_index = _c_index(time, event, risk, evaluate)
    labels, cuts = risk_groups(risk, group_method)
    names = GROUP_METHODS[group_method]
    fits = kaplan_meier(time, event, labels, names)
    reasons = {}
    logrank_p = logrank_stat = None
    if n_events == 0:
        reasons["logrank_p"] = "no events: log-rank test undefined"
    elif len(fits) < len(names):
        reasons["logrank_p"] = "risk scores are tied so the groups cannot be split: log-rank test undefined"
    else:
        logrank_p, logrank_stat = _logrank(time, event, labels, len(fits))
    if "logrank_p" in reasons:
        reasons["logrank_statistic"] = reasons["logrank_p"]
    block = {
        "n": n,
        "n_events": n_events,
        "c_index": c_index.to_dict(),
        "logrank_p": logrank_p,
        "logrank_statistic": logrank_stat,
        "group_method": group_method,
        "group_cuts": cuts,
        "groups": _group_table(event, labels, fits, names),
    }
    if reasons:
        block["reasons"] = reasons
    return block


def _c_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray, evaluate: EvaluateConfig) -> CI:
    """Harrell's c-index with its bootstrap CI; undefined (with the reason) without events or comparable pairs."""
    n_bootstrap = evaluate.n_bootstrap
    if int(event.sum()) == 0:
        return CI.undefined(f"no events (all {len(time)} patients censored): c-index undefined", n_bootstrap)
    if math.isnan(concordance(time, event, risk)):
        return CI.undefined("no comparable pair (each event is at the last follow-up time)", n_bootstrap)
    c_index = bootstrap_ci(concordance_weighted, time, event, risk, n=n_bootstrap, rng=evaluate.seed)
    # report lifelines' own number; the weighted twin agrees with it to rounding (tested)
    return replace(c_index, estimate=concordance(time, event, risk))


def _group_table(
    event: np.ndarray, labels: np.ndarray, fits: dict, names: tuple[str, ...]
) -> dict[str, dict]:
    """Per risk group: patients, events and the Kaplan-Meier median (None, with the reason, when not reached)."""
    groups = {}
    for name in names:
        mask = labels == name
        info = {"n": int(mask.sum()), "n_events": int(event[mask].sum())}
        if name in fits and math.isfinite(fits[name].median_survival_time_):
            info["median_survival"] = float(fits[name].median_survival_time_)
        else:
            info["median_survival"] = None
            info["reason"] = "empty group" if not mask.any() else "median survival not reached"
        groups[name] = info
    return groups


def _logrank(time: np.ndarray, event: np.ndarray, labels: np.ndarray, n_groups: int) -> tuple[float, float]:
    """(p, statistic) of the log-rank test between the risk groups (two groups, or several)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines warns on small groups; the counts are in the JSON
        if n_groups == 2:
            low, high = labels == "low", labels == "high"
            result = logrank_test(time[low], time[high], event[low], event[high])
        else:
            result = multivariate_logrank_test(time, labels, event)
    return float(result.p_value), float(result.test_statistic)
