"""`--model auto`: the fixed grid of heads and recipes that nested cross-validation chooses from.

Each outer fold fits every candidate with cross-fitting on its training patients only and keeps the candidate
whose members score best on their inner held-out patients (the task's main metric, ties broken by the lower
held-out loss). The outer test patients are predicted by the chosen candidate only, so the pooled out-of-fold
metric of an auto run is an honest estimate of "choose, then train"; every candidate's outer predictions are
kept too (RUN/candidates/<name>/predictions.csv) and shown beside it, and the best of those is an optimistic
figure (chosen after seeing the test folds), named as such.

The grid is small and fixed on purpose: a wide search on 60-300 patients overfits the inner folds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Candidate:
    name: str
    head: str
    model_params: dict[str, Any] = field(default_factory=dict)


AUTO_GRID: tuple[Candidate, ...] = (
    Candidate("abmil", "abmil"),  # the default head (on the pooled-statistics prior, as every candidate)
    Candidate("gated_abmil", "gated_abmil"),
    Candidate("abmil_pool_stats", "abmil", {"pool_stats": True}),  # + mean/SD of the bag in the head itself
    Candidate("mean_pool", "mean_pool"),
)


def better(metric: float, loss: float, best: tuple[float, float] | None) -> bool:
    """Whether (metric, loss) beats the best so far: higher metric, then lower loss; NaN metrics lose."""
    if best is None:
        return True
    m = -math.inf if math.isnan(metric) else metric
    b = -math.inf if math.isnan(best[0]) else best[0]
    return m > b + 1e-12 or (abs(m - b) <= 1e-12 and loss < best[1])
