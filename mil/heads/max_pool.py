"""Max pooling: the bag is as positive as its most positive instance (the standard MIL assumption)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mil.heads import HEADS
from mil.heads.base import HeadOutput, MILHead, check_inputs
from mil.heads.blocks import embedding, fill_padding


@HEADS.register("max_pool")
class MaxPool(MILHead):
    """Max-pooling baseline: a per-instance classifier, bag logit = max over real instances, per class.

    `instance_scores` (B x C x N) are the per-instance logits; logits[b, c] = max_i instance_scores[b, c, i].
    Only the arg-max instance receives gradient, which is why it is a baseline, not a default. No attention
    (explanations use the instance scores or gradient x input). An all-padding row gives logits 0.
    """

    attention_kind = "none"

    def __init__(self, in_dim: int, n_outputs: int, **params):
        super().__init__(in_dim, n_outputs, **params)
        hidden = self.hidden_dim()
        self.embed = embedding(in_dim, hidden, self.params.dropout)
        self.classifier = nn.Linear(hidden, n_outputs)

    def forward(self, x: Tensor, mask: Tensor, target: Tensor | None = None) -> HeadOutput:
        check_inputs(self, x, mask)
        scores = self.classifier(self.embed(x)).transpose(1, 2)  # B x C x N
        logits = fill_padding(scores, mask[:, None, :]).amax(-1)
        logits = torch.where(mask.any(1, keepdim=True), logits, torch.zeros_like(logits))
        # the bag embedding is the max-pooled instance scores themselves (the head has no other)
        return HeadOutput(
            logits=logits, attention=None, instance_scores=scores * mask[:, None, :], pooled=logits
        )
