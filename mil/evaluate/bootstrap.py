"""The one bootstrap: percentile confidence intervals from resampled patients, seeded, vectorised over draws.

Why weights instead of index arrays: drawing n rows with replacement is the same as giving row i the weight
w_i = how often it was drawn (a multinomial count vector). Every metric here is a function of that multiset,
so a metric written for a weight matrix W (B draws x n rows) evaluates all B draws at once, with no Python
loop over draws: rank-based AUC and balanced accuracy cost O(B*n), the c-index O(B*n^2) in BLAS. Weights of
all ones are the original data, so the point estimate and the draws go through the same code.

Decisions (also in the JSON, via `CI.n_valid`):
- Classification draws are stratified by the true class: each class is resampled within itself, so every draw
  holds every class the data hold (class counts fixed, as in a stratified bootstrap). AUC is defined in every
  draw and no draw is discarded.
- Draws where the metric is undefined (NaN: e.g. a survival draw with no comparable pair, a multilabel draw
  with no positive of some label) are skipped and counted. If more than `1 - min_valid` of the draws were
  skipped, the surviving draws are a biased sample, so low/high are NaN with a reason instead of a number.
- Interval: the 2.5th and 97.5th percentiles of the valid draws (percentile bootstrap, `level=0.95`).
- Randomness only through the generator passed in (or an int seed): the same seed gives identical CIs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# metric(*arrays, weights=W) -> one value per row of W (B x n multinomial counts); NaN where undefined.
WeightedMetric = Callable[..., np.ndarray]

_MAX_CHUNK_CELLS = 2_000_000  # draws are evaluated in chunks of at most this many weight cells (16 MB)


@dataclass(frozen=True)
class CI:
    """A point estimate with its bootstrap interval. NaN fields come with a `reason`."""

    estimate: float
    low: float
    high: float
    n_boot: int = 0  # draws requested
    n_valid: int = 0  # draws in which the metric was defined (the others were skipped)
    reason: str | None = None

    @classmethod
    def undefined(cls, reason: str, n_boot: int = 0) -> CI:
        return cls(math.nan, math.nan, math.nan, n_boot, 0, reason)

    def to_dict(self) -> dict:
        """JSON-ready: NaN becomes None, and a None always comes with `reason`."""
        out: dict = {k: _num(getattr(self, k)) for k in ("estimate", "low", "high")}
        out.update(n_boot=self.n_boot, n_valid=self.n_valid)
        if self.reason or any(v is None for v in out.values()):
            out["reason"] = self.reason or "undefined"
        return out


def resample_weights(
    n_rows: int, n_draws: int, rng: np.random.Generator, strata: np.ndarray | None = None
) -> np.ndarray:
    """B x n multinomial counts: row b says how often each patient was drawn in bootstrap draw b.

    With `strata`, each stratum of size m_k is resampled m_k times within itself.
    """
    weights = np.zeros((n_draws, n_rows))
    groups = [np.arange(n_rows)] if strata is None else _groups(np.asarray(strata))
    for idx in groups:
        m = len(idx)
        weights[:, idx] = rng.multinomial(m, np.full(m, 1.0 / m), size=n_draws)
    return weights


def bootstrap_ci(
    metric: WeightedMetric,
    *arrays: np.ndarray,
    n: int,
    rng: np.random.Generator | int,
    strata: np.ndarray | None = None,
    level: float = 0.95,
    min_valid: float = 0.9,
) -> CI:
    """Estimate `metric` on `arrays` (rows = patients) and its percentile CI over `n` resampled cohorts.

    `metric(*arrays, weights=W)` must return one value per row of W. `strata` (e.g. the true class) makes the
    resampling stratified. `rng` is a Generator or a seed; there is deliberately no unseeded default.
    """
    rng = np.random.default_rng(rng)
    n_rows = len(arrays[0])
    if any(len(a) != n_rows for a in arrays):
        raise ValueError("bootstrap_ci: arrays differ in length")
    if n_rows == 0:
        return CI.undefined("no patients", n)
    estimate = float(np.asarray(metric(*arrays, weights=np.ones((1, n_rows))))[0])
    if math.isnan(estimate):
        return CI.undefined("metric undefined on these data", n)
    if n <= 0:
        return CI(estimate, math.nan, math.nan, 0, 0, "bootstrap disabled (n=0)")
    chunk = max(1, min(n, _MAX_CHUNK_CELLS // n_rows))
    values = np.concatenate(
        [
            np.asarray(
                metric(*arrays, weights=resample_weights(n_rows, min(chunk, n - start), rng, strata)), float
            )
            for start in range(0, n, chunk)
        ]
    )
    valid = values[~np.isnan(values)]
    if len(valid) < max(2, min_valid * n):
        reason = (
            f"only {len(valid)} of {n} bootstrap draws defined the metric (too few events or classes); "
            "interval not reported"
        )
        return CI(estimate, math.nan, math.nan, n, len(valid), reason)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(valid, [tail, 100 - tail])
    return CI(estimate, float(low), float(high), n, len(valid))


def _groups(strata: np.ndarray) -> list[np.ndarray]:
    _, inverse = np.unique(strata, return_inverse=True)
    return [np.flatnonzero(inverse == k) for k in range(inverse.max() + 1)]


def _num(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
