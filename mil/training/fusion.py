"""Clinical covariates into a fold's fitted image model (`mil.heads.fused.FusedHead`), one of two ways:

- `stack` (selection crossfit): the members' held-out logits give every training patient an image prediction
  from a model that never saw it, so ONE linear model is fitted on [those logits, the covariates] over all the
  fold's training patients (the kind's logistic / ridge Cox, C by inner-CV deviance) and set into every member
  (`FusedHead.start_stacked`); no network is trained again. The image logits' weight is fitted with the
  covariates', over every training patient rather than a 12-60-patient validation part; the image weight is
  penalised far less than the covariates' (`IMAGE_PENALTY`), so a C chosen for noise covariates cannot shrink it.
- `fuse` (selection validation): a single model has held-out predictions for its validation patients only
  (12-60), too few for that fit, so the model starts as itself plus the covariates-only model of its training
  patients and is fine-tuned, kept as it started unless an epoch does better on validation.

Measured on benchmarks/covariates.py (RESULTS.md, "Clinical covariates").
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
from torch import Tensor, nn

from mil.config import TrainConfig
from mil.tasks import Task
from mil.training.data import BagSet
from mil.training.fit import FitSetup, fit_fold, seeded

# The image logits' ridge penalty relative to a covariate's: their weight is a calibration slope, fitted almost
# freely, and the C chosen by inner-CV deviance shrinks the covariates alone. Measured on benchmarks/covariates.py,
# 5 seeds (RESULTS.md, "Clinical covariates"), fused - max(covariates only, image only): with one penalty for
# both (1), a strong C shrank an informative image weight as far as pure-noise covariates' (image cohort -0.101);
# letting the inner CV also choose 0.1 or 1, or leave either channel out, lost on the image cohort (-0.014, a
# fold left at a constant when its single-member held-out logits looked weak) for no gain elsewhere.
IMAGE_PENALTY = 1e-3


def stack(
    members: list[nn.Module],
    task: Task,
    data: BagSet,
    held_index: np.ndarray,
    held_logits: Tensor,
    seed: int,
    infer_logits: Callable[[nn.Module, np.ndarray], Tensor] | None = None,
) -> list[nn.Module]:
    """Each cross-fitted member behind a `FusedHead` holding one linear model stacked on the members' held-out
    logits (`held_logits`, rows `held_index` of `data`) and the covariates of `data`, fitted on those patients.
    Where the kind has no linear model, or the fit leaves none, the members stay the image model alone (the
    covariate weights at zero). `infer_logits(member, positions)`: a member's logits, needed for shift-invariant
    outputs (Cox risks)."""
    from mil.baselines.cv import fit_selected
    from mil.heads.fused import FusedHead

    basis = task.logit_basis()
    image = held_logits.double().numpy() @ basis
    covariates = data.covariates.double().numpy()[held_index]
    design = np.concatenate([image, covariates], axis=1)
    factor = np.r_[np.full(image.shape[1], IMAGE_PENALTY), np.ones(covariates.shape[1])]
    linear = fit_selected(
        design, data.y.numpy()[held_index], task, seed, by="deviance", penalty_factor=factor
    )
    weights = None if linear is None else linear.logit_weights()
    fused = [FusedHead(copy.deepcopy(m), covariates.shape[1]).eval() for m in members]
    if weights is None:
        return fused
    mean, sd, weight, bias = weights
    weight = weight / sd  # logits = design @ weight.T + bias, on the raw design
    bias = bias - weight @ mean
    j = basis.shape[1]
    image_map = basis @ weight[:, :j].T  # z @ basis @ W_image.T = z @ image_map
    for member, f in zip(members, fused, strict=True):
        offset = np.zeros_like(bias)
        if task.shift_invariant:
            # The held-out Cox risks were centred per member; each member's own origin (its mean risk on the
            # fold's training patients) is taken off here too, so every fold's fused risks share one origin
            # and the pooled c-index compares like with like (survival seed 3: 0.572 pooled, every fold >= the
            # covariates-only model's c-index, before this).
            offset = infer_logits(member, held_index).double().numpy().mean(0) @ image_map
        f.start_stacked(image_map, weight[:, j:], bias - offset)
    return fused


def fuse(
    model: nn.Module,
    task: Task,
    data: BagSet,
    train: np.ndarray,
    val: np.ndarray,
    config: TrainConfig,
    setup: FitSetup,
) -> tuple[nn.Module, object]:
    """A fitted image-only model with the covariates of `data` (`FusedHead`), started as that model plus the
    covariates-only linear model fitted on `train` (the kind's logistic / ridge Cox, C by the held-out deviance
    of an inner CV over those patients: added logits must have the right size, and on noise that choice gives
    near-zero weights), fine-tuned on `train` and kept as it started unless an epoch does better on `val`.
    Measured on benchmarks/covariates.py (RESULTS.md, "Clinical covariates"): started as the image model alone,
    the covariate path was learnt too slowly (survival c-index 0.558 vs 0.623 for the covariates alone); with
    C chosen by the c-index / AUC instead, noise covariates got weight (image cohort 0.568 vs 0.692, seed 0).
    Without the fine-tuning (fused = a x the image logit + that linear model, a fitted on `val`) the image cohort
    lost more: 5-seed margin -0.043 vs -0.019 (the fine-tuning shrinks noise weights the linear start has)."""
    from mil.baselines.cv import fit_selected
    from mil.heads.fused import FusedHead

    with seeded(setup.seed, setup.device):
        fused = FusedHead(copy.deepcopy(model), data.covariates.shape[1])
        design, y = data.covariates.numpy()[train], data.y.numpy()[train]
        linear = fit_selected(
            design.astype(np.float64), y, task, setup.seed * 1000 + setup.fold, by="deviance"
        )
        start = None if linear is None else linear.logit_weights()
        if start is not None:
            fused.start_from_linear(*start)
        fit = fit_fold(fused, task, data, train, val, config, setup)
    return fused, fit
