"""DSMIL (Li, Li & Eliceiri, CVPR 2021, arXiv:2011.08939): dual-stream MIL with a critical instance."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from mil.heads import HEADS
from mil.heads.base import HeadOutput, HeadParams, MILHead, check_inputs
from mil.heads.blocks import fill_padding, masked_softmax


class DSMILParams(HeadParams):
    hidden_dim: int | None = Field(
        None, ge=1, description="Width of the query projection; default min(128, in_dim)."
    )
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the value stream.")
    nonlinear_q: bool = Field(
        True, description="Query = Linear-ReLU-Linear-Tanh (DSMIL's default) or one Linear."
    )
    passing_v: bool = Field(
        False, description="Values = Linear-ReLU of the features instead of the features."
    )


@HEADS.register("dsmil")
class DSMIL(MILHead):
    """DSMIL (Li et al. 2021): max-pooling stream + attention to each class's critical instance; K = C.

        s_{c,i} = w_c^T x_i + b_c                     instance classifier (stream 1)
        m_c     = argmax_i s_{c,i}                    critical instance of class c
        a_{c,i} = softmax_i(<q_i, q_{m_c}> / sqrt(d)) distance-based attention, q_i = Q(x_i)
        b_c     = sum_i a_{c,i} v_i;   bag_c = W [b_1..b_C] (DSMIL's Conv1d over the class rows)
        logits  = (bag + max_i s_{., i}) / 2

    The two streams are fused as DSMIL does at test time; the task loss on the fused logits trains both (the
    paper sums two losses instead). `attention` is the bag stream's a (B x C x N); `instance_scores` is the
    instance classifier s (B x C x N). Permutation invariant.
    """

    Params = DSMILParams
    attention_kind = "per_class_attention"

    def __init__(self, in_dim: int, n_outputs: int, **params):
        super().__init__(in_dim, n_outputs, **params)
        p = self.params
        q_dim = p.hidden_dim or max(8, min(128, in_dim))
        self.instance_classifier = nn.Linear(in_dim, n_outputs)
        self.q = (
            nn.Sequential(nn.Linear(in_dim, q_dim), nn.ReLU(), nn.Linear(q_dim, q_dim), nn.Tanh())
            if p.nonlinear_q
            else nn.Linear(in_dim, q_dim)
        )
        self.v = nn.Sequential(
            nn.Dropout(p.dropout), *([nn.Linear(in_dim, in_dim), nn.ReLU()] if p.passing_v else [])
        )
        self.bag_classifier = nn.Linear(n_outputs * in_dim, n_outputs)

    def forward(self, x: Tensor, mask: Tensor, target: Tensor | None = None) -> HeadOutput:
        check_inputs(self, x, mask)
        b = x.shape[0]
        scores = fill_padding(self.instance_classifier(x).transpose(1, 2), mask[:, None, :])  # B x C x N
        max_logits, critical = scores.max(-1)  # B x C
        max_logits = torch.where(mask.any(1, keepdim=True), max_logits, torch.zeros_like(max_logits))
        q = self.q(x)  # B x N x d
        q_critical = q[torch.arange(b, device=x.device)[:, None], critical]  # B x C x d
        attention = masked_softmax(q_critical @ q.transpose(1, 2) / q.shape[-1] ** 0.5, mask[:, None, :])
        bag = (attention @ self.v(x)).flatten(1)
        bag_logits = self.bag_classifier(bag)
        return HeadOutput(
            logits=0.5 * (bag_logits + max_logits),
            attention=attention,
            instance_scores=scores.masked_fill(~mask[:, None, :], 0.0),
            pooled=torch.cat([bag, max_logits], dim=1),  # both streams the logits read
        )
