"""Compose the task kind's metric blocks into the metrics.json document (keys: see `mil.evaluate`'s docstring).

Each kind computes its own block (`Task.metric_block`) and names its headline metrics (`Task.headline`),
which are summarised across folds here.

"pooled" is every row of the table: the out-of-fold predictions of all fold models together (plus rows without
a fold, e.g. an external cohort). Pooling mixes models whose scores may be calibrated differently, which can
lower the pooled AUC below the fold mean; both are reported so a reader can see the gap.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mil.config import EvaluateConfig
from mil.evaluate.predictions import require_truth
from mil.tasks import TaskSpec, create_task

METRICS_SCHEMA = "mil.metrics/1"
CI_LEVEL = 0.95


def compute_metrics(df: pd.DataFrame, spec: TaskSpec, evaluate: EvaluateConfig) -> dict:
    """Metrics per fold and pooled, JSON-serialisable (NaN -> None with a reason). Pure: reads no files."""
    require_truth(df, spec, "predictions")
    task = create_task(spec)
    folds = {}
    for fold in sorted(df["fold"].dropna().unique(), key=_fold_order):
        folds[str(fold)] = task.metric_block(df[df["fold"] == fold], evaluate)
    out = {
        "schema": METRICS_SCHEMA,
        "kind": spec.kind,
        "spec": spec.to_dict(),
        "n_patients": int(len(df)),
        "n_unlabelled_dropped": len(df.attrs.get("unlabelled_patients", [])),
        "n_bootstrap": evaluate.n_bootstrap,
        "seed": evaluate.seed,
        "ci_level": CI_LEVEL,
        "pooled": task.metric_block(df, evaluate),
        "folds": folds,
        "fold_summary": fold_summary(folds, task.headline),
    }
    return jsonable(out)


def fold_summary(folds: dict[str, dict], headline: tuple[str, ...]) -> dict:
    """Mean and SD (ddof=1) of each headline metric over the folds where it is defined."""
    summary: dict = {}
    if not folds:  # e.g. an external cohort scored by an ensemble
        return summary
    for key in headline:
        values = {}
        for fold, block in folds.items():
            value = block[key]["estimate"] if isinstance(block[key], dict) else block[key]
            if value is not None and math.isfinite(value):
                values[fold] = float(value)
        entry: dict = {"n_folds": len(values), "values": values}
        arr = np.array(list(values.values()))
        entry["mean"] = float(arr.mean()) if len(arr) else None
        entry["std"] = float(arr.std(ddof=1)) if len(arr) >= 2 else None
        if len(arr) < 2:
            entry["reason"] = f"defined in {len(arr)} fold(s); the SD needs at least 2"
        summary[key] = entry
    return summary


def jsonable(obj: object) -> object:
    """Plain JSON types; non-finite floats become None (the metric functions attach the reason)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _fold_order(fold: str) -> tuple:
    return (0, int(fold), "") if str(fold).lstrip("-").isdigit() else (1, 0, str(fold))
