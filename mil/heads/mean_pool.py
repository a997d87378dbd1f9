"""Mean pooling: the no-attention baseline every attention head must beat."""

from __future__ import annotations

from torch import Tensor, nn

from mil.heads import HEADS
from mil.heads.base import HeadOutput, MILHead, check_inputs
from mil.heads.blocks import embedding, masked_mean


@HEADS.register("mean_pool")
class MeanPool(MILHead):
    """Mean-pooling baseline: embed each instance, average over the bag, linear classifier.

    logits = W mean_i(h_i) + b = mean_i(W h_i + b), so `instance_scores[b, c, i] = W_c h_i + b_c` are the logits
    of a bag made of instance i alone and the bag logits are their plain mean. No attention (explanations use
    gradient x input). Permutation invariant.
    """

    attention_kind = "none"

    def __init__(self, in_dim: int, n_outputs: int, **params):
        super().__init__(in_dim, n_outputs, **params)
        hidden = self.hidden_dim()
        self.embed = embedding(in_dim, hidden, self.params.dropout)
        self.classifier = nn.Linear(hidden, n_outputs)

    def forward(self, x: Tensor, mask: Tensor, target: Tensor | None = None) -> HeadOutput:
        check_inputs(self, x, mask)
        h = self.embed(x)
        pooled = masked_mean(h, mask)
        logits = self.classifier(pooled)
        instance_scores = self.classifier(h).transpose(1, 2) * mask[:, None, :]
        return HeadOutput(logits=logits, attention=None, instance_scores=instance_scores, pooled=pooled)
