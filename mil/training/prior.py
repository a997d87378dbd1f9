"""The pooled-statistics prior: a head that starts as the baseline and learns only what the baseline misses.

Why: on 60-300 patients the per-patient mean / SD / quantiles of each feature with a regularised logistic
regression (the baseline every run reports, #11) is hard to beat: it averages away the noise a head must learn
to ignore. `PriorHead` adds that model's logits to the head's, with the head's share behind a gate that starts
at exactly 0 (ReZero, Bachlechner et al. 2021):

    logits(bag) = W z(stats(bag)) + b  +  g * head(bag).logits,    g = 0 at the start of training

so before the first step every member IS the baseline, fitted on the member's own training patients
(`fit_prior`: the baseline's own fit, `mil.baselines`, C chosen by its inner CV among them, never on
held-out or test patients). Cross-fitting
scores that starting point as epoch 0, and training is kept only if the pooled held-out loss of all training
patients improves on it. Attention keeps its meaning: it is the head's own weighting of the cells, and it
explains what the head adds to the bag's averages (rare cells). The prior's weights are frozen buffers.

Statistics per feature over the bag's real instances: mean, SD and the 10th, 50th and 90th percentiles (the
baseline's set), so a D-dim encoder gives 5 D prior inputs, standardised with the member's training patients.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from mil.heads.base import HeadOutput
from mil.heads.blocks import masked_mean_sd
from mil.tasks import Task
from mil.training.data import BagSet
from mil.training.standardize import HeadWrapper

QUANTILES = (0.1, 0.5, 0.9)  # the baseline's (`mil.baselines.pooled_stats.QUANTILES`); checked by a test


def bag_statistics(x: Tensor, mask: Tensor) -> Tensor:
    """B x N x D (mask True = real) -> B x 5D: mean, SD, q10, q50, q90 of every feature over real instances,
    in torch, equal to `mil.baselines.pooled_stats.pooled_statistics` (quantiles interpolated linearly between
    order statistics, as `np.quantile`; padding sorts last), so the head computes the prior's inputs itself."""
    n = mask.sum(1).clamp_min(1)
    filled = x.masked_fill(~mask[..., None], float("inf")).sort(dim=1).values
    parts = [masked_mean_sd(x, mask)]
    for q in QUANTILES:
        position = q * (n - 1).float()  # B
        below = position.floor().long()
        above = torch.minimum(below + 1, n - 1)
        frac = (position - below.float())[:, None]
        lo, hi = (filled.gather(1, k[:, None, None].expand(-1, 1, x.shape[2]))[:, 0] for k in (below, above))
        parts.append(
            lo * (1 - frac) + hi * frac
        )  # `above` is always a real cell (an empty bag: zeroed below)
    out = torch.cat(parts, dim=1)
    return out.masked_fill(~mask.any(1, keepdim=True), 0.0)


def add_statistics(bags: BagSet) -> None:
    """`bags.statistics`: `bag_statistics` of every whole bag, once (kept on the CPU, moved with each batch), so
    batches of whole bags hand them to the prior (`data.gather`) instead of sorting every batch at every forward pass of
    every member (the largest single cost of training and prediction with a prior: #11 scale check). One bag
    at a time: the numbers of a padded batch, to float32 rounding of its sums (tested)."""
    if bags.statistics is not None:
        return
    rows = []
    with torch.inference_mode():
        for b in range(len(bags.patients)):
            x = bags.features[int(bags.offsets[b]) : int(bags.offsets[b + 1])].float()[None]
            rows.append(bag_statistics(x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)))
    bags.statistics = torch.cat(rows).cpu()


def statistics_of(bags: BagSet, index: np.ndarray) -> np.ndarray:
    """P x 5D statistics of the bags `index`, by the baseline's own featuriser (one bag at a time)."""
    from mil.baselines.pooled_stats import PooledStats

    def each() -> Iterator[np.ndarray]:
        for b in np.asarray(index):
            s, e = int(bags.offsets[b]), int(bags.offsets[b + 1])
            yield bags.features[s:e].float().cpu().numpy()

    return PooledStats().features(each(), bags.dim).values


class PriorHead(HeadWrapper):
    """logits = prior(bag) + gate * head(bag); attention and instance scores are the head's own."""

    def __init__(self, head: nn.Module, mean: Tensor, scale: Tensor, weight: Tensor, bias: Tensor):
        super().__init__(head)
        self.register_buffer("prior_mean", mean.float())
        self.register_buffer("prior_scale", scale.float())
        self.register_buffer("prior_weight", weight.float())  # C x 5D
        self.register_buffer("prior_bias", bias.float())  # C
        self.gate = nn.Parameter(torch.zeros(()))

    takes_statistics = True

    def prior_logits(self, x: Tensor, mask: Tensor, statistics: Tensor | None = None) -> Tensor:
        """`statistics`: `bag_statistics(x, mask)` computed beforehand (`add_statistics`), else computed here."""
        stats = bag_statistics(x, mask) if statistics is None else statistics
        z = (stats - self.prior_mean) / self.prior_scale
        return z @ self.prior_weight.T + self.prior_bias

    def forward(
        self, x: Tensor, mask: Tensor, target: Tensor | None = None, statistics: Tensor | None = None
    ) -> HeadOutput:
        out = self.head(x, mask, target=target)
        out.logits = self.prior_logits(x, mask, statistics) + self.gate * out.logits
        if out.instance_scores is not None:
            out.instance_scores = self.gate * out.instance_scores
        return out


def fit_prior(task: Task, stats: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, ...] | None:
    """(mean, scale, weight C x F, bias C): the pooled-statistics baseline itself (`mil.baselines`: C chosen by
    its inner CV on these patients, then the task's regularised linear model), as logits; None for survival
    (the prior's gate was built and measured on class logits only) or where the patients hold one class."""
    from mil.baselines.cv import fit_selected
    from mil.baselines.linear import RidgeCox

    if isinstance(task.baseline_model(1.0), RidgeCox | None):
        return None  # the kind trains its head alone, before any costly C search
    return fit_selected(stats, y, task, seed).logit_weights()
