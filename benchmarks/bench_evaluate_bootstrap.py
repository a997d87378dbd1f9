"""Vectorised bootstrap vs the textbook loop, measured in one run on one machine.

    python benchmarks/bench_evaluate_bootstrap.py [--patients 500] [--draws 1000]

AUC: `mil.evaluate` (multinomial weights, one sort, cumulative sums) vs sklearn's roc_auc_score on each
resampled cohort. c-index: weights through pairwise matrix products vs lifelines' concordance_index per draw
(timed over a subset of draws and scaled, since the loop is the slow side). Both sides use the same
resampling distribution; the numbers printed next to the times show the CIs agree.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from lifelines.utils import concordance_index
from sklearn.metrics import roc_auc_score

from mil.evaluate.bootstrap import bootstrap_ci
from mil.evaluate.classification import auc_weighted
from mil.evaluate.survival import concordance_weighted


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--loop-draws", type=int, default=200, help="draws timed for the slow loops (scaled)")
    args = parser.parse_args()
    n, b = args.patients, args.draws
    rng = np.random.default_rng(0)
    positive = rng.random(n) < 0.4
    score = rng.random(n) + 0.5 * positive

    fast, t_fast = timed(lambda: bootstrap_ci(auc_weighted, positive, score, n=b, rng=1, strata=positive))

    def sklearn_loop():
        r = np.random.default_rng(2)
        pos_idx, neg_idx = np.flatnonzero(positive), np.flatnonzero(~positive)
        vals = []
        for _ in range(b):
            rows = np.concatenate([r.choice(pos_idx, len(pos_idx)), r.choice(neg_idx, len(neg_idx))])
            vals.append(roc_auc_score(positive[rows], score[rows]))
        return np.percentile(vals, [2.5, 97.5])

    slow, t_slow = timed(sklearn_loop)
    print(f"AUC CI, {n} patients, {b} draws")
    print(f"  mil.evaluate (vectorised): {t_fast:.3f} s  CI {fast.low:.3f}-{fast.high:.3f}")
    print(f"  sklearn in a loop:         {t_slow:.3f} s  CI {slow[0]:.3f}-{slow[1]:.3f}")
    print(f"  ratio loop / vectorised:   {t_slow / t_fast:.0f}x")

    time_ = rng.exponential(10, n)
    event = (rng.random(n) < 0.7).astype(int)
    risk = -np.log(time_) + rng.normal(size=n)
    cfast, tc_fast = timed(lambda: bootstrap_ci(concordance_weighted, time_, event, risk, n=b, rng=3))

    def lifelines_loop():
        r = np.random.default_rng(4)
        vals = []
        for _ in range(args.loop_draws):
            rows = r.integers(0, n, n)
            vals.append(concordance_index(time_[rows], -risk[rows], event[rows]))
        return np.percentile(vals, [2.5, 97.5])

    cslow, tc_loop = timed(lifelines_loop)
    tc_slow = tc_loop * b / args.loop_draws
    print(f"c-index CI, {n} patients, {b} draws")
    print(f"  mil.evaluate (vectorised): {tc_fast:.3f} s  CI {cfast.low:.3f}-{cfast.high:.3f}")
    print(
        f"  lifelines in a loop:       {tc_slow:.3f} s  (timed {args.loop_draws} draws, scaled) CI {cslow[0]:.3f}-{cslow[1]:.3f}"
    )
    print(f"  ratio loop / vectorised:   {tc_slow / tc_fast:.0f}x")


if __name__ == "__main__":
    main()
