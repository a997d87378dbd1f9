"""Fit one head on one fold: seeded, early-stopped on the validation patients, best weights kept.

The loop is two separate functions on purpose: `train_epoch` runs the head in train mode with gradients;
`infer` runs it in eval mode under `torch.inference_mode()` (dropout off, no autograd graph), so validation and
test never run with training behaviour (the trap of one loop steered by a mode string).

Determinism: initialisation, dropout and subsampling draw from RNGs seeded per fold inside
`torch.random.fork_rng`, so the global RNG of the caller is untouched and the same seed repeats a fold
exactly on the same device, software versions and thread count (float sums are reordered across threads).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from features.core.errors import InputError
from mil.config import TrainConfig
from mil.tasks import Task
from mil.training.data import BagSet, Batch, eval_batches, train_batches

Progress = Callable[..., None]


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float
    val_metric: float


@dataclass
class FoldFit:
    best_epoch: int
    best_score: float  # the monitored value at best_epoch
    history: list[EpochLog] = field(default_factory=list)
    test_metric: float = math.nan  # the task's metric on the fold's test patients, set by the caller


def eval_batch_instances(config: TrainConfig, device: torch.device) -> int:
    """The inference batch budget: the configured one, else 16,384 instances on the CPU (a 2,000-cell batch's
    activations then fit the caches; 1.3-1.6x the throughput of 262,144 for abmil, gated and transmil at 384-d
    and 1536-d on this project's CPUs) and 262,144 on a GPU (one big batch keeps it busy)."""
    if config.eval_batch_instances is not None:
        return config.eval_batch_instances
    return 16384 if device.type == "cpu" else 262144


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay, momentum=0.9)


def train_epoch(
    model: nn.Module,
    task: Task,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    grad_clip_norm: float | None,
    device: torch.device,
) -> float:
    """One pass over the training bags (`train_batches`: one epoch); returns the mean loss per bag (task loss
    + the head's aux losses)."""
    model.train()
    total = torch.zeros((), device=device)
    seen = 0
    for batch in batches:
        out = forward(model, batch, target=task.head_target(batch.y))
        loss = task.loss(out.logits, batch.y)
        for aux in out.aux_losses.values():
            loss = loss + aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
        optimizer.step()
        total += loss.detach() * len(batch.index)  # summed on the device: no host sync per step
        seen += len(batch.index)
    return float(total) / max(seen, 1)


def forward(model: nn.Module, batch: Batch, target: Tensor | None = None):
    """The model on one batch, with the batch's covariates where the model fuses them (`FusedHead`); a fused
    model handed bags without covariates is a caller's bug, never an image-only prediction in disguise. The
    batch's precomputed pooled statistics go to a model with a prior (`PriorHead`), which would otherwise
    compute the same numbers from the batch."""
    given = {}
    if batch.statistics is not None and getattr(model, "takes_statistics", False):
        given["statistics"] = batch.statistics
    if getattr(model, "n_covariates", 0):
        if batch.covariates is None:
            raise ValueError("a model with covariates was handed bags without them")
        return model(batch.x, batch.mask, target=target, covariates=batch.covariates, **given)
    return model(batch.x, batch.mask, target=target, **given)


def infer(
    model: nn.Module, bags: BagSet, index: np.ndarray, device: torch.device, max_batch_instances: int
) -> Tensor:
    """Logits (len(index) x C, CPU float32) in the order of `index`, every instance of every bag."""
    model.eval()
    position = {int(b): i for i, b in enumerate(np.asarray(index))}
    logits: Tensor | None = None
    with torch.inference_mode():
        for batch in eval_batches(bags, index, device, max_batch_instances):
            out = forward(model, batch).logits.float().cpu()
            if logits is None:
                logits = torch.empty((len(index), out.shape[1]))
            logits[[position[int(b)] for b in batch.index]] = out
    assert logits is not None
    return logits


@dataclass(frozen=True)
class FitSetup:
    """Where and how one fold is fitted: the device, the fold's seed (batch order; the caller seeds the
    global RNGs with `seeded`), the fold's number (for messages and progress) and the per-epoch callback."""

    device: torch.device
    seed: int
    fold: int = 0
    progress: Progress | None = None
    # Score the model as handed in (epoch 0) and keep it unless an epoch beats it on validation: for a model
    # that starts from a fitted one (the fused head starts from the fold's image-only head).
    keep_start: bool = False


def fit_fold(
    model: nn.Module,
    task: Task,
    bags: BagSet,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    config: TrainConfig,
    setup: FitSetup,
) -> FoldFit:
    """Train `model` in place until validation stops improving for `patience` epochs; on return the model
    holds the weights of its best validation epoch."""
    device = setup.device
    generator = torch.Generator().manual_seed(setup.seed)
    model.to(device)
    optimizer = make_optimizer(model, config)
    y_train = bags.y[train_idx].numpy()
    task.fit_weights(y_train, enabled=config.class_weights and not config.balanced_sampling)
    sample_weights = task.sample_weights(y_train) if config.balanced_sampling else None
    lower_is_better = config.monitor == "loss"
    best = FoldFit(best_epoch=0, best_score=math.inf if lower_is_better else -math.inf)
    best_state: dict[str, Tensor] = {}
    if setup.keep_start:
        best.best_score = monitored(EpochLog(0, 0.0, *_validate(model, task, bags, val_idx, config, device)),
                                     task, config, setup.fold)  # fmt: skip
        best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    for epoch in range(1, config.epochs + 1):
        batches = train_batches(
            bags,
            train_idx,
            config.batch_size,
            generator,
            device,
            config.max_instances,
            config.instance_dropout,
            sample_weights,
        )
        train_loss = train_epoch(model, task, batches, optimizer, config.grad_clip_norm, device)
        log = EpochLog(epoch, train_loss, *_validate(model, task, bags, val_idx, config, device))
        best.history.append(log)
        score = monitored(log, task, config, setup.fold)
        improved = score < best.best_score if lower_is_better else score > best.best_score
        if improved:
            best.best_epoch, best.best_score = epoch, score
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if setup.progress is not None:
            setup.progress(
                "epoch",
                fold=setup.fold,
                epoch=epoch,
                epochs=config.epochs,
                train_loss=log.train_loss,
                val_loss=log.val_loss,
                val_metric=log.val_metric,
                best_epoch=best.best_epoch,
            )
        if epoch - best.best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    return best


def _validate(
    model: nn.Module, task: Task, bags: BagSet, val_idx: np.ndarray, config: TrainConfig, device: torch.device
) -> tuple[float, float]:
    """The loss and the task's metric on the validation patients."""
    y_val = bags.y[val_idx]
    logits = infer(model, bags, val_idx, device, eval_batch_instances(config, device))
    with torch.inference_mode():
        val_loss = float(task.loss(logits, y_val))
    return val_loss, task.metric(y_val.numpy(), task.outputs(logits).numpy())


def monitored(log: EpochLog, task: Task, config: TrainConfig, fold: int) -> float:
    """The value early stopping watches (`train.monitor`) on the held-out patients (validation part, or all
    inner held-out patients with cross-fitting); a loss that is not finite, or a held-out metric that is
    undefined, stops the run with the fix rather than training on blindly. Epoch 0 (the untrained start)
    has no training loss."""
    if not ((log.epoch == 0 or math.isfinite(log.train_loss)) and math.isfinite(log.val_loss)):
        raise InputError(
            f"fold {fold}: loss is not finite at epoch {log.epoch} (train {log.train_loss}, held-out "
            f"{log.val_loss}); lower train.lr or check the bag store for NaN features"
        )
    if config.monitor == "loss":
        return log.val_loss
    if math.isnan(log.val_metric):
        raise InputError(
            f"fold {fold}: the held-out {task.metric_name} is undefined (one class among the held-out "
            "patients); use train.monitor=loss or a larger train.val_fraction"
        )
    return log.val_metric


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global torch RNGs (CPU, and CUDA on a GPU) for one fold; restore them afterwards."""
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
