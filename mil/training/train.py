"""`mil train`: patient-level cross-validation of one MIL head, from a bag store and a labels CSV.

`train_cv` validates everything first (labels against the store, classes against the fold count, splits for
leakage, the output folder), then loads every bag once and fits one model per fold. The run folder holds:

    config.yaml       resolved config + provenance (versions, seed, encoder, git commit, command line, cohort)
    splits.json       patients per fold and part (reuse with --splits)
    predictions.csv   one out-of-fold row per patient (+ .spec.json), the input of `mil evaluate`
    metrics.json      per fold and pooled, with bootstrap CIs (mil.evaluate), plus the cohort counts
    left_out.csv      patients/slides not used, with the reason
    plots/            ROC per class, confusion matrix, or Kaplan-Meier of predicted risk groups
    folds/<k>/model.pt, history.csv

Per-fold seeds are `seed * 1000 + fold`, so folds differ from each other and a run repeats exactly.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from features.bagstore import BagStore
from features.core.device import resolve_device
from mil.cohort.labels import Cohort, build_cohort, check_counts
from mil.cohort.splits import Fold, Splits, check_leakage, load_splits, make_splits, save_splits
from mil.config import EvaluateConfig, TrainConfig
from mil.tasks import Task, TaskSpec, create_task
from mil.training.checkpoint import save_checkpoint
from mil.training.data import BagSet, load_bags
from mil.training.fit import FitSetup, Progress, eval_batch_instances, fit_fold, infer, seeded
from mil.training.rundir import check_out, provenance, swap_in, temp_dir

# Share of free GPU memory the in-memory bags may take before they stay on the host.
DEVICE_MEMORY_SHARE = 0.5


@dataclass
class FoldSummary:
    fold: int
    name: str  # held-out group for leave-one-group-out
    n_train: int
    n_val: int
    n_test: int
    best_epoch: int
    epochs_run: int
    seconds: float
    test: dict[str, Any]  # the main metric on this fold's test patients: estimate, low, high (metrics.json)


@dataclass
class RunSummary:
    run: Path
    spec: TaskSpec
    metric: str  # key of the main metric in metrics.json (`Task.metric_name`: "macro_auc", "c_index", ...)
    n_patients: int
    left_out: dict[str, int]
    folds: list[FoldSummary]
    pooled: dict[str, Any]  # main metric over all out-of-fold predictions, with CI
    headline: str  # the kind's one-line summary of the pooled metrics: "macro AUC 0.812 (95% CI 0.700-0.900)"
    device: str
    seconds: float
    plots: list[Path] = field(default_factory=list)


@dataclass
class _Training:
    """One run of `train_cv` once its inputs are checked: what every fold and every output file shares."""

    config: TrainConfig
    evaluate: EvaluateConfig
    store: BagStore
    cohort: Cohort
    task: Task
    split: Splits
    device: torch.device
    data: BagSet  # every bag of the cohort, loaded once
    emit: Progress
    progress: Progress | None  # the caller's own, handed to fit_fold (None: no per-epoch events)
    started: float


def train_cv(
    bags: Path,
    labels: Path,
    config: TrainConfig,
    out: Path,
    splits: Path | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    evaluate: EvaluateConfig = EvaluateConfig(),
) -> RunSummary:
    """Cross-validate `config.head` on the patients of `labels` found in the bag store `bags`; write RUN.
    `evaluate` sets the bootstrap of metrics.json (the same section `mil evaluate` reads)."""
    started = time.perf_counter()
    bags, labels, out = Path(bags), Path(labels), Path(out)
    emit = progress or (lambda event, **info: None)
    # Everything that can be wrong with the inputs is checked before a single bag is loaded.
    check_out(out, overwrite)
    store = BagStore(bags)
    cohort = build_cohort(labels, store.metas(), config, store=bags)
    task = create_task(cohort.spec)
    split = _splits(cohort, task.strata(cohort.y), config, splits)
    check_leakage(split, cohort.patients)
    device = resolve_device(config.device, "train.device")
    data = _load(store, cohort, config.feature_dtype, device, emit)
    run = _Training(config, evaluate, store, cohort, task, split, device, data, emit, progress, started)
    emit(
        "start",
        n_patients=len(cohort.patients),
        n_folds=len(split.folds),
        device=str(device),
        spec=cohort.spec,
    )
    tmp = temp_dir(out)
    try:
        save_splits(split, tmp / "splits.json")
        fitted = [_run_fold(run, fold, tmp) for fold in split.folds]
        metrics, plots = _score(tmp, [frame for frame, _ in fitted], cohort, split, evaluate, emit)
        inputs = {
            "bags": str(bags.resolve()),
            "labels": str(labels.resolve()),
            "splits_from": str(Path(splits).resolve()) if splits else None,
        }
        _write_config(run, tmp / "config.yaml", inputs)
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = _run_summary(run, out, [fold for _, fold in fitted], metrics)
    summary.plots = [out / p.relative_to(tmp) for p in plots]
    emit("done", summary=summary)
    return summary


def _load(
    store: BagStore, cohort: Cohort, feature_dtype: str, device: torch.device, emit: Progress
) -> BagSet:
    """Every bag of the cohort in memory, once; on a GPU with room to spare, on the GPU."""
    emit("load", done=0, total=sum(len(s) for s in cohort.slides.values()))
    dtype = torch.float16 if feature_dtype == "float16" else torch.float32
    data = load_bags(store, cohort.patients, cohort.slides, cohort.y, dtype, progress=emit)
    if device.type == "cuda" and data.nbytes() < DEVICE_MEMORY_SHARE * torch.cuda.mem_get_info(device)[0]:
        data.features = data.features.to(device)  # batches are then gathered on the GPU
    return data


def _write_config(run: _Training, path: Path, inputs: dict[str, Any]) -> None:
    """config.yaml: the resolved sections and the provenance (inputs, device, time, task, cohort)."""
    cohort = run.cohort
    extra = {
        **inputs,
        "device": str(run.device),
        "seconds": round(time.perf_counter() - run.started, 1),
        "task": cohort.spec.to_dict(),
        "cohort": _cohort_record(cohort, run.split),
    }
    sample = run.store.meta(cohort.slides[cohort.patients[0]][0])
    record = {
        "train": run.config.model_dump(mode="json"),
        "evaluate": run.evaluate.model_dump(mode="json"),
        "provenance": provenance(run.config.seed, run.store.encoder, sample, extra),
    }
    path.write_text(yaml.safe_dump(record, sort_keys=False))


def _run_summary(run: _Training, out: Path, folds: list[FoldSummary], metrics: dict[str, Any]) -> RunSummary:
    """The run in numbers: each fold's test metric and the pooled one, with its one-line summary."""
    metric = run.task.metric_name
    for f in folds:
        f.test = metrics["folds"].get(str(f.fold), {}).get(metric) or {}
    return RunSummary(
        run=out,
        spec=run.cohort.spec,
        metric=metric,
        n_patients=len(run.cohort.patients),
        left_out=_left_out_counts(run.cohort, run.split),
        folds=folds,
        pooled=metrics["pooled"][metric],
        headline=run.task.summary(metrics["pooled"]),
        device=str(run.device),
        seconds=time.perf_counter() - run.started,
    )


def _run_fold(run: _Training, fold: Fold, run_dir: Path) -> tuple[pd.DataFrame, FoldSummary]:
    """Fit one fold, predict its test patients, write its checkpoint and history."""
    from mil.heads import create_head
    from mil.training.standardize import StandardizedHead, training_statistics

    t0 = time.perf_counter()
    config, task, data, cohort, device, emit = (
        run.config,
        run.task,
        run.data,
        run.cohort,
        run.device,
        run.emit,
    )
    position = {p: i for i, p in enumerate(cohort.patients)}
    tr, va, te = (np.array([position[p] for p in part]) for part in (fold.train, fold.val, fold.test))
    emit("fold_start", fold=fold.index, name=fold.name, n_train=len(tr), n_val=len(va), n_test=len(te),
         epochs=config.epochs)  # fmt: skip
    seed = config.seed * 1000 + fold.index
    with seeded(seed, device):
        model = create_head(config.head, data.dim, task.n_outputs, **config.model_params)
        if config.standardize:
            model = StandardizedHead(
                model, *training_statistics(data.features, data.offsets, torch.as_tensor(tr))
            )
        fit = fit_fold(model, task, data, tr, va, config, FitSetup(device, seed, fold.index, run.progress))
    out_test = task.outputs(infer(model, data, te, device, eval_batch_instances(config, device))).numpy()
    frame = task.frame(fold.test, fold.index, cohort.y[te], out_test)
    fold_dir = run_dir / "folds" / str(fold.index)
    save_checkpoint(
        fold_dir / "model.pt", model, head_name=config.head, model_params=config.model_params, in_dim=data.dim,
        spec=cohort.spec, encoder=run.store.encoder, fold=fold.index, best_epoch=fit.best_epoch, seed=seed,
    )  # fmt: skip
    pd.DataFrame([vars(h) for h in fit.history]).to_csv(fold_dir / "history.csv", index=False)
    seconds = time.perf_counter() - t0
    summary = FoldSummary(fold.index, fold.name, len(tr), len(va), len(te), fit.best_epoch, len(fit.history),
                          seconds, {})  # fmt: skip
    emit("fold_end", fold=fold.index, best_epoch=fit.best_epoch, epochs_run=len(fit.history),
         test_metric=task.metric(cohort.y[te], out_test), seconds=seconds)  # fmt: skip
    return frame, summary


def _score(
    run_dir: Path,
    frames: list[pd.DataFrame],
    cohort: Cohort,
    split: Splits,
    evaluate: EvaluateConfig,
    emit: Progress,
) -> tuple[dict[str, Any], list[Path]]:
    """predictions.csv, metrics.json, plots/ and left_out.csv, through the evaluation module's contract."""
    from mil.evaluate.metrics import compute_metrics
    from mil.evaluate.plots import write_plots
    from mil.evaluate.predictions import read_predictions, write_predictions
    from mil.evaluate.run import write_metrics

    spec = cohort.spec
    table = pd.concat(frames, ignore_index=True).sort_values("patient_id", kind="stable")
    write_predictions(table, spec, run_dir / "predictions.csv")
    table, _ = read_predictions(run_dir / "predictions.csv")  # score exactly what `mil evaluate` will read
    emit("metrics", n_bootstrap=evaluate.n_bootstrap)
    metrics = compute_metrics(table, spec, evaluate)
    metrics["cohort"] = _cohort_record(cohort, split)
    write_metrics(metrics, run_dir / "metrics.json")
    plots = write_plots(table, spec, run_dir / "plots")
    _left_out_table(cohort, split).to_csv(run_dir / "left_out.csv", index=False)
    return metrics, plots


def _splits(cohort: Cohort, strata: np.ndarray, config: TrainConfig, path: Path | None) -> Splits:
    if path is not None:
        return load_splits(Path(path), cohort.patients)
    if config.group_by is None:
        check_counts(cohort, config.folds)
    return make_splits(
        cohort.patients,
        strata,
        config.folds,
        config.seed,
        config.val_fraction,
        cohort.groups,
        config.group_by,
    )


def _left_out_counts(cohort: Cohort, split: Splits) -> dict[str, int]:
    return {**cohort.left_out(), "not_in_splits": len(split.dropped)}


def _cohort_record(cohort: Cohort, split: Splits) -> dict[str, Any]:
    return {
        "n_patients": len(cohort.patients),
        "n_slides": sum(len(s) for s in cohort.slides.values()),
        "left_out": _left_out_counts(cohort, split),
        "labels": str(cohort.labels_path),
    }


def _left_out_table(cohort: Cohort, split: Splits) -> pd.DataFrame:
    rows = [(p, "patient", "empty target") for p in cohort.left_out_empty]
    rows += [(i, "labelled, no bag", "missing bag (--allow-missing)") for i in cohort.missing_bags]
    rows += [(s, "slide", "no label row (--allow-missing)") for s in cohort.unlabelled_slides]
    rows += [
        (s, "slide", "labelled, no bag; the patient's other slides were used")
        for s in cohort.slides_without_bag
    ]
    rows += [(p, "patient", "in --splits but not in this cohort") for p in split.dropped]
    return pd.DataFrame(rows, columns=["id", "what", "reason"])
