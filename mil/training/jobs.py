"""A training job: one fold fitted by the recipe (its member models), its test patients predicted; no files written.

`mil.training.train` makes the jobs of a run (one per fold, seeded `seed * 1000 + fold`) and hands them to an
engine (`mil.training.engines`): the local engine calls `fit_job` here, the Ray engine in a Ray worker, which
is why the inputs and the result are plain picklable records and the result's model is on the CPU. The
driver writes every result the same way (`mil.training.train._write_fold`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from features.core.device import resolve_device
from mil.cohort.covariates import CovariateEncoder, CovariateTable
from mil.cohort.labels import Cohort
from mil.cohort.splits import Fold
from mil.config import TrainConfig
from mil.tasks import Task
from mil.training.calibrate import ensemble_outputs_of
from mil.training.data import BagSet
from mil.training.fit import EpochLog, FitSetup, Progress, eval_batch_instances, infer
from mil.training.fusion import fuse, stack
from mil.training.recipe import FoldParts, record, train_fold, validation_plan


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
    """A fitted job, as the driver writes it: the chosen candidate's member models (calibrated, on the CPU),
    its test predictions (calibrated and raw), every auto candidate's, the selection record and history."""

    job: FoldJob
    models: list[torch.nn.Module]
    head: str  # the chosen candidate's head and params (`--model auto`: per fold)
    model_params: dict[str, Any]
    chosen: str  # the chosen candidate's name
    frame: pd.DataFrame  # test outputs, calibrated
    raw: pd.DataFrame  # the same, uncalibrated
    candidates: dict[str, pd.DataFrame]  # --model auto: every candidate's test outputs; else empty
    selection: dict[str, Any]  # metrics.json `selection` of this fold (`mil.training.recipe.record`)
    best_epoch: int
    history: list[EpochLog]
    sizes: tuple[int, int, int]  # train, validation, test patients
    test_metric: float
    seconds: float
    device: str
    image_only: pd.DataFrame | None = (
        None  # with covariates: the recipe's model without them, same test patients
    )
    encoder: CovariateEncoder | None = None  # with covariates: the fold's encoding (training patients only)


def fold_parts(fold: Fold, cohort: Cohort) -> FoldParts:
    """The fold's patient lists as positions in the cohort's bag set."""
    position = {p: i for i, p in enumerate(cohort.patients)}

    def rows(part: list[str]) -> np.ndarray:
        return np.array([position[p] for p in part], dtype=np.int64)

    return FoldParts(rows(fold.train), rows(fold.val), rows(fold.test), [rows(p) for p in fold.inner])


def fit_job(inputs: FoldInputs, job: FoldJob, progress: Progress | None) -> FoldResult:
    """Fit one job's fold by the recipe (`mil.training.recipe.train_fold`) on its training patients and predict
    its test patients (no files written)."""
    t0 = time.perf_counter()
    config, task, data, cohort, fold = inputs.config, inputs.task, inputs.data, inputs.cohort, job.fold
    device = inputs.device or resolve_device(config.device, "train.device")
    parts = fold_parts(fold, cohort)
    sizes = (len(parts.train), len(parts.val), len(parts.test))
    if progress is not None:
        progress("fold_start", fold=fold.index, name=fold.name, n_train=sizes[0], n_val=sizes[1], n_test=sizes[2],
                 epochs=config.epochs)  # fmt: skip
    result = train_fold(task, data, parts, config, FitSetup(device, job.seed, fold.index, progress))
    chosen, y_test = result.chosen, cohort.y[parts.test]

    def frame(out: np.ndarray) -> pd.DataFrame:
        return task.frame(fold.test, fold.index, y_test, out)

    others = {f.candidate.name: frame(f.test_out) for f in result.candidates} if result.auto else {}
    if inputs.covariates is not None:
        # fused: the recipe's chosen (image-only) members with the covariates (`mil.training.fusion`)
        encoder = CovariateEncoder.fit(inputs.covariates, [*fold.train, *fold.val])
        design, _ = encoder.transform(inputs.covariates, cohort.patients)
        fused_data = replace(data, covariates=torch.from_numpy(design))
        batch = eval_batch_instances(config, device)
        if config.selection == "crossfit":
            held = chosen.held_logits
            if chosen.calibration is not None:  # the members are calibrated: stack on what they output
                held = chosen.calibration.apply(held)
            models = stack(chosen.models, task, fused_data, chosen.held_index, held, job.seed * 1000 + fold.index,
                           lambda m, index: infer(m, fused_data, index, device, batch))  # fmt: skip
            best_epoch, history = chosen.best_epoch, chosen.history
        else:
            setup = FitSetup(device, job.seed, fold.index, progress, keep_start=True)
            fits = [fuse(m, task, fused_data, train, val, config, setup)
                    for m, (train, val) in zip(chosen.models, member_splits(task, data, parts, config, job.seed),
                                               strict=True)]  # fmt: skip
            models = [m for m, _ in fits]
            best_epoch, history = fits[0][1].best_epoch, fits[0][1].history
        logits = [infer(m, fused_data, parts.test, device, batch) for m in models]
        out = ensemble_outputs_of(task, logits, chosen.calibration is not None).numpy()
        return FoldResult(
            job, [m.cpu() for m in models], chosen.candidate.head, dict(chosen.candidate.model_params),
            chosen.candidate.name, frame(out), frame(out), others, record(result), best_epoch,
            history, sizes, task.metric(y_test, out), time.perf_counter() - t0, str(device),
            frame(chosen.test_out), encoder,
        )  # fmt: skip
    # Checkpoints are written from CPU tensors anyway; on the CPU the models can travel back from a GPU worker.
    return FoldResult(
        job, [m.cpu() for m in chosen.models], chosen.candidate.head, dict(chosen.candidate.model_params),
        chosen.candidate.name, frame(chosen.test_out), frame(chosen.test_raw), others, record(result),
        chosen.best_epoch, chosen.history, sizes, task.metric(y_test, chosen.test_out),
        time.perf_counter() - t0, str(device),
    )  # fmt: skip


def member_splits(
    task: Task, data: BagSet, parts: FoldParts, config: TrainConfig, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training, validation positions) of each single model of a `selection: validation` fold, in member
    order (`mil.training.recipe.validation_plan`): where its fused version is fine-tuned and judged."""
    return [(train, val) for train, val, _ in validation_plan(task, data, parts, config, seed)]
