"""Attention-based deep MIL (Ilse, Tomczak & Welling, ICML 2018, arXiv:1802.04712), plain and gated."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from torch import Tensor, nn

from mil.heads import HEADS
from mil.heads.base import HeadOutput, HeadParams, MILHead, check_inputs
from mil.heads.blocks import AttentionScorer, RunningNorm, attention_pool, embedding, masked_mean_sd


class ABMILParams(HeadParams):
    attention_dim: int | None = Field(
        None, ge=1, description="Width of the attention MLP; default hidden_dim // 2."
    )
    pool_stats: bool = Field(
        False,
        description="Add the bag's mean and SD of every input feature (standardised by running statistics) "
        "to the classifier, beside the attention-pooled embedding, so the head itself can represent a "
        "linear model of the bag's averages; attention keeps its meaning (weights over the cells). Off by "
        "default: the recipe's pooled-statistics prior (train.prior) does this better on small cohorts "
        "(benchmarks/RESULTS.md, 'Training recipe'); one of the --model auto candidates.",
    )


@HEADS.register("abmil")
class ABMIL(MILHead):
    """Attention MIL (Ilse et al. 2018): embed, tanh attention, softmax over instances, weighted sum, linear.

        h_i = ReLU(W_e x_i)                       instance embedding
        a_i = softmax_i(w^T tanh(V h_i))          over the real instances of the bag
        z   = sum_i a_i h_i,   logits = W_c z + b

    Because the classifier is linear, logits = sum_i a_i (W_c h_i + b): `instance_scores[b, c, i] = W_c h_i + b`
    are the logits of a bag made of instance i alone, and the bag logits are their attention-weighted mean
    (an exact decomposition the explainer can show per cell). Permutation invariant.

    With `pool_stats` the logits gain a second, attention-free term W_s s, where s is the bag's
    mean and SD of every input feature (running-standardised): logits = sum_i a_i (W_c h_i + b) + W_s s.
    `instance_scores` stay the attention branch's per-cell logits; the bag-statistics term is the same for
    every cell of the bag.
    """

    Params = ABMILParams
    attention_kind = "attention"
    gated: ClassVar[bool] = False

    def __init__(self, in_dim: int, n_outputs: int, **params):
        super().__init__(in_dim, n_outputs, **params)
        hidden = self.hidden_dim()
        attention_dim = self.params.attention_dim or max(4, hidden // 2)
        self.embed = embedding(in_dim, hidden, self.params.dropout)
        self.attention = AttentionScorer(hidden, attention_dim, 1, self.gated, self.params.dropout)
        self.classifier = nn.Linear(hidden, n_outputs)
        if self.params.pool_stats:
            self.stats_norm = RunningNorm(2 * in_dim)
            self.stats_classifier = nn.Sequential(
                nn.Dropout(self.params.dropout), nn.Linear(2 * in_dim, n_outputs, bias=False)
            )

    def forward(self, x: Tensor, mask: Tensor, target: Tensor | None = None) -> HeadOutput:
        check_inputs(self, x, mask)
        h = self.embed(x)
        attention, pooled = attention_pool(self.attention(h), h, mask)
        logits = self.classifier(pooled[:, 0])
        if self.params.pool_stats:
            logits = logits + self.stats_classifier(self.stats_norm(masked_mean_sd(x, mask)))
        instance_scores = self.classifier(h).transpose(1, 2) * mask[:, None, :]
        return HeadOutput(
            logits=logits, attention=attention, instance_scores=instance_scores, pooled=pooled[:, 0]
        )


@HEADS.register("gated_abmil")
class GatedABMIL(ABMIL):
    """Gated attention MIL (Ilse et al. 2018): a_i = softmax_i(w^T (tanh(V h_i) * sigmoid(U h_i))).

    The sigmoid gate lifts the near-linearity of tanh for small inputs, which the paper found helps on
    histology; otherwise identical to `abmil` (same params, same instance-score decomposition).
    """

    gated = True
