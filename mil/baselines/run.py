"""The baselines of one training run: fitted on the run's folds, written beside the head, compared with it.

`fit_baselines` featurises each patient once per baseline and cross-validates the kind's linear model on the
run's splits (`mil.baselines.cv`); `write_baselines` writes `RUN/baselines/<name>/predictions.csv` (the head's
format, so `mil evaluate` reads it), the metrics.json blocks `baselines` and `comparison`
(`mil.evaluate.compare`) and one figure with every model's curves (`plots/head_vs_baselines.png`).

A baseline that cannot run on this task (a kind without a baseline model, non-finite features) is recorded
with its reason and printed, and the head's run goes on: the comparison is a check on the head, not a
condition of having one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mil.baselines import Baseline, create_baseline
from mil.baselines.cv import C_GRID, INNER_FOLDS, cross_validate
from mil.cohort.splits import Splits
from mil.config import EvaluateConfig
from mil.tasks import Task

COMPARISON_PLOT = "head_vs_baselines.png"


@dataclass
class BaselineRun:
    name: str
    describes: str
    table: pd.DataFrame | None  # out-of-fold predictions in the head's format; None when it did not run
    record: dict = field(default_factory=dict)  # status, reason?, n_features, seconds, folds {k: C, ...}


@dataclass(frozen=True)
class BaselineData:
    """What every baseline of a run shares: the bags, the patients in bag order, their targets, the folds."""

    bags: Callable[[], Iterable[np.ndarray]]  # a fresh iterator over the patients' bags, in `patients` order
    dim: int
    patients: list[str]
    y: np.ndarray  # the task kind's targets, one row per patient
    split: Splits
    seed: int


def fold_positions(split: Splits, patients: list[str]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(fold, training positions = train + validation, test positions) of each fold, positions in `patients`."""
    position = {p: i for i, p in enumerate(patients)}
    return [
        (
            f.index,
            np.array([position[p] for p in (*f.train, *f.val)]),
            np.array([position[p] for p in f.test]),
        )
        for f in split.folds
    ]


def fit_baselines(
    names: list[str],
    data: BaselineData,
    task: Task,
    emit: Callable[..., None] = lambda event, **info: None,
    params: dict[str, dict] | None = None,
) -> list[BaselineRun]:
    """Out-of-fold predictions of each baseline on the run's folds; `params`: name -> what its constructor
    takes (`cell_composition`: {"cell_model": CellModel})."""
    runs = []
    for i, name in enumerate(names):
        emit("baseline_start", name=name, index=i, total=len(names))
        started = time.perf_counter()
        run = _fit_one(create_baseline(name, **(params or {}).get(name, {})), data, task)
        runs.append(run)
        seconds = (
            time.perf_counter() - started
        )  # to the progress display, not metrics.json: that repeats exactly
        emit(
            "baseline_end",
            name=name,
            status=run.record["status"],
            reason=run.record.get("reason"),
            seconds=seconds,
        )
    return runs


def _fit_one(baseline: Baseline, data: BaselineData, task: Task) -> BaselineRun:
    run = BaselineRun(baseline.name, baseline.describes, None, {"status": "skipped"})
    if task.baseline_model(1.0) is None:
        run.record["reason"] = f"the {task.kind} task kind has no baseline model (Task.baseline_model)"
        return run
    features = baseline.features(data.bags(), data.dim)
    finite = np.isfinite(features.values).all(axis=1)
    if not finite.all():
        bad = data.patients[int(np.flatnonzero(~finite)[0])]
        run.record["reason"] = f"patient {bad} has non-finite features ({baseline.nonfinite})"
        return run
    folds = fold_positions(data.split, data.patients)
    cv = cross_validate(features.values, data.y, task, folds, data.seed)
    frames = [
        task.frame(list(f.test), f.index, data.y[test], cv.outputs[test])
        for f, (_, _, test) in zip(data.split.folds, folds, strict=True)
    ]
    run.table = pd.concat(frames, ignore_index=True).sort_values("patient_id", kind="stable")
    run.record = {
        "status": "ok",
        **baseline.inputs(),
        "n_features": features.values.shape[1],
        "c_grid": [min(C_GRID), max(C_GRID), len(C_GRID)],
        "inner_folds": INNER_FOLDS,
        "folds": {
            str(f.fold): {"c": f.c, "inner_metric": f.inner_metric, "n_train": f.n_train, "notes": f.notes}
            for f in cv.folds
        },
    }
    return run


def write_baselines(
    run_dir: Path, runs: list[BaselineRun], head: pd.DataFrame, task: Task, evaluate: EvaluateConfig
) -> tuple[dict, dict, list[Path]]:
    """Write each baseline's predictions; return the metrics.json blocks (baselines, comparison) and plots."""
    from mil.evaluate.compare import baseline_comparison
    from mil.evaluate.plots import save_figure
    from mil.evaluate.predictions import read_predictions, write_predictions

    tables = {}
    for run in runs:
        if run.table is None:
            continue
        path = run_dir / "baselines" / run.name / "predictions.csv"
        write_predictions(run.table, task.spec, path)
        tables[run.name] = (read_predictions(path)[0], run.describes)  # compare exactly what evaluate reads
    blocks, comparison = baseline_comparison(head, task.spec, tables, evaluate)
    records = {
        run.name: {"describes": run.describes, **run.record, **blocks.get(run.name, {})} for run in runs
    }
    if not tables:
        return records, comparison, []
    figure = task.comparison_figure({"head": head, **{name: table for name, (table, _) in tables.items()}})
    plots = [] if figure is None else [save_figure(figure, run_dir / "plots" / COMPARISON_PLOT)]
    return records, comparison, plots
