"""One outer fold, start to finish: fit (cross-fitting or a validation hold-out), choose (`--model auto`),
calibrate, and predict the fold's test patients. `mil train` (`mil.training.train`) and the benchmarks call
this same function, so a benchmark measures exactly what a user runs.

Positions are rows of the `BagSet`. The test positions are used once, at the end, to predict.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from mil.cohort.splits import hold_out
from mil.config import TrainConfig
from mil.config.schema import AUTO
from mil.tasks import Task
from mil.training.auto import Candidate, better, grid
from mil.training.calibrate import CalibratedHead, Calibration, ensemble_outputs_of, fit_calibration
from mil.training.data import BagSet
from mil.training.fit import EpochLog, FitSetup, eval_batch_instances, fit_fold, infer, seeded
from mil.training.prior import PriorHead, add_statistics, fit_prior, statistics_of


@dataclass
class FoldParts:
    """Positions of one outer fold: `inner` (crossfit) partitions `train`; `val` is used by validation."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    inner: list[np.ndarray] = field(default_factory=list)


@dataclass
class Fitted:
    """One candidate fitted on a fold: its members (calibrated), selection figures and test outputs."""

    candidate: Candidate
    models: list[nn.Module]
    best_epoch: int
    history: list[EpochLog]
    inner_loss: float  # held-out loss at the best epoch (crossfit: all training patients; else validation)
    inner_metric: float
    calibration: Calibration | None
    test_raw: np.ndarray  # ensemble task outputs on the test patients, uncalibrated
    test_out: np.ndarray  # the same, calibrated (equal to test_raw without calibration)
    held_index: np.ndarray  # positions with an inner held-out prediction (crossfit: every training patient)
    held_logits: torch.Tensor  # those predictions, uncalibrated (len(held_index) x outputs)


@dataclass
class FoldResult:
    chosen: Fitted
    candidates: list[Fitted]  # every candidate fitted (one unless head is auto)

    @property
    def auto(self) -> bool:
        return len(self.candidates) > 1


def candidates(config: TrainConfig) -> tuple[Candidate, ...]:
    if config.head == AUTO:
        return grid(config.model_params)  # the run's model_params apply to every candidate
    return (Candidate(config.head, config.head, dict(config.model_params)),)


def train_fold(
    task: Task, bags: BagSet, parts: FoldParts, config: TrainConfig, setup: FitSetup
) -> FoldResult:
    """Fit every candidate of `config` on this fold, keep the best on inner data, predict the test part."""
    fitted, best, chosen = [], None, None
    priors = Priors(task, bags, setup.seed)  # one prior per member training set, shared by the candidates
    for candidate in candidates(config):
        one = _fit_candidate(candidate, task, bags, parts, config, setup, priors)
        fitted.append(one)
        if better(one.inner_metric, one.inner_loss, best):
            best, chosen = (one.inner_metric, one.inner_loss), one
    assert chosen is not None
    return FoldResult(chosen, fitted)


class Priors:
    """Pooled-statistics priors (`mil.training.prior`) per training set, fitted once and reused; the bags'
    statistics are computed once per bag set (they use no labels)."""

    def __init__(self, task: Task, bags: BagSet, seed: int):
        self.task, self.bags, self.seed = task, bags, seed
        self.fitted: dict[bytes, tuple | None] = {}
        self.stats: np.ndarray | None = None

    def get(self, train: np.ndarray) -> tuple | None:
        key = np.sort(train).tobytes()
        if key not in self.fitted:
            if self.stats is None:
                self.stats = statistics_of(self.bags, np.arange(len(self.bags.patients)))
                add_statistics(self.bags)  # the same numbers in torch, for the heads' batches
            y = self.bags.y.numpy()
            self.fitted[key] = fit_prior(self.task, self.stats[train], y[train], self.seed)
        return self.fitted[key]


def _fit_candidate(
    candidate: Candidate,
    task: Task,
    bags: BagSet,
    parts: FoldParts,
    config: TrainConfig,
    setup: FitSetup,
    priors: Priors,
) -> Fitted:
    from mil.heads import create_head
    from mil.training.standardize import StandardizedHead, training_statistics

    def make_model(train: np.ndarray, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = create_head(candidate.head, bags.dim, task.n_outputs, **candidate.model_params)
        if config.standardize:
            stats = training_statistics(bags.features, bags.offsets, torch.as_tensor(train))
            model = StandardizedHead(model, *stats)
        if config.prior != "none":
            prior = priors.get(train)
            if prior is not None:
                model = PriorHead(model, *(torch.as_tensor(a) for a in prior))
        return model

    device = setup.device
    with seeded(setup.seed, device):
        if config.selection == "crossfit":
            from mil.training.crossfit import fit_crossfit

            fit = fit_crossfit(make_model, task, bags, parts.train, parts.inner, config, setup)
            members, epoch, history = fit.members, fit.best_epoch, fit.history
            held_index, held_logits, held_y = fit.held_index, fit.held_logits, bags.y[fit.held_index]
            loss, metric = fit.best_loss, fit.best_metric
        else:
            members, epoch, history, held_index, held_logits = _fit_validation(
                make_model, task, bags, parts, config, setup
            )
            held_y = bags.y[held_index]
            with torch.inference_mode():  # the kept models' validation figures (epoch 0 has no history row)
                loss = float(task.loss(held_logits, held_y))
            metric = task.metric(held_y.numpy(), task.outputs(held_logits).numpy())
    calibration = fit_calibration(task, held_logits, held_y) if config.calibration != "none" else None
    raw = _ensemble(members, task, bags, parts.test, config, device)
    if calibration is not None:
        members = [CalibratedHead(m, calibration).eval() for m in members]
        out = _ensemble(members, task, bags, parts.test, config, device, calibrated=True)
    else:
        out = raw
    return Fitted(candidate, members, epoch, history, loss, metric, calibration, raw, out, held_index,
                  held_logits)  # fmt: skip


def validation_plan(
    task: Task, bags: BagSet, parts: FoldParts, config: TrainConfig, seed: int
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(training positions, validation positions, seed) of each single model of a `selection: validation` fold:
    the first on the fold's own parts and seed (with `seeds: 1`, the recipe before seed ensembles, unchanged);
    each further one on its own validation part, redrawn (stratified, `val_fraction`) from the fold's training
    and validation patients, so the ensemble's early stopping does not rest on the same 12-24 patients. The
    fold's test patients are in none of them."""
    plan = [(parts.train, parts.val, seed)]
    if config.seeds == 1:
        return plan
    pool = np.sort(np.concatenate([parts.train, parts.val]))
    strata = task.strata(bags.y.numpy()[pool])
    for s in range(1, config.seeds):
        member_seed = seed * 100 + s
        train, val = hold_out(pool, strata, config.val_fraction, member_seed)
        plan.append((train, val, member_seed))
    return plan


def _fit_validation(
    make_model, task: Task, bags: BagSet, parts: FoldParts, config: TrainConfig, setup: FitSetup
):
    """`config.seeds` single models, each early-stopped on its own validation part (`validation_plan`). Returns
    the models, the first one's best epoch and history, the validation patients' positions and their logits
    averaged over the models that held them out (calibration and `--model auto` use them)."""
    models, fits, total, count = [], [], None, torch.zeros(len(bags.patients))
    batch = eval_batch_instances(config, setup.device)
    for train, val, seed in validation_plan(task, bags, parts, config, setup.seed):
        model = make_model(train, seed)
        # On the prior, the start IS the baseline: score it (epoch 0) and keep it unless an epoch beats it on
        # validation, as cross-fitting does. Consistency, not a measured gain: the single model with the prior
        # stayed below the baseline with it too (synth w0.1 60 x 1,000 cells 0.828 vs 0.830 without).
        member_setup = replace(setup, seed=seed, keep_start=config.prior != "none")
        fits.append(fit_fold(model, task, bags, train, val, config, member_setup))
        models.append(model.eval())
        logits = infer(model, bags, val, setup.device, batch)
        if task.shift_invariant and config.seeds > 1:  # Cox risks: each model's own origin
            logits = logits - logits.mean(0, keepdim=True)
        rows = torch.as_tensor(val)
        total = torch.zeros(len(count), logits.shape[1]) if total is None else total
        total[rows] += logits
        count[rows] += 1
    assert total is not None
    held = torch.nonzero(count > 0).ravel()
    return models, fits[0].best_epoch, fits[0].history, held.numpy(), total[held] / count[held, None]


def _ensemble(
    models: list[nn.Module],
    task: Task,
    bags: BagSet,
    index: np.ndarray,
    config: TrainConfig,
    device,
    calibrated: bool = False,
) -> np.ndarray:
    """The members' task outputs (probabilities, or risks) on `index`, combined as `mil predict` combines one
    fold's members (`ensemble_outputs_of`)."""
    batch = eval_batch_instances(config, device)
    logits = [infer(m, bags, index, device, batch) for m in models]
    return ensemble_outputs_of(task, logits, calibrated).numpy()


def record(result: FoldResult) -> dict[str, Any]:
    """The fold's choice and its candidates' inner figures, JSON-ready (metrics.json `selection`)."""
    return {
        "chosen": result.chosen.candidate.name,
        "head": result.chosen.candidate.head,
        "model_params": result.chosen.candidate.model_params,
        "best_epoch": result.chosen.best_epoch,
        "calibration": result.chosen.calibration.to_dict() if result.chosen.calibration else None,
        "candidates": {
            f.candidate.name: {
                "inner_metric": _num(f.inner_metric),
                "inner_loss": _num(f.inner_loss),
                "best_epoch": f.best_epoch,
            }  # fmt: skip
            for f in result.candidates
        },
    }


def _num(value: float) -> float | None:
    return None if value != value else round(float(value), 6)
