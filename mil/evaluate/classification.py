"""Single-label classification metrics: pure functions over class indices and probability matrices.

AUC is the Mann-Whitney statistic: the probability that a random positive scores above a random negative, ties
counting one half. Written over bootstrap weights (see `bootstrap.py`), it is one sort of the scores plus
cumulative sums per draw, so 1,000 draws cost about as much as a few sklearn calls.

Decisions:
- Per-class AUC is one-vs-rest on `prob_<class>`. A class with no patient in the data (a fold that happens to
  hold none) has AUC NaN with a reason; the macro AUC averages the classes that are present and lists them in
  `macro_auc_classes`, so a 2-class fold of a 3-class task is visible rather than silently comparable.
- Threshold metrics (sensitivity, specificity, precision, F1, balanced accuracy, confusion matrix) use `y_pred`
  as written by training (argmax of the probabilities), never a threshold tuned on the evaluated data.
- Binary tasks (2 classes): the positive class is `classes[1]` (the second logit). Besides argmax metrics the
  `binary` block reports the Youden threshold (max sensitivity + specificity - 1) with its sensitivity and
  specificity. It is chosen on the same patients it is reported on, so it is optimistic: a description, not a
  validated operating point.
- F1 = 2TP / (2TP + FP + FN): a present class the model never predicts scores 0, not NaN.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_curve

from mil.config import EvaluateConfig
from mil.evaluate.bootstrap import CI, bootstrap_ci


def auc_weighted(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted Mann-Whitney AUC for each row of `weights` (B x n); NaN where a draw lacks either class."""
    positive = np.asarray(positive, bool)
    order = np.argsort(score, kind="stable")
    sorted_score = np.asarray(score)[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])  # groups of tied scores
    w = weights[:, order]
    pos = np.add.reduceat(w * positive[order], starts, axis=1)  # B x groups
    neg = np.add.reduceat(w * ~positive[order], starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    numerator = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    denominator = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def macro_auc_weighted(
    y: np.ndarray, probs: np.ndarray, weights: np.ndarray, present: list[int]
) -> np.ndarray:
    """Mean one-vs-rest AUC over the class indices in `present`, per draw."""
    return np.mean([auc_weighted(y == c, probs[:, c], weights) for c in present], axis=0)


def balanced_accuracy_weighted(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present in `y` (as sklearn's balanced_accuracy_score), per draw."""
    recalls = []
    for c in np.unique(y):
        support = weights[:, y == c].sum(axis=1)
        hits = weights[:, (y == c) & (pred == c)].sum(axis=1)
        recalls.append(np.where(support > 0, hits / np.where(support > 0, support, 1), np.nan))
    return np.mean(recalls, axis=0)


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    flat = np.asarray(y, int) * n_classes + np.asarray(pred, int)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    evaluate: EvaluateConfig,
) -> dict:
    """All metrics of one block (a fold, or the pooled out-of-fold predictions), JSON-ready.

    `y_true`, `y_pred`: class names (n,); `probs`: n x C in the order of `classes`.
    """
    n_bootstrap = evaluate.n_bootstrap
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[v] for v in y_true], int)
    pred = np.array([index[v] for v in y_pred], int)
    probs = np.asarray(probs, float)
    n, n_classes = len(y), len(classes)
    cm = confusion_matrix(y, pred, n_classes)
    support = cm.sum(axis=1)
    present = [c for c in range(n_classes) if support[c] > 0]

    def ci(metric, *arrays) -> CI:  # every CI of the block uses the same paired, class-stratified draws
        return bootstrap_ci(metric, *arrays, n=n_bootstrap, rng=evaluate.seed, strata=y)

    per_class = {}
    for c, name in enumerate(classes):
        if support[c] == 0:
            auc = CI.undefined(f"no patient of class {name} here: AUC undefined", n_bootstrap)
        elif support[c] == n:
            auc = CI.undefined(f"every patient is {name}: AUC needs both classes", n_bootstrap)
        else:
            auc = ci(auc_weighted, y == c, probs[:, c])
        per_class[name] = {"auc": auc.to_dict(), **threshold_metrics(cm, c, name)}

    if len(present) >= 2:
        macro = ci(lambda yy, pp, weights: macro_auc_weighted(yy, pp, weights, present), y, probs)
        bal_acc = ci(balanced_accuracy_weighted, y, pred)
    else:
        reason = "fewer than 2 classes present: AUC and balanced accuracy undefined"
        macro = CI.undefined(reason, n_bootstrap)
        bal_acc = CI.undefined(reason, n_bootstrap)
    block = {
        "n": n,
        "macro_auc": macro.to_dict(),
        "macro_auc_classes": [classes[c] for c in present],
        "balanced_accuracy": bal_acc.to_dict(),
        "accuracy": float(np.trace(cm) / n) if n else None,
        "per_class": per_class,
        "confusion": {"labels": list(classes), "matrix": cm.tolist(), "rows": "true", "columns": "predicted"},
    }
    if n_classes == 2:
        block["binary"] = _binary_block(y, probs[:, 1], cm, classes, per_class)
    return block


def threshold_metrics(cm: np.ndarray, c: int, name: str) -> dict:
    tp = int(cm[c, c])
    fn = int(cm[c].sum()) - tp
    fp = int(cm[:, c].sum()) - tp
    tn = int(cm.sum()) - tp - fn - fp
    reasons = {}
    out = {
        "sensitivity": _ratio(tp, tp + fn, reasons, "sensitivity", f"no patient of class {name}"),
        "specificity": _ratio(tn, tn + fp, reasons, "specificity", f"every patient is {name}"),
        "precision": _ratio(tp, tp + fp, reasons, "precision", f"no patient predicted as {name}"),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, reasons, "f1", f"{name} neither present nor predicted"),
        "support": tp + fn,
        "n_predicted": tp + fp,
    }
    if reasons:
        out["reasons"] = reasons
    return out


def _binary_block(
    y: np.ndarray, score: np.ndarray, cm: np.ndarray, classes: list[str], per_class: dict
) -> dict:
    positive = classes[1]
    block = {
        "positive_class": positive,
        "auc": per_class[positive]["auc"],
        "argmax": {k: per_class[positive].get(k) for k in ("sensitivity", "specificity")},
    }
    if len(np.unique(y)) < 2:
        block["youden"] = {"threshold": None, "reason": "needs both classes"}
        return block
    fpr, tpr, thresholds = roc_curve(y == 1, score)
    j = np.where(np.isfinite(thresholds), tpr - fpr, -np.inf)
    best = int(np.argmax(j))
    block["youden"] = {
        "threshold": float(thresholds[best]),
        "sensitivity": float(tpr[best]),
        "specificity": float(1 - fpr[best]),
        "note": "threshold chosen on these same patients (optimistic)",
    }
    return block


def _ratio(num: int, den: int, reasons: dict, key: str, why: str) -> float | None:
    if den == 0:
        reasons[key] = why
        return None
    value = num / den
    return value if math.isfinite(value) else None
