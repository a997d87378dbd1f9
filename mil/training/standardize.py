"""Per-fold feature standardisation: z-score every instance with statistics of the fold's training cells.

Why: encoders do not emit unit-scale features. `cytomorph` mixes areas, ratios and counts (per-feature std
from 0.01 to 2.5); foundation-model embeddings have a few dominant dimensions. Without standardisation an
attention head's tanh/sigmoid gates saturate or barely move and training stalls (a 30-patient demo stayed
at chance). The statistics come from the training patients of each fold only (never validation or test:
that would leak), are stored as buffers in the fold's checkpoint, and are applied inside `forward`, so
prediction, heatmaps and attribution all see exactly what training saw.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mil.heads.base import HeadOutput, HeadWrapper  # noqa: F401 - HeadWrapper: re-exported

MIN_STD = 1e-6  # a constant feature is centred and left unscaled instead of divided by ~0
# z-scores are clipped to +-Z_CLIP. Why: a sparse feature (a rare cell type's indicator, a rare granule count)
# has a tiny std, so its few non-zero cells get z ~ 20 and saturate the attention's tanh/sigmoid; on a tiny
# one-hot cohort unclipped z-scores left abmil at chance (AUC 0.48) where clipping at 5 gave 1.0.
Z_CLIP = 5.0


class StandardizedHead(HeadWrapper):
    """A MIL head behind a fixed, clipped z-score of its inputs; padding stays exactly zero."""

    def __init__(self, head: nn.Module, mean: Tensor, std: Tensor):
        super().__init__(head)
        self.register_buffer("feature_mean", mean.detach().float().clone())
        self.register_buffer("feature_std", std.detach().float().clamp_min(MIN_STD).clone())

    @property
    def standardized(self) -> bool:
        return True

    def forward(self, x: Tensor, mask: Tensor, target: Tensor | None = None) -> HeadOutput:
        z = ((x - self.feature_mean) / self.feature_std).clamp(-Z_CLIP, Z_CLIP)
        return self.head(z * mask[..., None], mask, target=target)


def training_statistics(
    features: Tensor, offsets: Tensor, index: Tensor, chunk: int = 1 << 18
) -> tuple[Tensor, Tensor]:
    """Mean and std (D each) over every instance of the bags `index` of a flat `sum(N) x D` tensor.

    Accumulates in float64 chunk by chunk, so a 3 GB cohort needs no second copy."""
    total = torch.zeros(features.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for b in torch.as_tensor(index, dtype=torch.long).tolist():
        start, stop = int(offsets[b]), int(offsets[b + 1])
        for s in range(start, stop, chunk):
            part = features[s : min(stop, s + chunk)].to("cpu", torch.float64)
            total += part.sum(0)
            squares += (part * part).sum(0)
            count += len(part)
    mean = total / max(count, 1)
    var = (squares / max(count, 1) - mean * mean).clamp_min(0)
    return mean.float(), var.sqrt().float()
