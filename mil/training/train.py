"""`mil train`: patient-level cross-validation of one MIL head, from a bag store and a labels CSV.

`train_cv` validates everything first (labels against the store, classes against the fold count, splits for
leakage, the output folder), then loads every bag once and fits one model per fold. The run folder holds:

    config.yaml       resolved config + provenance (versions, seed, encoder, git commit, command line, cohort)
    splits.json       patients per fold and part (reuse with --splits)
    predictions.csv   one out-of-fold row per patient (+ .spec.json), the input of `mil evaluate`
                      (calibrated probabilities; predictions_uncalibrated.csv holds the raw ones)
    metrics.json      per fold and pooled, with bootstrap CIs (mil.evaluate), plus the cohort counts, the
                      `selection` (recipe, epoch and, with --model auto, the choice per fold), the
                      `calibration` (per-fold temperature and bias, Brier and ECE before and after), and
                      `baselines` / `comparison`: each baseline's pooled metrics, head minus baseline (paired CI)
    left_out.csv      patients/slides not used, with the reason
    plots/            ROC per class, confusion matrix, or Kaplan-Meier of predicted risk groups; reliability;
                      head vs baselines
    baselines/<name>/predictions.csv   each baseline's out-of-fold predictions on the same folds (`mil.baselines`)
    candidates/<name>/predictions.csv   --model auto: every candidate's out-of-fold predictions
    folds/<k>/model.pt, model.<j>.pt (one per member model of the fold's ensemble), history.csv

Per-fold seeds are `seed * 1000 + fold`, so folds differ from each other and a run repeats exactly. One
fold's fitting (cross-fitting or a validation hold-out, the auto choice, calibration) is
`mil.training.recipe.train_fold`, called by the fold job (`mil.training.jobs`), which the benchmarks call too.
"""

from __future__ import annotations

import json
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
from features.core.errors import InputError
from features.pipeline.store_settings import effective_settings
from mil.baselines.run import BaselineData, BaselineRun, fit_baselines
from mil.cells.model import CellModel
from mil.cohort.covariates import CovariateTable, covariate_source, read_covariates
from mil.cohort.labels import Cohort, build_cohort, check_counts
from mil.cohort.splits import (
    Splits,
    check_leakage,
    load_splits,
    make_splits,
    save_splits,
    with_inner,
    without_inner,
)
from mil.config import EvaluateConfig, TrainConfig
from mil.tasks import Task, TaskSpec, create_task
from mil.training.checkpoint import save_checkpoint
from mil.training.data import BagSet, load_bags
from mil.training.engines import FoldEngine, LocalFoldEngine
from mil.training.fit import Progress
from mil.training.jobs import FoldInputs, FoldJob, FoldResult, fit_job
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
    chosen: str = ""  # the candidate this fold chose (--model auto), else the head
    n_models: int = 1  # member models in the fold's ensemble


@dataclass
class RunSummary:
    run: Path
    spec: TaskSpec
    head: str  # the head's registry name
    metric: str  # key of the main metric in metrics.json (`Task.metric_name`: "macro_auc", "c_index", ...)
    n_patients: int
    left_out: dict[str, int]
    folds: list[FoldSummary]
    pooled: dict[str, Any]  # main metric over all out-of-fold predictions, with CI
    headline: str  # the kind's one-line summary of the pooled metrics: "macro AUC 0.812 (95% CI 0.700-0.900)"
    device: str
    seconds: float
    plots: list[Path] = field(default_factory=list)
    splits_only: list[str] = field(
        default_factory=list
    )  # named by --splits, not in this cohort (left unused)
    baselines: dict[str, Any] = field(
        default_factory=dict
    )  # metrics.json "baselines": name -> status, pooled
    comparison: dict[str, Any] = field(default_factory=dict)  # metrics.json "comparison": name -> difference
    covariates: dict[str, Any] = field(default_factory=dict)  # metrics.json "covariates": the three models
    calibration: dict[str, Any] | None = None  # metrics.json `calibration` (None: not calibrated)
    candidates: dict[str, Any] = field(default_factory=dict)  # --model auto: candidate -> pooled main metric


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
    engine: FoldEngine
    devices: set[str] = field(default_factory=set)  # where the folds ran (reported by each fold)
    covariates: CovariateTable | None = None

    @property
    def device_label(self) -> str:
        where = ", ".join(sorted(self.devices)) or str(self.device)
        return where if self.engine.name == "local" else f"{where} ({self.engine.name})"


def train_cv(
    bags: Path,
    labels: Path,
    config: TrainConfig,
    out: Path,
    splits: Path | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    evaluate: EvaluateConfig = EvaluateConfig(),
    engine: FoldEngine | None = None,
    clinical: Path | None = None,
) -> RunSummary:
    """Cross-validate `config.head` on the patients of `labels` found in the bag store `bags`; write RUN.
    `evaluate` sets the bootstrap of metrics.json (the same section `mil evaluate` reads); `engine` fits the
    folds (default: one after another in this process; `mil.training.engines`). `clinical`: a CSV of
    patient_id + the `config.covariates` columns, instead of the labels CSV's (`mil.cohort.covariates`)."""
    engine = engine or LocalFoldEngine()
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
    if splits is not None:  # the folds are the file's: config.yaml must say how many were used
        config = config.model_copy(update={"folds": len(split.folds)})
    covariates = None
    if config.covariates:
        table, source = covariate_source(labels, clinical)
        covariates = read_covariates(config.covariates, table, source, cohort.patients)
    elif clinical is not None:
        raise InputError(f"--clinical {clinical} given without --covariates; name the columns to use")
    cell_model = _cell_model(config, store, cohort, split, emit)
    # Another engine resolves `config.device` where each fold runs; this process only holds the bags.
    device = resolve_device(config.device if engine.name == "local" else "cpu", "train.device")
    data = _load(store, cohort, config.feature_dtype, device, emit)
    run = _Training(
        config,
        evaluate,
        store,
        cohort,
        task,
        split,
        device,
        data,
        emit,
        progress,
        started,
        engine,
        covariates=covariates,
    )
    emit(
        "start",
        n_patients=len(cohort.patients),
        n_folds=len(split.folds),
        device=str(device) if engine.name == "local" else engine.name,
        spec=cohort.spec,
    )
    tmp = temp_dir(out)
    try:
        save_splits(split, tmp / "splits.json")
        fitted = _fit_all(run, tmp)
        shared = BaselineData(data.arrays, data.dim, cohort.patients, cohort.y, split, config.seed)
        baselines = fit_baselines(config.baselines, shared, task, emit, _baseline_params(cell_model))
        if covariates is not None:
            from mil.baselines.covariates import fit_covariates_only

            encoders = {f.summary.fold: f.encoder for f in fitted}
            baselines.append(fit_covariates_only(covariates, encoders, shared, task, emit))
        metrics, plots = _score(tmp, fitted, run, baselines)
        inputs = {
            "bags": str(bags.resolve()),
            "labels": str(labels.resolve()),
            "clinical": str(Path(clinical).resolve()) if clinical else None,
            "cell_model": str(Path(config.cell_model).resolve()) if config.cell_model else None,
            "splits_from": str(Path(splits).resolve()) if splits else None,
        }
        _write_config(run, tmp / "config.yaml", inputs)
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = _run_summary(run, out, [f.summary for f in fitted], metrics)
    summary.plots = [out / p.relative_to(tmp) for p in plots]
    emit("done", summary=summary)
    return summary


def _cell_model(
    config: TrainConfig, store: BagStore, cohort: Cohort, split: Splits, emit: Progress
) -> CellModel | None:
    """`train.cell_model` loaded and checked against the store before any bag is read; one warning line when
    it learnt cell types from patients this run tests (their shares are typed by a model that saw their
    cells: optimistic for the cell_composition baseline, not a leak of the run's labels)."""
    if not config.cell_model:
        return None
    from mil.baselines.cell_composition import load_cell_model, patients_learnt

    model = load_cell_model(config.cell_model, store)
    tested = (p for fold in split.folds for p in fold.test)
    seen = patients_learnt(model, tested, cohort.slides, Path(store.path))
    if seen:
        shown = ", ".join(seen[:3]) + (" ..." if len(seen) > 3 else "")
        emit("warning", text=f"cell model {config.cell_model} learnt from {len(seen)} patient(s) this run tests "
             f"({shown}); cell_composition is optimistic for them: train the cell model on other patients")  # fmt: skip
    return model


def _baseline_params(cell_model: CellModel | None) -> dict[str, dict]:
    return {} if cell_model is None else {"cell_composition": {"cell_model": cell_model}}


def _fit_all(run: _Training, run_dir: Path) -> list[_FoldOutput]:
    """Every fold's job through the engine; results are written here, in this process, as they come back
    (in any order with a parallel engine), and returned in fold order."""
    jobs = [FoldJob(fold, run.config.seed * 1000 + fold.index) for fold in run.split.folds]
    local = run.engine.name == "local"
    inputs = FoldInputs(
        run.config, run.task, run.data, run.cohort, run.device if local else None, run.covariates
    )
    written = {}
    for job, result in run.engine.run(fit_job, inputs, jobs, run.progress):
        run.devices.add(result.device)
        written[job.fold.index] = _write_fold(run, result, run_dir)
    return [written[job.fold.index] for job in jobs]


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
        "device": run.device_label,
        "engine": run.engine.describe(),
        "seconds": round(time.perf_counter() - run.started, 1),
        "task": cohort.spec.to_dict(),
        "cohort": _cohort_record(cohort, run.split),
        "store_extraction": effective_settings(
            run.store
        ),  # predict and heatmap refuse a store made otherwise
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
        head=run.config.head,
        metric=metric,
        n_patients=len(run.cohort.patients),
        left_out=_left_out_counts(run.cohort, run.split),
        folds=folds,
        pooled=metrics["pooled"][metric],
        headline=run.task.summary(metrics["pooled"]),
        device=run.device_label,
        seconds=time.perf_counter() - run.started,
        splits_only=run.split.dropped,
        baselines=metrics.get("baselines", {}),
        comparison=metrics.get("comparison", {}),
        covariates=metrics.get("covariates", {}),
        calibration=metrics.get("calibration"),
        candidates={k: v.get(metric) for k, v in metrics["selection"].get("candidates", {}).items()},
    )


@dataclass
class _FoldOutput:
    """What one fold hands to the run's outputs: prediction rows (calibrated, raw, per auto candidate), the
    selection record for metrics.json and the summary row."""

    frame: pd.DataFrame
    raw: pd.DataFrame
    candidates: dict[str, pd.DataFrame]
    selection: dict[str, Any]
    summary: FoldSummary
    image_only: pd.DataFrame | None = None  # with covariates: the head without them (`mil.training.jobs`)
    encoder: Any = None  # with covariates: the fold's CovariateEncoder


def _write_fold(run: _Training, result: FoldResult, run_dir: Path) -> _FoldOutput:
    """The fold's checkpoints (one per member model: model.pt, model.<j>.pt) and history, written by the
    driver whatever engine fitted it."""
    fold = result.job.fold
    fold_dir = run_dir / "folds" / str(fold.index)
    for j, model in enumerate(result.models):
        save_checkpoint(
            fold_dir / ("model.pt" if j == 0 else f"model.{j}.pt"), model, head_name=result.head,
            model_params=result.model_params, in_dim=run.data.dim, spec=run.cohort.spec,
            encoder=run.store.encoder, fold=fold.index, best_epoch=result.best_epoch, seed=result.job.seed, member=j,
            members=len(result.models),
            covariates=None if result.encoder is None else result.encoder.to_dict(),
        )  # fmt: skip
    if result.encoder is not None:
        (fold_dir / "covariates.json").write_text(json.dumps(result.encoder.to_dict(), indent=1))
    pd.DataFrame([vars(h) for h in result.history]).to_csv(fold_dir / "history.csv", index=False)
    summary = FoldSummary(fold.index, fold.name, *result.sizes, result.best_epoch, len(result.history),
                          result.seconds, {}, result.chosen, len(result.models))  # fmt: skip
    run.emit("fold_end", fold=fold.index, best_epoch=result.best_epoch, epochs_run=len(result.history),
             test_metric=result.test_metric, seconds=result.seconds,
             chosen=result.chosen if result.candidates else None)  # fmt: skip
    return _FoldOutput(result.frame, result.raw, result.candidates, result.selection, summary,
                       result.image_only, result.encoder)  # fmt: skip


def _score(
    run_dir: Path, fitted: list[_FoldOutput], run: _Training, baselines: list[BaselineRun]
) -> tuple[dict[str, Any], list[Path]]:
    """predictions.csv, metrics.json, plots/ and left_out.csv, through the evaluation module's contract;
    the baselines' predictions and their comparison with the head (`mil.baselines.run`)."""
    from mil.baselines.run import write_baselines
    from mil.evaluate.metrics import compute_metrics, jsonable
    from mil.evaluate.plots import write_plots
    from mil.evaluate.predictions import read_predictions
    from mil.evaluate.run import write_metrics

    cohort, split, evaluate, spec = run.cohort, run.split, run.evaluate, run.cohort.spec
    _write_table([f.frame for f in fitted], spec, run_dir / "predictions.csv")
    table, _ = read_predictions(run_dir / "predictions.csv")  # score exactly what `mil evaluate` will read
    run.emit("metrics", n_bootstrap=evaluate.n_bootstrap)
    metrics = compute_metrics(table, spec, evaluate)
    metrics["cohort"] = _cohort_record(cohort, split)
    metrics["selection"] = _selection_record(run, fitted, run_dir)
    records, comparison, compared = write_baselines(run_dir, baselines, table, run.task, evaluate)
    metrics["baselines"], metrics["comparison"] = jsonable(records), jsonable(comparison)
    if run.covariates is not None:
        metrics["covariates"] = jsonable(_three_models(run_dir, fitted, table, baselines, run))
    plots = write_plots(table, spec, run_dir / "plots") + compared
    calibration = _calibration_record(run, fitted, table, run_dir)
    if calibration is not None:
        metrics["calibration"], figure = calibration
        plots.append(figure)
    write_metrics(metrics, run_dir / "metrics.json")
    _left_out_table(cohort, split).to_csv(run_dir / "left_out.csv", index=False)
    return metrics, plots


def _write_table(frames: list[pd.DataFrame], spec: TaskSpec, path: Path) -> pd.DataFrame:
    from mil.evaluate.predictions import write_predictions

    table = pd.concat(frames, ignore_index=True).sort_values("patient_id", kind="stable")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_predictions(table, spec, path)
    return table


def _selection_record(run: _Training, fitted: list[_FoldOutput], run_dir: Path) -> dict[str, Any]:
    """metrics.json `selection`: the recipe, each fold's choice and, with --model auto, every candidate's
    pooled out-of-fold metric (the best of those was picked after seeing the test folds: optimistic)."""
    from mil.evaluate.metrics import compute_metrics
    from mil.evaluate.predictions import read_predictions

    config = run.config
    out: dict[str, Any] = {
        "selection": config.selection,
        "inner_folds": config.inner_folds if config.selection == "crossfit" else None,
        "seeds": config.seeds,
        "head": config.head,
        "folds": {str(f.summary.fold): f.selection for f in fitted},
    }
    names = list(fitted[0].candidates) if fitted and fitted[0].candidates else []
    if not names:
        return out
    metric = run.task.metric_name
    pooled = {}
    for name in names:
        path = run_dir / "candidates" / name / "predictions.csv"
        _write_table([f.candidates[name] for f in fitted], run.cohort.spec, path)
        table, _ = read_predictions(path)
        pooled[name] = compute_metrics(table, run.cohort.spec, run.evaluate)["pooled"].get(metric)
    out["candidates"] = {name: {metric: block} for name, block in pooled.items()}
    known = {n: b["estimate"] for n, b in pooled.items() if b and b.get("estimate") is not None}
    out["best_single"] = max(known, key=known.get) if known else None
    out["note"] = (
        "the run's own metrics are the honest nested estimate of choosing per fold; best_single was picked "
        "after seeing the outer test folds and is optimistic"
    )
    return out


def _calibration_record(
    run: _Training, fitted: list[_FoldOutput], table: pd.DataFrame, run_dir: Path
) -> tuple[dict[str, Any], Path] | None:
    """metrics.json `calibration` and plots/reliability.png, or None where the kind has no probabilities
    or calibration is off (then the raw predictions are the predictions)."""
    from mil.evaluate.calibration import calibration_scores, reliability_figure
    from mil.evaluate.plots import save_figure
    from mil.evaluate.predictions import read_predictions

    if run.config.calibration == "none" or calibration_scores(run.task, table) is None:
        return None
    raw_path = run_dir / "predictions_uncalibrated.csv"
    _write_table([f.raw for f in fitted], run.cohort.spec, raw_path)
    raw, _ = read_predictions(raw_path)
    after, before = calibration_scores(run.task, table), calibration_scores(run.task, raw)
    folds = {str(f.summary.fold): f.selection["calibration"] for f in fitted}
    record = {"method": run.config.calibration, "folds": folds, "calibrated": after, "uncalibrated": before}
    figure = save_figure(reliability_figure(after, before), run_dir / "plots" / "reliability.png")
    return record, figure


def _three_models(
    run_dir: Path,
    fitted: list[_FoldOutput],
    fused: pd.DataFrame,
    baselines: list[BaselineRun],
    run: _Training,
) -> dict[str, Any]:
    """metrics.json `covariates`: covariates only vs image only vs fused on the same patients and folds."""
    from mil.evaluate.compare import model_comparison
    from mil.evaluate.predictions import read_predictions, write_predictions

    spec = run.cohort.spec
    image = pd.concat([f.image_only for f in fitted], ignore_index=True).sort_values(
        "patient_id", kind="stable"
    )
    path = run_dir / "image_only" / "predictions.csv"
    write_predictions(image, spec, path)
    tables = {"image_only": read_predictions(path)[0], "fused": fused}
    covariates_only = next(b for b in baselines if b.name == "covariates")
    if covariates_only.table is not None:
        path = run_dir / "baselines" / "covariates" / "predictions.csv"
        tables["covariates_only"] = read_predictions(path)[0]
    block = model_comparison(tables, spec, run.evaluate)
    block["columns"] = run.covariates.columns
    block["kinds"] = run.covariates.kinds
    block["source"] = run.covariates.source
    if covariates_only.table is None:
        block["covariates_only_skipped"] = covariates_only.record.get("reason")
    return block


def _splits(cohort: Cohort, strata: np.ndarray, config: TrainConfig, path: Path | None) -> Splits:
    """The run's folds: loaded (and fitted to the selection: inner parts for crossfit, a validation part
    otherwise) or made."""
    crossfit = config.selection == "crossfit"
    if path is not None:
        loaded = load_splits(Path(path), cohort.patients)
        by_patient = dict(zip(cohort.patients, strata, strict=True))
        if crossfit:
            return with_inner(loaded, by_patient, config.inner_folds)
        return without_inner(loaded, by_patient, config.val_fraction)
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
        inner_folds=config.inner_folds if crossfit else None,
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
