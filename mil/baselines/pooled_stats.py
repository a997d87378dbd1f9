"""`pooled_stats`: per patient, the mean, SD and 10/50/90 % quantiles of every feature over its cells.

The spreadsheet model of issue #11: on a real 96-patient APL/AML cohort these five numbers per feature and a
logistic regression reached AUC 0.88-0.90 where the attention heads scored 0.71-0.80, so every run fits it.
The quantiles see a rare population that moves a tail (10 % blasts shift the 90th percentile of a blast
feature) without the model having to find single cells.

Cost: one sort per bag along the cells (numpy's vectorised sort on a transposed contiguous copy: ~2.5 ms for
2,000 x 384 against ~38 ms for `np.quantile` on the original layout), then linear interpolation between order
statistics, as `np.quantile`'s default.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mil.baselines import BASELINES
from mil.baselines.base import Baseline, PatientFeatures

QUANTILES = (0.1, 0.5, 0.9)


def pooled_statistics(bag: np.ndarray, quantiles: tuple[float, ...] = QUANTILES) -> np.ndarray:
    """(2 + Q) x D: mean, SD (ddof 0: a one-cell bag has SD 0) and the quantiles of each feature."""
    cells = np.ascontiguousarray(np.asarray(bag, dtype=np.float32).T)  # D x N: the sort runs along rows
    n = cells.shape[1]
    ordered = np.sort(cells, axis=1)
    position = (n - 1) * np.asarray(quantiles)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, n - 1)
    frac = (position - below)[None, :]
    q = ordered[:, below] * (1 - frac) + ordered[:, above] * frac  # D x Q
    mean = cells.mean(axis=1, dtype=np.float64)
    sd = cells.std(axis=1, dtype=np.float64)
    return np.vstack([mean, sd, q.T.astype(np.float64)])


@BASELINES.register("pooled_stats")
class PooledStats(Baseline):
    """Per-patient mean, SD and 10/50/90 % quantiles of each feature -> the kind's regularised linear model."""

    name = "pooled_stats"
    describes = "the pooled statistics"

    def features(self, bags: Iterable[np.ndarray], dim: int) -> PatientFeatures:
        rows = [pooled_statistics(bag).ravel() for bag in bags]
        stats = ("mean", "sd", *(f"q{round(100 * q)}" for q in QUANTILES))
        names = [f"{s}[{j}]" for s in stats for j in range(dim)]
        values = np.stack(rows) if rows else np.zeros((0, len(names)))
        return PatientFeatures(values, names)
