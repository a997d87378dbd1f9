"""SCEMILA's multi-attention head (Hehr et al., PLOS Digital Health 2023): one attention per class."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from mil.heads import HEADS
from mil.heads.base import HeadOutput, HeadParams, MILHead, check_inputs
from mil.heads.blocks import AttentionScorer, PerClassLinear, attention_pool, embedding


class SCEMILAParams(HeadParams):
    attention_dim: int | None = Field(
        None, ge=1, description="Width of the attention MLP; default hidden_dim // 2."
    )
    classifier_dim: int | None = Field(
        None, ge=1, description="Hidden width of each class's classifier MLP; default min(64, hidden_dim)."
    )


@HEADS.register("scemila")
class SCEMILA(MILHead):
    """SCEMILA multi-attention (Hehr et al. 2023): one attention vector and one classifier per class; K = C.

        h_i     = ReLU(W_e x_i)
        a_{c,i} = softmax_i(w_c^T tanh(V h_i))        one attention column per class
        z_c     = sum_i a_{c,i} h_i;   logit_c = f_c(z_c),  f_c = Linear-ReLU-Linear(-> 1)

    Each class looks for its own cells (e.g. promyelocytes for APL) and scores only what it pooled.
    `instance_scores[b, c, i] = f_c(h_i)`: class c's logit for a bag made of instance i alone (f_c is
    nonlinear, so the bag logit is not their weighted mean). SCEMILA's 2-D conv feature processor is replaced
    by the linear embedding, as `mil` bags hold one vector per cell. Permutation invariant.
    """

    Params = SCEMILAParams
    attention_kind = "per_class_attention"

    def __init__(self, in_dim: int, n_outputs: int, **params):
        super().__init__(in_dim, n_outputs, **params)
        p, hidden = self.params, self.hidden_dim()
        self.embed = embedding(in_dim, hidden, p.dropout)
        self.attention = AttentionScorer(
            hidden, p.attention_dim or max(4, hidden // 2), n_outputs, False, 0.0
        )
        classifier_dim = p.classifier_dim or min(64, hidden)
        self.fc1 = PerClassLinear(n_outputs, hidden, classifier_dim)
        self.fc2 = PerClassLinear(n_outputs, classifier_dim, 1)

    def forward(self, x: Tensor, mask: Tensor, target: Tensor | None = None) -> HeadOutput:
        check_inputs(self, x, mask)
        h = self.embed(x)
        attention, pooled = attention_pool(self.attention(h), h, mask)  # B x C x N, B x C x L
        logits = self.fc2(self.fc1(pooled).relu())[..., 0]
        instance_scores = self.fc2(self.fc1.forward_shared(h).relu())[..., 0]  # B x C x N
        return HeadOutput(
            logits=logits,
            attention=attention,
            instance_scores=instance_scores * mask[:, None, :],
            pooled=pooled.flatten(1),
        )
