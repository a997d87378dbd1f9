"""Patient-grouped cross-validation of a cell classifier: out-of-fold probabilities and their metrics.

Cells of one patient share stain, scanner and disease, so a random cell split would test on the training
patients' twins; folds are `StratifiedGroupKFold` by patient (no patient in two parts). Each fold's model
predicts its held-out patients; the out-of-fold log-probabilities are calibrated by a cross-fitted temperature
(`mil.cells.calibration`; cells whose class the fold's training lacked are left out of that fit) and scored: per-class precision / recall / F1 / support, balanced accuracy,
accuracy, log-loss and expected calibration error before and after temperature, confusion matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.core.errors import InputError
from mil.cells.calibration import apply_temperature, expected_calibration_error, fit_temperature, nll
from mil.cells.classifiers import FLOOR, create_classifier
from mil.config import CellsConfig


@dataclass
class CrossValidation:
    fold: np.ndarray  # N: the fold that held each cell out
    log_proba: np.ndarray  # N x C out-of-fold, uncalibrated
    proba: np.ndarray  # N x C out-of-fold, cross-fitted temperature
    temperature: float  # fitted on all out-of-fold predictions (the saved model's)
    metrics: dict


def classifier_params(config: CellsConfig) -> dict:
    """The config values a classifier kind reads (saved in the model, so it predicts the same later)."""
    return {"linear": {}, "mlp": {"hidden": config.hidden, "seed": config.seed},
            "knn": {"neighbours": config.neighbours}}[config.classifier]  # fmt: skip


def grouped_folds(y: np.ndarray, patients: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """N fold numbers, patients never split; fewer folds than asked when there are fewer patients."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.unique(patients, return_inverse=True)[1]
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if n_groups < 2:
        raise InputError(
            f"the labelled cells come from {n_groups} patient(s); patient-grouped cross-validation needs at "
            "least 2 (for a folder of classes without patients, group images into pseudo-patients)"
        )
    splitter = StratifiedGroupKFold(n_splits=min(folds, n_groups), shuffle=True, random_state=seed)
    fold = np.empty(len(y), np.int64)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        fold[test] = k
    return fold


def cross_validate(
    x: np.ndarray, y: np.ndarray, patients: np.ndarray, classes: list[str], config: CellsConfig, progress=None
) -> CrossValidation:
    emit = progress or (lambda event, **info: None)
    fold = grouped_folds(y, patients, config.folds, config.seed)
    n_folds = int(fold.max()) + 1
    log_proba = np.zeros((len(y), len(classes)))
    for k in range(n_folds):
        test = fold == k
        model = create_classifier(config.classifier, **classifier_params(config))
        model.fit(x[~test], y[~test], len(classes))
        log_proba[test] = model.log_proba(x[test])
        emit("fold", done=k + 1, total=n_folds)
    # A cell whose class its fold's model never saw (the class's only patients were all held out) has the
    # floor log-probability: no temperature can fix that, and fitting on it would flatten every prediction.
    seen = log_proba[np.arange(len(y)), y] > FLOOR
    proba = np.zeros_like(log_proba)
    for k in range(n_folds):  # each fold calibrated by a temperature fitted on the other folds only
        test, fit = fold == k, (fold != k) & seen
        proba[test] = apply_temperature(log_proba[test], fit_temperature(log_proba[fit], y[fit]))
    temperature = fit_temperature(log_proba[seen], y[seen])
    metrics = score(y, log_proba, proba, classes, fold, temperature)
    metrics["cells_of_unseen_classes"] = int((~seen).sum())  # in a fold whose training lacked their class
    return CrossValidation(fold, log_proba, proba, temperature, metrics)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in `y` (sklearn's definition; a class only predicted, as in a fold
    without that class, does not count)."""
    present = np.unique(y)
    hits = np.bincount(y[pred == y], minlength=int(y.max()) + 1)[present]
    return float((hits / np.bincount(y)[present]).mean()) if len(y) else float("nan")


def score(y, log_proba, proba, classes: list[str], fold: np.ndarray, temperature: float) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    pred = proba.argmax(1)
    labels = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per_fold = [balanced_accuracy(y[fold == k], pred[fold == k]) for k in range(int(fold.max()) + 1)]
    return {
        "n_cells": int(len(y)),
        "n_folds": len(per_fold),
        "balanced_accuracy": balanced_accuracy(y, pred),
        "balanced_accuracy_per_fold": per_fold,
        "accuracy": float((pred == y).mean()),
        "log_loss_uncalibrated": nll(log_proba, y),
        "log_loss": float(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None)).mean()),
        "ece_uncalibrated": expected_calibration_error(np.exp(log_proba), y),
        "ece": expected_calibration_error(proba, y),
        "temperature": temperature,
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }  # fmt: skip
            for i, c in enumerate(classes)
        },
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
        "classes": list(classes),
    }
