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


def grid(shared: dict[str, Any] | None = None) -> tuple[Candidate, ...]:
    """AUTO_GRID with the run's `model_params` applied to every candidate (e.g. the configs' `dropout: 0.25`):
    they are part of the run's recipe, like its lr or epochs. A key the grid itself varies (`pool_stats`) or
    that some candidate head does not take is refused, one line naming both, since it could not apply to all.
    """
    from features.core.errors import ConfigError
    from mil.heads import head_params_model, validate_head_params

    shared = dict(shared or {})
    varied = sorted({key for c in AUTO_GRID for key in c.model_params} & set(shared))
    if varied:
        owners = ", ".join(c.name for c in AUTO_GRID if varied[0] in c.model_params)
        raise ConfigError(
            f"model_params.{varied[0]}: head auto chooses it (candidate {owners}); leave it out of "
            "model_params, or name one head instead of auto"
        )
    for c in AUTO_GRID:
        accepted = head_params_model(c.head).model_fields
        for key in shared:
            if key not in accepted:
                raise ConfigError(
                    f"model_params.{key}: with head auto the params apply to every candidate, and "
                    f"{c.head} (candidate {c.name}) has no {key!r} (its params: {', '.join(accepted)}); "
                    "leave it out, or name one head instead of auto"
                )
    merged = tuple(Candidate(c.name, c.head, {**shared, **c.model_params}) for c in AUTO_GRID)
    for c in merged:
        validate_head_params(c.head, c.model_params)  # values too: `dropout: 2` fails here, not mid-run
    return merged


def better(metric: float, loss: float, best: tuple[float, float] | None) -> bool:
    """Whether (metric, loss) beats the best so far: higher metric, then lower loss; NaN metrics lose."""
    if best is None:
        return True
    m = -math.inf if math.isnan(metric) else metric
    b = -math.inf if math.isnan(best[0]) else best[0]
    return m > b + 1e-12 or (abs(m - b) <= 1e-12 and loss < best[1])
