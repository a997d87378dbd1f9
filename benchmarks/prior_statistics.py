"""The pooled-statistics prior's bag statistics: computed once per bag vs at every forward pass.

    python benchmarks/prior_statistics.py [--patients 120 --instances 1500 --dim 384] [--epochs 2] [--reps 2]
                                          [--json PATH]

Why: at 300 patients x 1,500 cells x 384-d the default recipe (cross-fitting, 5 members, the prior) spent
about a third of its training time and 60% of `mil predict`'s sorting every batch to recompute each bag's
mean / SD / quantiles, which never change for a whole bag (a scale check of #11's recipe). Now
`mil.training.prior.add_statistics` computes them once per bag and whole-bag batches hand them to the prior.

One outer fold of the default recipe (`TrainConfig()`: cross-fitting over 5 inner parts, the prior,
temperature calibration off to time training alone) is trained on the same in-memory bags with the cache
("cached") and with it switched off ("per-batch", the code before), in ABBA order, `--reps` times each (these
CPUs swing 2-3x minute to minute, so A and B are interleaved); then every fitted member scores every bag
(`mil.training.fit.infer`, what `mil predict` runs per model). Printed: seconds per side (mean over reps),
the ratio per-batch / cached, and the largest difference between the two sides' held-out logits (float32
rounding of the padded sums; the quantiles are exact).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bagset_from_list, mean_std, peak_rss_mb, versions, write_json  # noqa: E402

from mil.config import TrainConfig  # noqa: E402
from mil.tasks import TaskSpec, create_task  # noqa: E402
from mil.training import prior, recipe  # noqa: E402
from mil.training.fit import FitSetup, infer  # noqa: E402
from mil.training.recipe import FoldParts, train_fold  # noqa: E402

BINARY = TaskSpec("classification", "y", ["0", "1"])


def make_bags(patients: int, instances: int, dim: int, seed: int):
    """Positive bags carry 5% witness instances shifted along one direction (a weak, rare-cell signal)."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim).astype(np.float32)
    direction /= np.linalg.norm(direction)
    y = np.arange(patients) % 2
    bags = []
    for label in y:
        n = int(rng.integers(instances // 2, instances + 1))
        x = rng.normal(size=(n, dim)).astype(np.float32)
        if label:
            x[: max(1, n // 20)] += 1.5 * direction
        bags.append(x)
    return bagset_from_list(bags, y)


def run_side(cache: bool, args, parts: FoldParts) -> dict:
    data = make_bags(args.patients, args.instances, args.dim, args.seed)  # fresh: no statistics carried over
    recipe.add_statistics = prior.add_statistics if cache else (lambda bags: None)
    config = TrainConfig(epochs=args.epochs, patience=args.epochs, calibration="none", device="cpu")
    task = create_task(BINARY)
    started = time.perf_counter()
    fitted = train_fold(task, data, parts, config, FitSetup(torch.device("cpu"), 0)).chosen
    trained = time.perf_counter() - started
    if not cache:
        data.statistics = None
    started = time.perf_counter()
    everyone = np.arange(len(data.patients))
    logits = torch.cat([infer(m, data, everyone, torch.device("cpu"), 1 << 20) for m in fitted.models])
    return {"train_s": trained, "predict_s": time.perf_counter() - started, "logits": logits,
            "members": len(fitted.models), "cached": data.statistics is not None}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=120)
    ap.add_argument("--instances", type=int, default=1500)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    n_test = args.patients // 5
    train = np.arange(n_test, args.patients)
    inner = [train[k::5] for k in range(5)]
    parts = FoldParts(train, np.arange(0, 0), np.arange(0, n_test), inner)
    sides: dict[str, list[dict]] = {"per-batch": [], "cached": []}
    for rep in range(args.reps):
        for name in ("per-batch", "cached")[:: 1 if rep % 2 == 0 else -1]:  # ABBA: neither side always first
            sides[name].append(run_side(name == "cached", args, parts))
            print(
                f"  {name}: train {sides[name][-1]['train_s']:.1f} s, predict {sides[name][-1]['predict_s']:.1f} s"
            )
    assert all(r["cached"] for r in sides["cached"]) and not any(r["cached"] for r in sides["per-batch"])
    diff = float((sides["cached"][0]["logits"] - sides["per-batch"][0]["logits"]).abs().max())
    record = {"args": vars(args) | {"json": str(args.json) if args.json else None}, "versions": versions()}
    print(f"{args.patients} patients x {args.instances // 2}-{args.instances} instances x {args.dim}-d, "
          f"{sides['cached'][0]['members']} members, {args.epochs} epochs, {args.reps} reps interleaved")  # fmt: skip
    for step in ("train_s", "predict_s"):
        slow = mean_std([r[step] for r in sides["per-batch"]])
        fast = mean_std([r[step] for r in sides["cached"]])
        ratio = slow[0] / fast[0]
        record[step] = {"per_batch": slow, "cached": fast, "ratio": ratio}
        print(f"{step[:-2]:>8}: per-batch {slow[0]:.1f} ± {slow[1]:.1f} s, cached {fast[0]:.1f} ± {fast[1]:.1f} s, "
              f"per-batch / cached = {ratio:.2f}x")  # fmt: skip
    record["max_logit_difference"] = diff
    record["peak_rss_mb"] = peak_rss_mb()
    print(
        f"largest held-out logit difference, cached vs per-batch: {diff:.2e}; peak RSS {peak_rss_mb():.0f} MB"
    )
    write_json(args.json, record)


if __name__ == "__main__":
    main()
