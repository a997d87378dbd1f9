"""Clinical covariates beside the bag: ONE wrapper that fuses them into any head's prediction.

    e      = [c, ReLU(W_e c)]                        a small covariate embedding (c: the standardised covariates)
    logits = W_head pooled + b_head  +  W_f e + b_f  a linear layer on the concatenation [pooled ; e]

The fused prediction is a linear classifier / Cox layer on the concatenation of the head's pooled bag
embedding (`HeadOutput.pooled`) and the covariate embedding, whose pooled block is the head's own last layer
(exactly so for every head whose last layer is linear in `pooled`; dsmil adds its max stream). Written as the
head's logits plus a linear term in e, the image part keeps its meaning: attention, instance scores and the
pooled embedding are the head's, unchanged in form, and an explanation of the smear reads them as it does
without covariates. `W_f` and `b_f` start at zero, so the wrapper starts as exactly the head it wraps;
`start_from_linear` sets the block on the raw covariates to a fitted linear model's (the single model starts
from the fold's image-only head plus its covariates-only model, `mil.training.fusion.fuse`, and training adds
the rest); `start_stacked` also weighs the head's logits (logits @ image_map), which is how cross-fitted members
are fused without training (`mil.training.fusion.stack`).

`join_pooled=True` gives the fusion layer a second, free block on `pooled` (image x covariate interactions
through the shared layer). Measured on benchmarks/covariates.py it overfitted: on the cohort whose covariates
carry nothing, fused AUC 0.659 ± 0.065 vs 0.677 ± 0.049 image only with it, 0.676 ± 0.050 without, so the
default is off.

The wrapper knows nothing of files or columns: it takes a B x K float tensor (`mil.cohort.covariates` builds it
per fold) and is used for every head alike. `forward(..., covariates=None)` returns the head's output as it is
(the image part), which is what the explainers show; the trainer and `mil predict` always pass covariates.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from mil.heads.base import HeadOutput, HeadWrapper

# A ridge penalty on the fusion layer's weights (an aux loss, per bag as the task loss is), as the
# covariates-only model has one: an uninformative covariate stays near zero weight.
FUSION_L2 = 0.05
JOIN_POOLED = False  # see the module docstring


class FusedHead(HeadWrapper):
    """`head` (a MIL head, possibly behind `StandardizedHead`) with `n_covariates` patient-level numbers."""

    def __init__(
        self,
        head: nn.Module,
        n_covariates: int,
        embed_dim: int | None = None,
        dropout: float = 0.1,
        l2: float = FUSION_L2,
        join_pooled: bool = JOIN_POOLED,
    ):
        super().__init__(head)
        if n_covariates < 1:
            raise ValueError("FusedHead needs at least one covariate")
        self.n_covariates = int(n_covariates)
        self.l2 = float(l2)
        self.join_pooled = bool(join_pooled)
        width = embed_dim or max(4, min(16, 2 * self.n_covariates))
        self.embed = nn.Sequential(nn.Linear(self.n_covariates, width), nn.ReLU(), nn.Dropout(dropout))
        self.pooled_dim = self._pooled_dim() if self.join_pooled else 0
        self.fusion = nn.Linear(self.pooled_dim + self.n_covariates + width, self.n_outputs)
        with torch.no_grad():  # the wrapper starts as the head alone: covariates enter as training finds them
            self.fusion.weight.zero_()
            self.fusion.bias.zero_()
        # The head's logits enter as logits @ image_map: the identity, except where a stacked linear model
        # weighs them (`start_stacked`). A buffer, not trained: the fine-tuned fusion keeps the identity.
        self.register_buffer("image_map", torch.eye(self.n_outputs))

    def start_stacked(self, image_map: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> None:
        """Set the wrapper to a linear model stacked on the head's logits z and the raw covariates c:
        logits = z @ image_map + c @ weight.T + bias (image_map n_outputs x n_outputs, weight n_outputs x
        n_covariates); the covariate embedding keeps zero weight (`mil.training.fusion.stack`)."""
        image_map = np.asarray(image_map, np.float64)
        if image_map.shape != (self.n_outputs, self.n_outputs):
            raise ValueError(f"image_map must be {self.n_outputs} x {self.n_outputs}, got {image_map.shape}")
        self.start_from_linear(np.zeros(self.n_covariates), np.ones(self.n_covariates), weight, bias)
        with torch.no_grad():
            self.image_map.copy_(torch.as_tensor(image_map, dtype=self.image_map.dtype))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before `image_map` existed were all fine-tuned fusions: the identity.
        state_dict.setdefault(prefix + "image_map", torch.eye(self.n_outputs))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def start_from_linear(
        self, mean: np.ndarray, scale: np.ndarray, weight: np.ndarray, bias: np.ndarray
    ) -> None:
        """Set the fusion layer's block on the raw covariates to a linear model's logits on them,
        ((c - mean) / scale) @ weight.T + bias (K x n_covariates, K), so the wrapper starts as the head plus
        that model: the sum of two log-odds (log hazards) fitted apart, each channel's evidence added."""
        weight = np.asarray(weight, np.float64) / np.asarray(scale, np.float64)
        if weight.shape != (self.n_outputs, self.n_covariates):
            raise ValueError(
                f"a linear start must be {self.n_outputs} x {self.n_covariates}, got {weight.shape}"
            )
        bias = np.asarray(bias, np.float64) - weight @ np.asarray(mean, np.float64)
        block = slice(self.pooled_dim, self.pooled_dim + self.n_covariates)
        with torch.no_grad():
            self.fusion.weight[:, block] = torch.as_tensor(weight, dtype=self.fusion.weight.dtype)
            self.fusion.bias.copy_(torch.as_tensor(bias, dtype=self.fusion.bias.dtype))

    def _pooled_dim(self) -> int:
        """The width of the head's `pooled`, read from one tiny forward pass (heads do not declare it)."""
        was_training = self.head.training
        self.head.eval()
        with torch.no_grad():
            x = torch.zeros(1, 2, self.in_dim)
            out = self.head(x, torch.ones(1, 2, dtype=torch.bool))
        self.head.train(was_training)
        if out.pooled is None:
            raise ValueError(f"{type(self.head).__name__} returns no pooled embedding (HeadOutput.pooled)")
        return int(out.pooled.shape[1])

    def forward(
        self,
        x: Tensor,
        mask: Tensor,
        target: Tensor | None = None,
        covariates: Tensor | None = None,
        **given: Tensor,
    ) -> HeadOutput:
        out = self.head(x, mask, target=target, **given)  # given: a prior's statistics (`fit.forward`)
        if covariates is None:
            return out  # the image part: what explanations show (see the module docstring)
        c = covariates.to(out.logits.dtype)
        if c.shape != (x.shape[0], self.n_covariates):
            raise ValueError(f"covariates must be B x {self.n_covariates}, got {tuple(c.shape)}")
        parts = [out.pooled] if self.join_pooled else []
        joined = torch.cat([*parts, c, self.embed(c)], dim=1)
        out.logits = out.logits @ self.image_map.to(out.logits.dtype) + self.fusion(joined)
        if self.training and self.l2 > 0:  # a ridge on the fusion layer, as the covariates-only model has
            out.aux_losses["fusion_l2"] = self.l2 * self.fusion.weight.square().sum()
        return out
