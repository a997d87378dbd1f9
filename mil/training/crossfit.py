"""Cross-fitting: one fold's member models trained in lockstep, early-stopped on ALL their held-out patients.

Why: on 60-300 patients a fold's 20 % validation part is 12-60 patients, and early stopping on their loss picks
an epoch by noise. Here the fold's training patients are split into k inner parts (`Fold.inner`); member j
trains on every part but j and predicts part j after each epoch, so after every epoch each training patient has
exactly one held-out prediction (averaged over the `seeds` members that hold its part out). The pooled
held-out loss over all training patients picks the epoch for every member at once, and the same held-out
logits then fit the calibration (`mil.training.calibrate`) and, with `--model auto`, choose the head
(`mil.training.auto`). The members' ensemble predicts the fold's test patients, which took part in nothing.

Members are ordinary heads behind their own z-score (statistics of the member's own training patients), each
initialised and batched from seed `seed * 100 + j`; dropout draws come from the global RNG the caller seeds
per fold (`mil.training.fit.seeded`), consumed in a fixed member order, so the fold repeats exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from mil.config import TrainConfig
from mil.tasks import Task
from mil.training.data import BagSet, train_batches
from mil.training.fit import (
    EpochLog,
    FitSetup,
    eval_batch_instances,
    infer,
    make_optimizer,
    monitored,
    train_epoch,
)


@dataclass
class Member:
    """One member model: what it trains on and which inner part it predicts."""

    model: nn.Module
    train: np.ndarray  # positions in the BagSet
    held: np.ndarray
    seed: int
    optimizer: torch.optim.Optimizer | None = None
    generator: torch.Generator | None = None
    best_state: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class CrossFit:
    members: list[nn.Module]  # at the best epoch, eval mode
    best_epoch: int
    best_loss: float
    best_metric: float
    held_index: np.ndarray  # the fold's training positions, in the order of `held_logits`
    held_logits: Tensor  # one held-out prediction per training patient at the best epoch (P x C)
    history: list[EpochLog] = field(default_factory=list)


def member_plan(train: np.ndarray, parts: list[np.ndarray], seeds: int, seed: int) -> list[tuple]:
    """(train positions, held-out positions, seed) per member: part j held out, `seeds` members per part."""
    plan = []
    for s in range(seeds):
        for j, held in enumerate(parts):
            rest = np.setdiff1d(train, held)
            plan.append((np.sort(rest), np.sort(held), seed * 100 + s * len(parts) + j))
    return plan


def fit_crossfit(
    make_model: Callable[[np.ndarray, int], nn.Module],
    task: Task,
    bags: BagSet,
    train: np.ndarray,
    parts: list[np.ndarray],
    config: TrainConfig,
    setup: FitSetup,
) -> CrossFit:
    """Fit `config.seeds` members per inner part in lockstep (`make_model(train_positions, seed)` builds one,
    seeded); stop when the pooled held-out signal has not improved for `patience` epochs; every member ends
    at the best epoch's weights."""
    device = setup.device
    members = []
    for rest, held, seed in member_plan(np.asarray(train), parts, config.seeds, setup.seed):
        model = make_model(rest, seed).to(device)
        members.append(Member(model, rest, held, seed, make_optimizer(model, config),
                              torch.Generator().manual_seed(seed)))  # fmt: skip
    train = np.sort(np.concatenate(parts))
    y_all = bags.y[train]
    lower_is_better = config.monitor == "loss"
    best = CrossFit([], 0, math.inf, math.nan, train, torch.empty(0))
    best_score = math.inf if lower_is_better else -math.inf
    # Epoch 0 is scored too: a member that starts as the pooled-statistics prior (mil.training.prior) keeps
    # that start unless training improves the held-out loss.
    for epoch in range(0, config.epochs + 1):
        if epoch:
            losses = []
            for k, m in enumerate(members):
                losses.append(_train_member(m, task, bags, config, device))
                if (
                    setup.progress is not None
                ):  # an epoch of 5 members on 300 large bags takes a minute on a CPU
                    setup.progress("member", fold=setup.fold, epoch=epoch, member=k + 1, members=len(members))
            train_loss = float(np.mean(losses))
        else:
            train_loss = math.nan
        logits = _held_out_logits(members, task, bags, train, config, device)
        task.fit_weights(y_all.numpy(), enabled=config.class_weights and not config.balanced_sampling)
        with torch.inference_mode():
            loss = float(task.loss(logits, y_all))
        metric = task.metric(y_all.numpy(), task.outputs(logits).numpy())
        log = EpochLog(epoch, train_loss, loss, metric)
        best.history.append(log)
        score = monitored(log, task, config, setup.fold)
        if score < best_score if lower_is_better else score > best_score:
            best_score, best.best_epoch, best.best_loss, best.best_metric = score, epoch, loss, metric
            best.held_logits = logits
            for m in members:
                m.best_state = {k: v.detach().to("cpu", copy=True) for k, v in m.model.state_dict().items()}
        if setup.progress is not None and epoch:
            setup.progress("epoch", fold=setup.fold, epoch=epoch, epochs=config.epochs, train_loss=train_loss,
                           val_loss=loss, val_metric=metric, best_epoch=best.best_epoch)  # fmt: skip
        if epoch - best.best_epoch >= config.patience:
            break
    for m in members:
        m.model.load_state_dict(m.best_state)
        m.model.eval()
    best.members = [m.model for m in members]
    return best


def _train_member(
    member: Member, task: Task, bags: BagSet, config: TrainConfig, device: torch.device
) -> float:
    """One epoch of one member, with class weights (or sampling weights) of its own training patients."""
    y = bags.y[member.train].numpy()
    task.fit_weights(y, enabled=config.class_weights and not config.balanced_sampling)
    weights = task.sample_weights(y) if config.balanced_sampling else None
    batches = train_batches(bags, member.train, config.batch_size, member.generator, device,
                            config.max_instances, config.instance_dropout, weights)  # fmt: skip
    return train_epoch(member.model, task, batches, member.optimizer, config.grad_clip_norm, device)


def _held_out_logits(
    members: list[Member], task: Task, bags: BagSet, train: np.ndarray, config: TrainConfig, device
) -> Tensor:
    """P x C: each training patient's logits from the members that held it out (mean over seeds); for
    shift-invariant outputs (Cox risks) each member's held-out logits are centred first."""
    position = {int(p): i for i, p in enumerate(train)}
    total = None
    count = torch.zeros(len(train))
    batch = eval_batch_instances(config, device)
    for m in members:
        logits = infer(m.model, bags, m.held, device, batch)
        if task.shift_invariant:
            logits = logits - logits.mean(0, keepdim=True)
        if total is None:
            total = torch.zeros(len(train), logits.shape[1])
        rows = torch.tensor([position[int(p)] for p in m.held])
        total[rows] += logits
        count[rows] += 1
    assert total is not None and bool((count > 0).all()), "inner parts must cover the training patients"
    return total / count[:, None]
