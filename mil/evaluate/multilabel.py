"""Multi-label metrics (e.g. NPM1 and CBFB::MYH11 from one model): each label is its own binary task.

Decisions:
- Per label: AUC of `prob_<label>` (+ bootstrap CI), and sensitivity, specificity, precision, F1 at the fixed
  threshold 0.5 on the sigmoid output (not tuned on the evaluated patients).
- Bootstrap draws are stratified by the label combination (each distinct 0/1 row pattern is resampled within
  itself), so every draw keeps every label's positive and negative counts; all labels share the same draws.
- The macro AUC averages the labels that have both positives and negatives (listed in `macro_auc_classes`); a
  label without positives here has AUC NaN with a reason.
- Blocks use the same keys as classification (`per_class`, `macro_auc`) so one reader handles both.
"""

from __future__ import annotations

import numpy as np

from mil.config import EvaluateConfig
from mil.evaluate.bootstrap import CI, bootstrap_ci
from mil.evaluate.classification import auc_weighted, confusion_matrix, threshold_metrics

THRESHOLD = 0.5


def multilabel_metrics(
    truth: np.ndarray, probs: np.ndarray, labels: list[str], evaluate: EvaluateConfig
) -> dict:
    """`truth`: n x L of 0/1, `probs`: n x L, columns in the order of `labels`. JSON-ready block."""
    n_bootstrap = evaluate.n_bootstrap
    truth = np.asarray(truth, int)
    probs = np.asarray(probs, float)
    n = len(truth)
    _, strata = np.unique(truth, axis=0, return_inverse=True)
    strata = strata.ravel()

    def ci(metric, *arrays) -> CI:
        return bootstrap_ci(metric, *arrays, n=n_bootstrap, rng=evaluate.seed, strata=strata)

    per_class, usable = {}, []
    for j, name in enumerate(labels):
        positives = int(truth[:, j].sum())
        if positives in (0, n):
            which = "no positive" if positives == 0 else "no negative"
            auc = CI.undefined(f"{which} patient for {name} here: AUC undefined", n_bootstrap)
        else:
            usable.append(j)
            auc = ci(auc_weighted, truth[:, j] == 1, probs[:, j])
        pred = (probs[:, j] >= THRESHOLD).astype(int)
        cm = confusion_matrix(truth[:, j], pred, 2)
        per_class[name] = {
            "auc": auc.to_dict(),
            **threshold_metrics(cm, 1, name),
            "n_negative": n - positives,
            "prevalence": positives / n if n else None,
            "threshold": THRESHOLD,
        }
    if usable:
        macro = ci(
            lambda t, p, weights: np.mean(
                [auc_weighted(t[:, j] == 1, p[:, j], weights) for j in usable], axis=0
            ),
            truth,
            probs,
        )
    else:
        macro = CI.undefined("no label has both positives and negatives here", n_bootstrap)
    return {
        "n": n,
        "macro_auc": macro.to_dict(),
        "macro_auc_classes": [labels[j] for j in usable],
        "per_class": per_class,
    }
