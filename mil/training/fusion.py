"""Clinical covariates into a fold's fitted image model (`mil.heads.fused.FusedHead`), one of two ways:

- `stack` (selection crossfit): the members' held-out logits give every training patient an image prediction
  from a model that never saw it, so ONE linear model is fitted on [those logits, the covariates] over all the
  fold's training patients (the kind's logistic / ridge Cox, C by inner-CV deviance) and set into every member
  (`FusedHead.start_stacked`); no network is trained again. The image logits' weight is fitted with the
  covariates', over every training patient rather than a 12-60-patient validation part; the image weight is
  penalised far less than the covariates' (`IMAGE_PENALTY`), so a C chosen for noise covariates cannot shrink it;
  a near-tie of C goes to the stronger penalty (`STACK_TOLERANCE`), and the image weight is never negative.
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
# The covariates' C: the strongest penalty whose inner-CV deviance is within this many nats per patient of the
# best. On pure-noise covariates the plain minimum still gave them weight in a fold now and then, by chance of
# the inner split, and the image cohort paid for it; a near-tie going to the stronger penalty costs a real
# covariate little. Image cohort, 11 seeds, fused - image only: -0.011 with the plain minimum, -0.005 with this
# and the non-negative image weight below (survival -0.002 / -0.003). RESULTS.md, "Clinical covariates".
STACK_TOLERANCE = 0.003


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
    The image weight is never negative (see below). Where the kind has no linear model, or the fit leaves none,
    the members stay the image model alone (the covariate weights at zero). `infer_logits(member, positions)`:
    a member's logits, needed for shift-invariant outputs (Cox risks)."""
    from mil.baselines.cv import fit_selected
    from mil.heads.fused import FusedHead

    basis = task.logit_basis()
    image = held_logits.double().numpy() @ basis
    covariates = data.covariates.double().numpy()[held_index]
    design = np.concatenate([image, covariates], axis=1)
    factor = np.r_[np.full(image.shape[1], IMAGE_PENALTY), np.ones(covariates.shape[1])]
    y = data.y.numpy()[held_index]
    linear = fit_selected(
        design, y, task, seed, by="deviance", penalty_factor=factor, tolerance=STACK_TOLERANCE
    )
    fused = [FusedHead(copy.deepcopy(m), covariates.shape[1]).eval() for m in members]
    if linear is None or linear.logit_weights() is None:
        return fused
    j = basis.shape[1]
    weight, bias = _raw_weights(linear)
    image_map = basis @ weight[:, :j].T  # z @ basis @ W_image.T = z @ image_map
    if np.trace(image_map) <= 0:
        # The members' held-out logits do not rank the fold's training patients their own way round: a weight
        # <= 0 for a model trained to predict the target is noise, and a negative one would flip the ensemble's
        # ranking of the test patients. As in Breiman's stacking (weights >= 0), the image gets weight 0 and
        # the covariates-only model of these patients is the fold's fused model. Image cohort, 11 seeds: fold
        # AUC 0.375 from a negative weight (seed 10) where the image ensemble scored 0.708. RESULTS.md,
        # "Clinical covariates".
        factor[:j] = np.inf  # left out
        alone = fit_selected(
            design, y, task, seed, by="deviance", penalty_factor=factor, tolerance=STACK_TOLERANCE
        )
        weight, bias = _raw_weights(alone)
        image_map = np.zeros_like(image_map)
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


def _raw_weights(linear) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of a fitted linear model on the raw design: logits = design @ weight.T + bias. A column
    left out (penalty factor inf, sd inf) gets weight 0."""
    mean, sd, weight, bias = linear.logit_weights()
    weight = weight / sd
    return weight, bias - weight @ mean


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
