"""The contract every MIL head keeps: padded batches in, a typed `HeadOutput` out.

Mask convention (the only one in `mil`): `mask` is a B x N bool tensor, **True = real instance**, False =
padding added to stack bags of different sizes into one batch. Padding may sit anywhere in a row (usually at the
end). A head must give a bag the same logits and attention whether it runs alone or padded inside a batch, keep
attention exactly 0 on padding, and return finite numbers for a row that is all padding (its logits are
meaningless but must not poison a batch with NaN). STAMP uses the opposite convention (True = padding); do not
mix them.

Heads never compute the task loss: the task owns it (CE with class weights, BCE, Cox) and the trainer adds the
already weighted `aux_losses` a head returns (CLAM's instance clustering loss). `target` reaches a head only
in training and only for such auxiliary losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn


@dataclass
class HeadOutput:
    """What a head returns for a batch of B bags padded to N instances, with C = n_outputs.

    logits: B x C (survival: C = 1, a risk score).
    attention: B x K x N, K = 1 or one row per class; sums to 1 over the real instances of a bag and is exactly
        0 on padding (an all-padding row is all 0). None for heads without attention (mean/max pooling), where
        the explainer uses gradient x input instead.
    instance_scores: B x K x N per-instance class logits where the head has them (each head's docstring says
        what they mean); 0 on padding.
    aux_losses: named scalar losses, already weighted, that the trainer adds to the task loss.
    pooled: B x E, the bag embedding the head's last bag-level layer reads (abmil: the attention-weighted
        embedding; transmil: the normalised CLS token; max_pool: the max-pooled instance scores). What
        `FusedHead` concatenates with the covariate embedding; like logits, the same for a bag alone or padded.
    """

    logits: Tensor
    attention: Tensor | None
    instance_scores: Tensor | None = None
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    pooled: Tensor | None = None


class HeadParams(BaseModel):
    """Hyperparameters shared by the heads; each head extends this. Unknown keys are errors (a typo in
    `model_params` fails at config load, not after an hour of training)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_dim: int | None = Field(
        None,
        ge=1,
        description="Width of the instance embedding; default min(256, in_dim), so 384-d DinoBloom-S "
        "features get 256 and 64-d cytomorph features keep 64.",
    )
    dropout: float = Field(0.25, ge=0.0, lt=1.0, description="Dropout after the instance embedding.")


class MILHead(nn.Module):
    """Base class: validates its params, records dims, and defines the `forward` signature.

    Subclasses set `Params` (a `HeadParams` subclass) and `attention_kind`:
    "attention" (K = 1), "per_class_attention" (K = C) or "none" (no attention; explainer uses gradients).
    Construct them through `mil.heads.create_head`, which turns bad params into a one-line ConfigError.
    """

    Params: ClassVar[type[HeadParams]] = HeadParams
    attention_kind: ClassVar[str] = "none"
    # False where the order of instances matters (TransMIL's grid); the contract test checks the rest
    permutation_invariant: ClassVar[bool] = True

    def __init__(self, in_dim: int, n_outputs: int, **params: Any):
        super().__init__()
        self.in_dim = int(in_dim)
        self.n_outputs = int(n_outputs)
        self.params = self.Params(**params)

    def hidden_dim(self) -> int:
        """The embedding width: the `hidden_dim` param, or scaled down from in_dim for small features."""
        return self.params.hidden_dim or max(8, min(256, self.in_dim))

    def forward(self, x: Tensor, mask: Tensor, target: Tensor | None = None) -> HeadOutput:
        """x: B x N x D float; mask: B x N bool (True = real); target: B long class indices, training only."""
        raise NotImplementedError


class HeadWrapper(nn.Module):
    """A module around a head (`self.head`: z-score, pooled-statistics prior, calibration, clinical
    covariates) that the trainer and the explainers read as the head itself: its attention kind and dims are
    the wrapped head's."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    @property
    def standardized(self) -> bool:
        """Whether a z-score sits somewhere inside (`StandardizedHead` says True)."""
        return bool(getattr(self.head, "standardized", False))

    @property
    def attention_kind(self) -> str:
        return self.head.attention_kind

    @property
    def n_outputs(self) -> int:
        return self.head.n_outputs

    @property
    def in_dim(self) -> int:
        return self.head.in_dim

    @property
    def takes_statistics(self) -> bool:
        """Whether a `PriorHead` inside accepts its bags' pooled statistics precomputed (`statistics=`)."""
        return bool(getattr(self.head, "takes_statistics", False))


def check_inputs(head: MILHead, x: Tensor, mask: Tensor) -> None:
    """Cheap shape checks so a wrong collate fails here with the shapes, not deep inside a matmul."""
    if x.dim() != 3 or x.shape[-1] != head.in_dim:
        raise ValueError(f"{type(head).__name__}: x must be B x N x {head.in_dim}, got {tuple(x.shape)}")
    if mask.shape != x.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(
            f"{type(head).__name__}: mask must be a bool B x N tensor (True = real instance) matching x "
            f"{tuple(x.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}"
        )
