"""Cost of the baselines every `mil train` runs: featurising the bags and the inner-CV fits, per task kind.

    python benchmarks/baselines.py [--patients 300 --instances 2000 --dim 384] [--store] [--json PATH]

Bags: `--instances` standard-normal `--dim`-d cells per patient; a class-specific 5 % of each patient's cells
are shifted by 1.0 along that class's own direction (3 classes; a weak signal, so the AUC shows the baseline
learns). Folds: `mil.cohort.splits.make_splits`, 5-fold, as `mil train` makes them; each fold's baseline
trains on train + validation and picks C by 5-fold inner CV over 13 values (`mil.baselines.cv`).

Printed, each measured in this run:
- featurising (mean, SD, 10/50/90 % quantiles): ours (one numpy sort of a transposed copy per bag) vs the
  obvious `np.quantile` on the N x D bag, interleaved A, B, A, B; with `--store`, also streamed bag by bag from
  a bag store written once under .bench/ (writing not timed);
- the whole baseline CV per kind (binary, 3-class, 2-label, survival), single BLAS thread as `mil train` runs it,
  and the binary CV with the default thread pool (why the baseline pins one thread);
- one penalised Cox fit on a fold's training patients: ours (L-BFGS in numpy) vs lifelines' CoxPHFitter with the
  same penalty (Newton steps on a p x p Hessian).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, Timer, peak_rss_mb, versions, write_json  # noqa: E402

from mil.baselines import create_baseline  # noqa: E402
from mil.baselines.cv import cross_validate  # noqa: E402
from mil.baselines.pooled_stats import QUANTILES  # noqa: E402
from mil.baselines.run import fold_positions  # noqa: E402
from mil.cohort.splits import make_splits  # noqa: E402
from mil.tasks import TaskSpec, create_task  # noqa: E402

KINDS = {
    "binary": TaskSpec("classification", "label", ["0", "1"]),
    "3-class": TaskSpec("classification", "dx", ["a", "b", "c"]),
    "2-label": TaskSpec("multilabel", ["l0", "l1"], ["l0", "l1"]),
    "survival": TaskSpec("survival", ["time", "event"], []),
}


def make_bags(patients: int, instances: int, dim: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = np.arange(patients) % 3
    directions = rng.normal(size=(3, dim)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    bags = []
    for c in classes:
        x = rng.standard_normal((instances, dim), dtype=np.float32)
        x[: instances // 20] += directions[c]
        bags.append(x)
    return bags, classes


def targets(classes: np.ndarray, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    time_ = rng.exponential(np.exp(-1.0 * (classes == 0)))
    return {
        "binary": (classes == 0).astype(np.float32),
        "3-class": classes.astype(np.float32),
        "2-label": np.column_stack([classes == 0, classes == 1]).astype(np.float32),
        "survival": np.column_stack([time_, rng.random(len(classes)) < 0.7]).astype(np.float32),
    }


def naive_features(bags: list[np.ndarray]) -> np.ndarray:
    rows = []
    for bag in bags:
        q = np.quantile(bag, QUANTILES, axis=0)
        rows.append(np.concatenate([bag.mean(axis=0), bag.std(axis=0), q.ravel()]))
    return np.stack(rows)


def time_featurisers(bags: list[np.ndarray], dim: int) -> tuple[np.ndarray, dict[str, list[float]]]:
    baseline = create_baseline("pooled_stats")
    times: dict[str, list[float]] = {"ours": [], "np.quantile": []}
    for _ in range(2):  # interleaved: A, B, A, B
        with Timer() as t:
            ours = baseline.features(iter(bags), dim).values
        times["ours"].append(t.seconds)
        with Timer() as t:
            naive = naive_features(bags)
        times["np.quantile"].append(t.seconds)
    assert np.allclose(np.sort(ours, axis=1), np.sort(naive, axis=1), atol=1e-4)  # same numbers, other order
    return ours, times


def time_store(bags: list[np.ndarray], dim: int, features: np.ndarray) -> float:
    from features.bagstore import Bag, BagMeta, BagStore, EncoderIdentity
    from mil.baselines.base import bags_from_store

    encoder = EncoderIdentity(name="bench", weights_sha256="0" * 64, dim=dim, unit="cells")
    path = BENCH_DIR / f"baselines-{len(bags)}x{len(bags[0])}x{dim}.zarr"
    store = BagStore(path, "a", encoder)
    for i, bag in enumerate(bags):
        if not store.has(f"P{i:03d}"):
            meta = BagMeta(f"P{i:03d}", f"P{i:03d}", len(bag), encoder, "bench", "slide", mpp=0.25, crop_um=24.0,
                           crop_px=96)  # fmt: skip
            store.write(Bag(bag, coords=np.zeros((len(bag), 2), np.int64)), meta)
    patients = [f"P{i:03d}" for i in range(len(bags))]
    with Timer() as t:
        streamed = create_baseline("pooled_stats").features(
            bags_from_store(store, patients, {p: [p] for p in patients}), dim
        )
    assert np.allclose(streamed.values, features)
    return t.seconds


def time_cv(
    features: np.ndarray, y: dict[str, np.ndarray], folds
) -> dict[str, tuple[float, float, float, list]]:
    out = {}
    for kind, spec in KINDS.items():
        task = create_task(spec)
        with Timer() as t:
            result = cross_validate(features, y[kind], task, folds, seed=0)
        out[kind] = (
            t.seconds,
            t.cpu_seconds,
            task.metric(y[kind], result.outputs),
            [f.c for f in result.folds],
        )
    return out


def time_threaded_cv(features: np.ndarray, y: np.ndarray, folds) -> float:
    task = create_task(KINDS["binary"])
    with Timer() as t:
        cross_validate(features, y, task, folds, seed=0, blas_threads=None)  # the default thread pool
    return t.seconds


def time_cox(
    features: np.ndarray, y: np.ndarray, train: np.ndarray, c: float = 0.01
) -> tuple[float, float, float]:
    import pandas as pd
    from lifelines import CoxPHFitter

    from mil.baselines.linear import RidgeCox

    x = features[train]
    with Timer() as t:
        ours = RidgeCox(c).fit(x, y[train])
    ours_s = t.seconds
    z = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1)
    frame = pd.DataFrame(z, columns=[f"f{j}" for j in range(z.shape[1])]).assign(
        time=y[train, 0], event=y[train, 1]
    )
    # ours: C * NLL + |b|^2 / 2 = n C (NLL / n + |b|^2 / (2 n C)); lifelines: NLL / n + penalizer |b|^2 / 2
    with Timer() as t:
        theirs = CoxPHFitter(penalizer=1 / (len(train) * c)).fit(frame, "time", "event")
    gap = float(np.max(np.abs(theirs.params_.to_numpy() - ours.beta)))
    return ours_s, t.seconds, gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument(
        "--store", action="store_true", help="also time featurising streamed from a bag store"
    )
    parser.add_argument("--no-lifelines", action="store_true", help="skip the lifelines Cox fit (slow)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"load average at the start: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    bags, classes = make_bags(args.patients, args.instances, args.dim)
    print(
        f"{args.patients} patients x {args.instances} cells x {args.dim}-d ({sum(b.nbytes for b in bags) / 1e9:.2f} GB)"
    )
    features, feat_times = time_featurisers(bags, args.dim)
    ours, naive = min(feat_times["ours"]), min(feat_times["np.quantile"])
    print(
        f"featurise   ours {ours:6.2f} s   np.quantile {naive:6.2f} s   ratio {naive / ours:.1f}x  (best of 2, interleaved)"
    )
    record: dict = {"featurise_s": feat_times}
    if args.store:
        record["featurise_store_s"] = time_store(bags, args.dim, features)
        print(f"featurise   streamed from the store {record['featurise_store_s']:6.2f} s (memory: one bag)")
    y = targets(classes)
    patients = [f"P{i:03d}" for i in range(args.patients)]
    split = make_splits(patients, classes, 5, seed=0)
    folds = fold_positions(split, patients)
    record["cv"] = time_cv(features, y, folds)
    for kind, (seconds, cpu, metric, cs) in record["cv"].items():
        chosen = ", ".join(f"{c:.0e}" for c in cs)
        print(
            f"CV          {kind:<9} {seconds:6.2f} s ({cpu:6.2f} s CPU)   out-of-fold headline metric {metric:.3f}   C {chosen}"
        )
    record["cv_threaded_binary_s"] = time_threaded_cv(features, y["binary"], folds)
    print(f"CV          binary, default BLAS threads {record['cv_threaded_binary_s']:6.2f} s "
          f"({record['cv_threaded_binary_s'] / record['cv']['binary'][0]:.2f}x the single-thread time)")  # fmt: skip
    if not args.no_lifelines:
        ours_s, theirs_s, gap = time_cox(features, y["survival"], folds[0][1])
        record["cox_fit_s"] = {"ours": ours_s, "lifelines": theirs_s, "max_coef_gap": gap}
        print(f"Cox fit     ours {ours_s:7.3f} s   lifelines {theirs_s:7.3f} s   ratio {theirs_s / ours_s:.0f}x   "
              f"max |coef difference| {gap:.2g}")  # fmt: skip
    record.update(peak_rss_mb=peak_rss_mb(), seconds=time.perf_counter() - started, args=vars(args))
    print(f"peak RSS {record['peak_rss_mb']:.0f} MB, {record['seconds']:.0f} s in all; "
          f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")  # fmt: skip
    write_json(args.json, {**record, "versions": versions()})


if __name__ == "__main__":
    main()
