"""Evaluation: metrics with bootstrap CIs from a predictions table alone (no model, no bags).

Statistics (`classification`, `multilabel`, `survival`, `bootstrap`) are pure functions over arrays, called by
the task kinds (`mil.tasks`: each kind's `metric_block` and `figures`); `plots` draws on axes it is given and
only `write_plots` saves; `run` reads files and records provenance.

metrics.json (schema "mil.metrics/1"; keys are stable, readers such as the HTML report rely on them)::

    schema, kind, spec {kind, target, classes}, n_patients, n_unlabelled_dropped, n_bootstrap, seed, ci_level
    pooled        one block over every row (all out-of-fold predictions together)
    folds         {"0": block, "1": block, ...}   (empty for an external cohort without folds)
    fold_summary  {metric: {mean, std, n_folds, values {fold: value}, reason?}} for the headline metrics
    provenance    (written by `run.evaluate_files`) input paths + sha256, versions, created_at
    baselines     (runs with baselines; `mil.baselines`) {name: {describes, status, reason?, n_features, seconds,
                  folds {k: {c, inner_metric, n_train, notes}}, pooled block}}
    comparison    {name: {metric, n, head (CI), baseline (CI), difference (CI of head - baseline, paired
                  bootstrap: `compare`), verdict}} for each baseline that ran

A CI object is {estimate, low, high, n_boot, n_valid, reason?}: n_valid = bootstrap draws in which the metric
was defined. A null value always has a reason: in the CI object itself (`reason`), or for a plain number in the
enclosing object's `reasons` {key: text}.

classification block::

    n, accuracy, macro_auc (CI), macro_auc_classes [classes averaged], balanced_accuracy (CI)
    per_class {class: {auc (CI), sensitivity, specificity, precision, f1, support, n_predicted, reasons?}}
    confusion {labels, matrix (rows = true, columns = predicted), rows: "true", columns: "predicted"}
    binary    (2 classes only) {positive_class, auc (CI), argmax {sensitivity, specificity},
               youden {threshold, sensitivity, specificity, note}}

multilabel block: n, macro_auc (CI), macro_auc_classes, per_class {label: {auc (CI), sensitivity, specificity,
precision, f1, support, n_predicted, n_negative, prevalence, threshold}}.

survival block::

    n, n_events, c_index (CI), logrank_p, logrank_statistic, group_method ("median"), group_cuts [risk cut points]
    groups {low: {n, n_events, median_survival, reason?}, high: {...}}, reasons? {logrank_p: text}
"""

from __future__ import annotations

import importlib

# Re-exports resolve on first use, so `from mil.evaluate.predictions import write_predictions` in the trainer
# does not import lifelines, scikit-learn and matplotlib (seconds) just to write a CSV.
_EXPORTS = {
    "CI": "bootstrap",
    "bootstrap_ci": "bootstrap",
    "compute_metrics": "metrics",
    "write_plots": "plots",
    "attach_labels": "predictions",
    "read_predictions": "predictions",
    "write_predictions": "predictions",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mil.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mil.evaluate.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
