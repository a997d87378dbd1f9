"""A training job: one model fitted on one fold's patients, its test patients predicted; no files written.

`mil.training.train` makes the jobs of a run (one per fold, seeded `seed * 1000 + fold`) and hands them to an
engine (`mil.training.engines`): the local engine calls `fit_job` here, the Ray engine in a Ray worker, which
is why the inputs and the result are plain picklable records and the result's model is on the CPU. The
driver writes every result the same way (`mil.training.train._write_fold`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from features.core.device import resolve_device
from mil.cohort.covariates import CovariateEncoder, CovariateTable
from mil.cohort.labels import Cohort
from mil.cohort.splits import Fold
from mil.config import TrainConfig
from mil.tasks import Task
from mil.training.data import BagSet
from mil.training.fit import FitSetup, FoldFit, Progress, eval_batch_instances, fit_fold, infer, seeded


@dataclass
class FoldJob:
    """One model to fit: a fold of the splits and its seed. An engine runs a list of these (more seeds per
    fold, or a grid of heads, are more jobs)."""

    fold: Fold
    seed: int


@dataclass
class FoldInputs:
    """What every job of a run reads; picklable, so an engine can ship it to other processes once."""

    config: TrainConfig
    task: Task
    data: BagSet
    cohort: Cohort
    device: torch.device | None  # None: the device `config.device` names where the job runs
    covariates: CovariateTable | None = None  # with train.covariates: every patient's, not yet encoded


@dataclass
class FoldResult:
    """A fitted job, as the driver writes it: the model (on the CPU), its test predictions and history."""

    job: FoldJob
    model: torch.nn.Module
    frame: pd.DataFrame
    fit: FoldFit
    sizes: tuple[int, int, int]  # train, validation, test patients
    test_metric: float
    seconds: float
    device: str
    image_only: pd.DataFrame | None = (
        None  # with covariates: the head without them, on the same test patients
    )
    encoder: CovariateEncoder | None = None  # with covariates: the fold's encoding (training patients only)


def fit_job(inputs: FoldInputs, job: FoldJob, progress: Progress | None) -> FoldResult:
    """Fit one job's model on its fold's training patients and predict its test patients (no files written).

    With covariates: the covariates are encoded with statistics of the fold's training side (train +
    validation, never test; the covariates-only model of the run uses the same encoder), the head is fitted
    without them (image only), then the fused head starts from it (`_fit`)."""
    t0 = time.perf_counter()
    config, data, cohort, fold = inputs.config, inputs.data, inputs.cohort, job.fold
    device = inputs.device or resolve_device(config.device, "train.device")
    position = {p: i for i, p in enumerate(cohort.patients)}
    tr, va, te = (np.array([position[p] for p in part]) for part in (fold.train, fold.val, fold.test))
    if progress is not None:
        progress("fold_start", fold=fold.index, name=fold.name, n_train=len(tr), n_val=len(va), n_test=len(te),
                 epochs=config.epochs)  # fmt: skip
    parts = (tr, va, te)
    encoder, image_only = None, None
    if inputs.covariates is not None:
        encoder = CovariateEncoder.fit(inputs.covariates, [*fold.train, *fold.val])
        design, _ = encoder.transform(inputs.covariates, cohort.patients)
        image_model, image_only, _, _ = _fit(inputs, job, data, parts, device, progress)
        data = replace(data, covariates=torch.from_numpy(design))
        model, frame, fit, metric = _fit(inputs, job, data, parts, device, progress, start=image_model)
    else:
        model, frame, fit, metric = _fit(inputs, job, data, parts, device, progress)
    sizes = (len(tr), len(va), len(te))
    # The checkpoint is written from CPU tensors anyway; on the CPU the model can travel back from a GPU worker.
    return FoldResult(job, model.cpu(), frame, fit, sizes, metric, time.perf_counter() - t0, str(device),
                      image_only, encoder)  # fmt: skip


def _fit(
    inputs: FoldInputs,
    job: FoldJob,
    data: BagSet,
    parts: tuple[np.ndarray, np.ndarray, np.ndarray],
    device: torch.device,
    progress: Progress | None,
    start: torch.nn.Module | None = None,
) -> tuple[torch.nn.Module, pd.DataFrame, FoldFit, float]:
    """One head fitted from the job's seed; its test table and metric. With covariates in `data` the head is
    fused, starting from `start` (the fold's fitted image-only head): the fused model begins as that head
    exactly (`FusedHead` starts at zero) and keeps it unless an epoch with covariates does better on the
    validation patients, so the covariates' fast-learning path cannot swamp a slower image signal (without
    this the fused head lost 0.019 AUC to image only where the covariates were noise: benchmarks/RESULTS.md)."""
    from mil.heads import create_head
    from mil.training.standardize import StandardizedHead, training_statistics

    config, task, cohort, fold = inputs.config, inputs.task, inputs.cohort, job.fold
    tr, va, te = parts
    with seeded(job.seed, device):
        if start is None:
            model = create_head(config.head, data.dim, task.n_outputs, **config.model_params)
            if config.standardize:
                model = StandardizedHead(
                    model, *training_statistics(data.features, data.offsets, torch.as_tensor(tr))
                )
        else:
            model = copy.deepcopy(start)
        if data.covariates is not None:
            from mil.heads.fused import FusedHead

            model = FusedHead(model, data.covariates.shape[1])
        setup = FitSetup(device, job.seed, fold.index, progress, keep_start=start is not None)
        fit = fit_fold(model, task, data, tr, va, config, setup)
    out_test = task.outputs(infer(model, data, te, device, eval_batch_instances(config, device))).numpy()
    frame = task.frame(fold.test, fold.index, cohort.y[te], out_test)
    return model, frame, fit, task.metric(cohort.y[te], out_test)
