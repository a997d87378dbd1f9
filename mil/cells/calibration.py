"""Temperature scaling (Guo et al. 2017) of a classifier's log-probabilities, fitted without test leakage.

One number T divides the log-probabilities before the softmax: T > 1 softens an over-confident classifier,
T < 1 sharpens an under-confident one; the ranking of classes, so every predicted type and every count, is
unchanged. T is fitted by minimising the negative log-likelihood on predictions of cells the classifier did
not train on: for the saved model, on the pooled out-of-fold predictions of the cross-validation; for the
reported out-of-fold probabilities of fold k, on the other folds' out-of-fold predictions only (cross-fitted),
so no fold's metrics see a temperature fitted on its own labels.
"""

from __future__ import annotations

import numpy as np

from mil.cells.classifiers.base import log_softmax

LOG_T_BOUNDS = (-3.0, 3.0)  # T in [0.05, 20]


def apply_temperature(log_proba: np.ndarray, temperature: float) -> np.ndarray:
    """N x C calibrated probabilities."""
    return np.exp(log_softmax(np.asarray(log_proba, np.float64) / temperature))


def nll(log_proba: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes `y` (codes)."""
    scaled = log_softmax(np.asarray(log_proba, np.float64) / temperature)
    return float(-scaled[np.arange(len(y)), y].mean())


def fit_temperature(log_proba: np.ndarray, y: np.ndarray) -> float:
    """The T minimising the NLL of `y` under softmax(log_proba / T); 1.0 for no cells."""
    from scipy.optimize import minimize_scalar

    if len(y) == 0:
        return 1.0
    found = minimize_scalar(
        lambda t: nll(log_proba, y, float(np.exp(t))), bounds=LOG_T_BOUNDS, method="bounded"
    )
    return float(np.exp(found.x))


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE of the top class: the |accuracy - confidence| of equal-width confidence bins, weighted by size."""
    if len(y) == 0:
        return float("nan")
    confidence = proba.max(1)
    correct = proba.argmax(1) == y
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, correct, bins) - np.bincount(which, confidence, bins))
    return float(gap.sum() / len(y)) if total.sum() else float("nan")
