"""Calibration of predicted probabilities: Brier score, expected calibration error (ECE), reliability diagram.

Each task kind names its probability series (`Task.reliability`): binary classification the positive class,
multiclass the top-label confidence against "the top label is right", multi-label every label. Per series,
with 0/1 outcomes y and probabilities p over n patients:

    Brier = mean (p - y)^2
    ECE   = sum over B equal-width bins of (n_b / n) |mean p_b - mean y_b|   (B = 10, Guo et al. 2017)

and a kind with several series reports their mean. `mil train` scores the calibrated and the uncalibrated
out-of-fold probabilities of the same run (`metrics.json` `calibration`), so the effect of calibration is
measured on the same patients; the figure draws both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mil.evaluate.plots import new_figure
from mil.tasks import Task

N_BINS = 10


def reliability_bins(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> dict[str, list]:
    """Per non-empty bin of [0, 1]: patients, mean predicted probability, observed frequency."""
    y, p = np.asarray(y, float), np.clip(np.asarray(p, float), 0, 1)
    which = np.minimum((p * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    mean_p = np.bincount(which, weights=p, minlength=n_bins)
    mean_y = np.bincount(which, weights=y, minlength=n_bins)
    keep = counts > 0
    return {
        "n": counts[keep].tolist(),
        "mean_predicted": (mean_p[keep] / counts[keep]).tolist(),
        "observed": (mean_y[keep] / counts[keep]).tolist(),
    }


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> float:
    bins = reliability_bins(y, p, n_bins)
    n = np.asarray(bins["n"], float)
    gap = np.abs(np.asarray(bins["mean_predicted"]) - np.asarray(bins["observed"]))
    return float((n * gap).sum() / n.sum()) if n.sum() else float("nan")


def brier(y: np.ndarray, p: np.ndarray) -> float:
    y, p = np.asarray(y, float), np.asarray(p, float)
    return float(np.mean((p - y) ** 2)) if len(y) else float("nan")


def calibration_scores(task: Task, df: pd.DataFrame) -> dict | None:
    """{"brier", "ece", "series": {name: {brier, ece, bins}}} of one predictions table; None where the kind
    has no probabilities (survival)."""
    series = task.reliability(df)
    if not series:
        return None
    per = {
        name: {"brier": brier(y, p), "ece": ece(y, p), "bins": reliability_bins(y, p)}
        for name, y, p in series
    }
    return {
        "brier": float(np.mean([s["brier"] for s in per.values()])),
        "ece": float(np.mean([s["ece"] for s in per.values()])),
        "n_bins": N_BINS,
        "series": per,
    }


def reliability_figure(calibrated: dict, uncalibrated: dict | None):
    """Observed frequency against mean predicted probability per bin, calibrated (solid) and uncalibrated
    (dashed), one colour per series; ECE in the legend."""
    fig, ax = new_figure(6, 6)
    ax.plot([0, 1], [0, 1], ls=":", lw=0.8, color="grey")
    for i, (name, s) in enumerate(calibrated["series"].items()):
        colour = f"C{i}"
        b = s["bins"]
        ax.plot(b["mean_predicted"], b["observed"], "o-", color=colour, lw=1.6,
                label=f"{name}, calibrated (ECE {s['ece']:.3f})")  # fmt: skip
        if uncalibrated is not None and name in uncalibrated["series"]:
            u = uncalibrated["series"][name]
            ub = u["bins"]
            ax.plot(ub["mean_predicted"], ub["observed"], "s--", color=colour, lw=1.0, alpha=0.7,
                    label=f"{name}, uncalibrated (ECE {u['ece']:.3f})")  # fmt: skip
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="mean predicted probability (bin)", ylabel="observed frequency",
           aspect="equal", title="reliability, pooled out-of-fold")  # fmt: skip
    ax.legend(loc="upper left", fontsize="small")
    return fig
