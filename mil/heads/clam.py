"""CLAM (Lu et al., Nature Biomedical Engineering 2021, arXiv:2004.09666): gated attention MIL with an
instance-level clustering loss, single-branch (`clam_sb`) and multi-branch (`clam_mb`)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mil.heads import HEADS
from mil.heads.base import HeadOutput, HeadParams, MILHead, check_inputs
from mil.heads.blocks import AttentionScorer, PerClassLinear, attention_pool, embedding


class CLAMParams(HeadParams):
    attention_dim: int | None = Field(
        None, ge=1, description="Width of the attention MLP; default hidden_dim // 2."
    )
    gated: bool = Field(True, description="Gated attention (CLAM's default) or plain tanh attention.")
    k_sample: int = Field(8, ge=1, description="Top-k / bottom-k attended instances used as pseudo-labels.")
    inst_loss: Literal["svm", "ce"] = Field(
        "svm", description="Smooth top-1 SVM (CLAM's default) or cross-entropy."
    )
    inst_loss_weight: float = Field(
        0.3,
        ge=0.0,
        description="Weight of aux_losses['instance']; CLAM trains 0.7 * bag + 0.3 * instance loss.",
    )
    subtyping: bool = Field(
        True,
        description="Classes are mutually exclusive subtypes: the top instances of a bag of class y are also "
        "pseudo-negatives for every other class's instance classifier (CLAM's out-of-class term).",
    )


def smooth_top1_svm(logits: Tensor, labels: Tensor, alpha: float = 1.0, tau: float = 1.0) -> Tensor:
    """Smooth top-1 multiclass SVM (Berrada, Zisserman & Kumar, ICLR 2018), CLAM's instance loss, per element:
    tau * log sum_j exp((s_j + alpha [j != y] - s_y) / tau). Implemented here so no `topk` package and no
    `.cuda()` in a constructor are needed."""
    margin = alpha * (1.0 - F.one_hot(labels, logits.shape[-1]).to(logits.dtype))
    return tau * torch.logsumexp((logits + margin - logits.gather(-1, labels[..., None])) / tau, dim=-1)


class _CLAM(MILHead):
    """Shared body; the registered variants below differ only in the number of attention branches."""

    Params = CLAMParams
    attention_kind = "attention"
    multi_branch: ClassVar[bool] = False

    def __init__(self, in_dim: int, n_outputs: int, **params):
        super().__init__(in_dim, n_outputs, **params)
        p, hidden = self.params, self.hidden_dim()
        n_branches = n_outputs if self.multi_branch else 1
        self.embed = embedding(in_dim, hidden, p.dropout)
        self.attention = AttentionScorer(
            hidden, p.attention_dim or max(4, hidden // 2), n_branches, p.gated, p.dropout
        )
        # SB: one linear over the pooled feature; MB: class c scores its own pooled feature with its own linear
        self.classifier = (
            PerClassLinear(n_outputs, hidden, 1) if self.multi_branch else nn.Linear(hidden, n_outputs)
        )
        # one in/out-of-class instance classifier per class; a single output (survival risk) has no classes
        self.instance_classifiers = PerClassLinear(n_outputs, hidden, 2) if n_outputs > 1 else None

    def forward(self, x: Tensor, mask: Tensor, target: Tensor | None = None) -> HeadOutput:
        check_inputs(self, x, mask)
        h = self.embed(x)
        attention, pooled = attention_pool(self.attention(h), h, mask)
        if self.multi_branch:
            logits = self.classifier(pooled)[..., 0]
            instance_scores = self.classifier.forward_shared(h)[..., 0]
        else:
            logits = self.classifier(pooled[:, 0])
            instance_scores = self.classifier(h).transpose(1, 2)
        out = HeadOutput(
            logits=logits,
            attention=attention,
            instance_scores=instance_scores * mask[:, None, :],
            pooled=pooled.flatten(1),
        )
        if self.training and target is not None and self.instance_classifiers is not None:
            loss = self.instance_loss(attention, h, mask, target)
            out.aux_losses["instance"] = self.params.inst_loss_weight * loss
        return out

    def instance_loss(self, attention: Tensor, h: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        """CLAM's instance clustering loss, vectorised over bags and classes.

        For each class c (attention branch c in MB, the single branch in SB) take the k most and k least
        attended real instances, k = min(k_sample, n_real // 2) so the two sets never share an instance and a
        one-instance bag contributes nothing. Bags of class c: top-k -> 1, bottom-k -> 0 for classifier c
        (in-class term); bags of another class, when `subtyping`: top-k -> 0 for classifier c (out-of-class
        term). Each (bag, class) term is a mean over its instances; a bag averages its terms, the batch
        averages its bags (CLAM, batch size 1, divides the summed class terms by the number of classes).
        """
        if target.dim() != 1 or target.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"{type(self).__name__}: the instance loss needs one class index per bag (B int64), got "
                f"{target.dtype} {tuple(target.shape)}; multi-label targets have no CLAM instance loss"
            )
        b, n_classes, n = h.shape[0], self.n_outputs, h.shape[1]
        k_max = min(self.params.k_sample, n // 2)
        if k_max == 0:
            return h.sum() * 0.0
        k_bag = torch.clamp(mask.sum(1) // 2, max=self.params.k_sample)  # B
        valid = torch.arange(k_max, device=h.device)[None, :] < k_bag[:, None]  # B x k
        attention = attention.expand(b, n_classes, n)  # SB: the same branch for every class
        top = attention.masked_fill(~mask[:, None, :], -1.0).topk(k_max, dim=-1).indices  # B x C x k
        bottom = attention.masked_fill(~mask[:, None, :], 2.0).topk(k_max, dim=-1, largest=False).indices
        rows = torch.arange(b, device=h.device)[:, None, None]
        logits_top = self.instance_classifiers(h[rows, top])  # B x C x k x 2
        logits_bottom = self.instance_classifiers(h[rows, bottom])
        is_class = target[:, None] == torch.arange(n_classes, device=h.device)[None, :]  # B x C
        labels_top = is_class[..., None].expand(-1, -1, k_max).long()
        loss_fn = smooth_top1_svm if self.params.inst_loss == "svm" else _cross_entropy
        loss_top = loss_fn(logits_top, labels_top)
        loss_bottom = loss_fn(logits_bottom, torch.zeros_like(labels_top))
        use_top = valid[:, None, :] & (is_class | self.params.subtyping)[..., None]
        use_bottom = valid[:, None, :] & is_class[..., None]
        n_terms = use_top.sum(-1) + use_bottom.sum(-1)  # B x C
        per_class = ((loss_top * use_top).sum(-1) + (loss_bottom * use_bottom).sum(-1)) / n_terms.clamp_min(1)
        contributes = n_terms > 0
        per_bag = (per_class * contributes).sum(1) / contributes.sum(1).clamp_min(1)
        has_terms = contributes.any(1)
        return (per_bag * has_terms).sum() / has_terms.sum().clamp_min(1)


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none").view(labels.shape)


@HEADS.register("clam_sb")
class CLAMSingleBranch(_CLAM):
    """CLAM single-branch (Lu et al. 2021): gated attention MIL + instance clustering loss (aux 'instance').

        h_i = ReLU(W_e x_i),  a_i = softmax_i(w^T (tanh(V h_i) * sigmoid(U h_i))),  logits = W_c sum_i a_i h_i

    In training with a target, the top-k / bottom-k attended instances become pseudo-positives / negatives for
    per-class instance classifiers (see `instance_loss`). `instance_scores[b, c, i] = W_c h_i + b_c`, whose
    attention-weighted mean is the bag logit. With n_outputs = 1 (survival) there are no classes to cluster:
    no instance loss.
    """

    multi_branch = False


@HEADS.register("clam_mb")
class CLAMMultiBranch(_CLAM):
    """CLAM multi-branch (Lu et al. 2021): one attention branch and pooled feature per class (K = C).

        a_{c,i} = softmax_i(w_c^T (tanh(V h_i) * sigmoid(U h_i))),  logit_c = w'_c^T sum_i a_{c,i} h_i + b_c

    Instance clustering as in `clam_sb`, with class c's pseudo-labels taken from branch c.
    `instance_scores[b, c, i] = w'_c^T h_i + b_c` (branch c's logit for instance i alone).
    """

    multi_branch = True
    attention_kind = "per_class_attention"
