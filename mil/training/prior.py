"""The pooled-statistics prior: a head that starts as the baseline and learns only what the baseline misses.

Why: on 60-300 patients the per-patient mean / SD / quantiles of each feature with a regularised logistic
regression (the baseline every run reports, #11) is hard to beat: it averages away the noise a head must learn
to ignore. `PriorHead` adds that model's logits to the head's, with the head's share behind a gate that starts
at exactly 0 (ReZero, Bachlechner et al. 2021):

    logits(bag) = W z(stats(bag)) + b  +  g * head(bag).logits,    g = 0 at the start of training

so before the first step every member IS the baseline, fitted on the member's own training patients
(`fit_prior`: C chosen by an inner 5-fold CV among them, never on held-out or test patients). Cross-fitting
scores that starting point as epoch 0, and training is kept only if the pooled held-out loss of all training
patients improves on it. Attention keeps its meaning: it is the head's own weighting of the cells, and it
explains what the head adds to the bag's averages (rare cells). The prior's weights are frozen buffers.

Statistics per feature over the bag's real instances: mean, SD and the 10th, 50th and 90th percentiles (the
baseline's set), so a D-dim encoder gives 5 D prior inputs, standardised with the member's training patients.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from mil.heads.base import HeadOutput
from mil.heads.blocks import masked_mean_sd
from mil.tasks import Task
from mil.training.data import BagSet
from mil.training.standardize import HeadWrapper

QUANTILES = (0.1, 0.5, 0.9)
C_GRID = tuple(float(c) for c in 10.0 ** np.arange(-3.0, 2.01, 0.5))
INNER_FOLDS = 5


def bag_statistics(x: Tensor, mask: Tensor) -> Tensor:
    """B x N x D (mask True = real) -> B x 5D: mean, SD, q10, q50, q90 of every feature over real instances
    (a quantile is the order statistic at floor(q (n - 1)); padding sorts last)."""
    n = mask.sum(1).clamp_min(1)
    filled = x.masked_fill(~mask[..., None], float("inf")).sort(dim=1).values
    parts = [masked_mean_sd(x, mask)]
    for q in QUANTILES:
        k = (q * (n - 1)).floor().long()  # B
        parts.append(filled.gather(1, k[:, None, None].expand(-1, 1, x.shape[2]))[:, 0])
    out = torch.cat(parts, dim=1)
    return out.masked_fill(~mask.any(1, keepdim=True), 0.0)


def statistics_of(bags: BagSet, index: np.ndarray) -> np.ndarray:
    """P x 5D bag statistics of the bags `index` (one bag at a time: memory of one bag)."""
    rows = []
    for b in np.asarray(index):
        s, e = int(bags.offsets[b]), int(bags.offsets[b + 1])
        x = bags.features[s:e].float().cpu()[None]
        rows.append(bag_statistics(x, torch.ones(x.shape[:2], dtype=torch.bool))[0].numpy())
    return np.stack(rows).astype(np.float64)


class PriorHead(HeadWrapper):
    """logits = prior(bag) + gate * head(bag); attention and instance scores are the head's own."""

    def __init__(self, head: nn.Module, mean: Tensor, scale: Tensor, weight: Tensor, bias: Tensor):
        super().__init__(head)
        self.register_buffer("prior_mean", mean.float())
        self.register_buffer("prior_scale", scale.float())
        self.register_buffer("prior_weight", weight.float())  # C x 5D
        self.register_buffer("prior_bias", bias.float())  # C
        self.gate = nn.Parameter(torch.zeros(()))

    def prior_logits(self, x: Tensor, mask: Tensor) -> Tensor:
        z = (bag_statistics(x, mask) - self.prior_mean) / self.prior_scale
        return z @ self.prior_weight.T + self.prior_bias

    def forward(self, x: Tensor, mask: Tensor, target: Tensor | None = None) -> HeadOutput:
        out = self.head(x, mask, target=target)
        out.logits = self.prior_logits(x, mask) + self.gate * out.logits
        if out.instance_scores is not None:
            out.instance_scores = self.gate * out.instance_scores
        return out


def fit_prior(task: Task, stats: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, ...] | None:
    """(mean, scale, weight C x F, bias C) of the task's regularised linear model on standardised statistics,
    C chosen by inner CV on these patients; None where the kind has no such model (`Task.prior_model`)."""
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    from mil.cohort.splits import merge_rare

    mean, scale = stats.mean(0), stats.std(0)
    scale[scale < 1e-8] = 1.0
    z = (stats - mean) / scale
    strata = task.strata(y)
    k = min(INNER_FOLDS, len(y))
    with threadpool_limits(1):  # small fits: one BLAS thread (10-100x faster on a loaded machine)
        best_c, best = C_GRID[0], -np.inf
        if k >= 2 and len(set(map(str, strata))) > 1:
            folds = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(z, merge_rare(strata, k)))
            for c in C_GRID:
                oof = np.full((len(y), task.n_outputs), np.nan)
                for tr, te in folds:
                    fitted = task.prior_model(z[tr], y[tr], c)
                    if fitted is None:
                        return None
                    w, b = fitted
                    oof[te] = z[te] @ w.T + b
                score = -float(task.calibration_loss(torch.as_tensor(oof, dtype=torch.float32),
                                                     torch.as_tensor(y)))  # fmt: skip
                if score > best + 1e-9:
                    best_c, best = c, score
        fitted = task.prior_model(z, y, best_c)
    if fitted is None:
        return None
    return mean, scale, *fitted
