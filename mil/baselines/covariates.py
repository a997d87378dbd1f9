"""The covariates-only model of a run with clinical covariates: the task kind's regularised linear model
(logistic / one-vs-rest logistic / ridge Cox, C by inner CV) on the encoded covariates alone.

It is a baseline like the others (same folds, same `cross_validate`, same predictions format, compared with
the head in metrics.json) with one difference: its features are not label-free summaries of bags that can be
computed for everyone at once. Imputation and standardisation use statistics of patients, so each outer fold
encodes everyone with the `CovariateEncoder` fitted on that fold's training patients (train + validation,
never test), the one the fused head of that fold uses. Inside the inner CV that choses C, the encoding stays
the outer fold's (its inner test patients' covariates are in the medians; no outer test patient ever is).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from mil.baselines.cv import C_GRID, INNER_FOLDS, cross_validate
from mil.baselines.run import BaselineData, BaselineRun, fold_positions
from mil.cohort.covariates import CovariateEncoder, CovariateTable
from mil.tasks import Task

NAME = "covariates"
DESCRIBES = "the covariates alone"


def fit_covariates_only(
    table: CovariateTable,
    encoders: dict[int, CovariateEncoder],
    data: BaselineData,
    task: Task,
    emit: Callable[..., None] = lambda event, **info: None,
) -> BaselineRun:
    """Out-of-fold predictions from the covariates alone, fold k encoded by `encoders[k]`."""
    emit("baseline_start", name=NAME, index=0, total=1)
    started = time.perf_counter()
    run = BaselineRun(NAME, DESCRIBES, None, {"status": "skipped"})
    if task.baseline_model(1.0) is None:
        run.record["reason"] = f"the {task.kind} task kind has no baseline model (Task.baseline_model)"
    else:
        outputs, records, frames = None, {}, []
        for fold, (k, train, test) in zip(
            data.split.folds, fold_positions(data.split, data.patients), strict=True
        ):
            design, _ = encoders[k].transform(table, data.patients)
            cv = cross_validate(design.astype(np.float64), data.y, task, [(k, train, test)], data.seed)
            outputs = cv.outputs if outputs is None else outputs
            outputs[test] = cv.outputs[test]
            fit = cv.folds[0]
            records[str(k)] = {"c": fit.c, "inner_metric": fit.inner_metric, "n_train": fit.n_train,
                               "notes": fit.notes, "columns": encoders[k].names}  # fmt: skip
            frames.append(task.frame(list(fold.test), k, data.y[test], outputs[test]))
        run.table = pd.concat(frames, ignore_index=True).sort_values("patient_id", kind="stable")
        run.record = {
            "status": "ok",
            "n_features": len(encoders[next(iter(encoders))].names),
            "c_grid": [min(C_GRID), max(C_GRID), len(C_GRID)],
            "inner_folds": INNER_FOLDS,
            "folds": records,
        }
    emit("baseline_end", name=NAME, status=run.record["status"], reason=run.record.get("reason"),
         seconds=time.perf_counter() - started)  # fmt: skip
    return run
