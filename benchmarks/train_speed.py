"""Training speed: 5-fold CV of `mil`'s ABMIL vs torchmil's ABMIL + Trainer on the same synthetic bags and folds.

    python benchmarks/train_speed.py [--bags 1000 --instances 2000 --dim 384] [--epochs 5] [--json PATH]

Each side runs in its own subprocess (so `ru_maxrss` is its own peak memory): it generates the same bags from the
same seed, builds the same folds (`mil.cohort.splits.make_splits`, printed digest), then times the whole CV: per fold,
training, validation after every epoch, best-weight keeping, and test predictions. Data generation is timed
apart and not counted.

Bags: `--instances` standard-normal `--dim`-d instances each; half the bags are positive and carry
`--witnesses` witness instances shifted by `--shift` along one fixed random direction (a weak signal: the bag
mean moves by shift x witnesses / instances), so the AUC says whether a model learnt anything.

Same model, same rule on both sides: embedding Linear(dim, hidden) -> ReLU, tanh attention of width
hidden / 2, linear classifier; Adam (same lr and weight decay), the same batch size, `--epochs` epochs with
early stopping on the validation loss after `--patience` epochs without improvement, best epoch kept; no
dropout (torchmil's Trainer validates in train mode), no class weights, every instance of every bag (sides
`mil-subN` add `mil train`'s training-time bag subsampling, N instances per bag per step, one side per value
of `--sub-instances`). torchmil is used as its docs show: a DataLoader with its `collate_fn`, its `Trainer`,
then the best model predicts the test bags under no_grad. The AUC of each side is the pooled out-of-fold AUC (`mil.tasks.base.binary_auc`).

On the CPU the script also prints an arithmetic floor: the model's matrix products over the CV as each side ran
it (`model_flops`), divided by the best GEMM rate of this machine measured before and after the sides
(`gemm_rate`). torchmil's wall time over the same rule's floor is the most any every-instance implementation
could gain over it here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Timer,
    fit_ours,
    fit_torchmil,
    fold_positions,
    peak_rss_mb,
    require,
    splits_digest,
    torchmil_abmil,
    write_json,
)

from features.core.device import resolve_device  # noqa: E402
from mil.cohort.splits import make_splits  # noqa: E402
from mil.config import TrainConfig  # noqa: E402
from mil.tasks.base import binary_auc  # noqa: E402
from mil.training.data import BagSet  # noqa: E402

# "mil-sub" is `mil train`'s own bag subsampling (TrainConfig.max_instances; its default, 4096, leaves these
# 2000-instance bags whole): side "mil-subN" sees N random instances per bag per training step; validation and
# test always see every instance. "mil-sub" in --sides runs one such side per --sub-instances value.
SIDES = ("mil", "mil-sub", "torchmil")


def sub_instances(side: str) -> int | None:
    """N of a "mil-subN" side, None for the sides that train on every instance."""
    return int(side.removeprefix("mil-sub")) if side.startswith("mil-sub") else None


def expand_sides(sides: str, subs: str) -> list[str]:
    if not all(n.isdigit() and int(n) > 0 for n in subs.split(",") if n):
        raise ValueError(
            f"--sub-instances {subs!r}: give positive whole numbers, comma-separated, e.g. 512,256"
        )
    out: list[str] = []
    for side in (s for s in sides.split(",") if s):
        if side not in SIDES:
            raise ValueError(f"--sides: unknown side {side!r}; use a subset of {','.join(SIDES)}")
        out.extend([f"mil-sub{int(n)}" for n in subs.split(",") if n] if side == "mil-sub" else [side])
    return out


def synthetic_bags(
    n_bags: int, n_instances: int, dim: int, witnesses: int, shift: float, seed: int
) -> BagSet:
    """n_bags x n_instances x dim float32 in one flat tensor, written in place chunk by chunk (peak memory is
    the tensor itself); labels alternate in a seeded shuffle, positives get shifted witness instances."""
    rng = np.random.default_rng(seed)
    flat = torch.empty((n_bags * n_instances, dim), dtype=torch.float32)
    view = flat.numpy()
    step = max(1, (1 << 24) // dim)  # ~64 MB per chunk
    for s in range(0, len(view), step):
        rng.standard_normal(out=view[s : s + step], dtype=np.float32)
    y = rng.permutation(np.arange(n_bags) % 2)
    direction = rng.standard_normal(dim).astype(np.float32)
    direction /= np.linalg.norm(direction)
    for b in np.flatnonzero(y == 1):
        rows = b * n_instances + rng.choice(n_instances, size=witnesses, replace=False)
        view[rows] += shift * direction
    offsets = torch.arange(0, n_bags * n_instances + 1, n_instances, dtype=torch.int64)
    ids = [f"B{i:05d}" for i in range(n_bags)]
    return BagSet(
        ids, flat, offsets, torch.as_tensor(y, dtype=torch.float32), [[(i, n_instances)] for i in ids]
    )


def model_flops(args: argparse.Namespace, folds: list, epochs: list[int], per_bag_train: int) -> float:
    """FLOPs of the model's matrix products over the whole CV as it ran (the arithmetic no implementation can
    skip): per instance, the embedding (dim x hidden) and the attention layer (hidden x hidden / 2) forward;
    training adds both weight gradients and the attention layer's input gradient (the features need none)."""
    d, h = args.dim, args.hidden
    a = h // 2
    forward = 2 * d * h + 2 * h * a
    train = forward + 2 * d * h + 4 * h * a
    total = 0.0
    for (tr, va, te), e in zip(folds, epochs, strict=True):
        total += len(tr) * e * per_bag_train * train + (len(va) * e + len(te)) * args.instances * forward
    return total


def gemm_rate(args: argparse.Namespace, repeats: int = 5) -> float:
    """Best FLOP/s of this machine on the model's largest products (one training batch through the
    embedding, forward and weight gradient), measured now, with the sides' thread count."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = args.batch_size * args.instances
    x, w, g = torch.randn(rows, args.dim), torch.randn(args.dim, args.hidden), torch.randn(rows, args.hidden)
    best = float("inf")
    for _ in range(repeats):
        with Timer() as t:
            x @ w
            x.T @ g
        best = min(best, t.seconds)
    return 2 * 2 * rows * args.dim * args.hidden / best


def cpu_seconds() -> float:
    """User + system CPU time of this process: less sensitive than wall time to other jobs on the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train_config(args: argparse.Namespace) -> TrainConfig:
    sub = sub_instances(args.worker)
    return TrainConfig(
        optimizer="adam",
        lr=args.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience,
        monitor="loss",
        class_weights=False,
        max_instances=sub,
        device=args.device,
    )


def worker(args: argparse.Namespace) -> dict:
    """One side of the comparison, in this process: data, folds, timed CV, AUC, peak memory."""
    if args.worker == "torchmil":
        require("torchmil", "torchmil==1.0.2")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with Timer() as gen:
        bags = synthetic_bags(args.bags, args.instances, args.dim, args.witnesses, args.shift, args.seed)
    y = bags.y.numpy().astype(int)
    splits = make_splits(bags.patients, y, args.folds, seed=args.seed, val_fraction=args.val_fraction)
    folds = fold_positions(splits, bags.patients)
    config = train_config(args)
    hidden, attention = args.hidden, args.hidden // 2
    scores = np.full(len(y), np.nan)
    epochs, fold_seconds, fold_auc = [], [], []
    cpu_start = cpu_seconds()
    cuda = resolve_device(args.device).type == "cuda"
    with Timer() as total:
        if cuda and args.worker != "torchmil":  # what `mil train` does when the bags fit on the GPU
            bags.features = bags.features.to(resolve_device(args.device))
        for k, (tr, va, te) in enumerate(folds):
            with Timer() as t:
                if args.worker != "torchmil":
                    params = {"hidden_dim": hidden, "attention_dim": attention, "dropout": 0.0}
                    fit = fit_ours("abmil", params, bags, tr, va, te, config, args.seed * 1000 + k)
                else:
                    factory = lambda: torchmil_abmil(args.dim, hidden, attention, 0.0)  # noqa: E731
                    fit = fit_torchmil(factory, bags, tr, va, te, config, args.seed * 1000 + k)
            scores[te] = fit.probs[:, 1]
            epochs.append(fit.epochs_run)
            fold_seconds.append(t.seconds)
            fold_auc.append(binary_auc(y[te], fit.probs[:, 1]))
    return {
        "side": args.worker,
        "cv_seconds": total.seconds,
        "cv_cpu_seconds": cpu_seconds() - cpu_start,
        "generate_seconds": gen.seconds,
        "fold_seconds": fold_seconds,
        "epochs_run": epochs,
        "auc_pooled": binary_auc(y, scores),
        "auc_per_fold": fold_auc,
        "peak_rss_mb": peak_rss_mb(),
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "device": str(resolve_device(args.device)),
        "model_gflop": model_flops(
            args, folds, epochs, min(sub_instances(args.worker) or args.instances, args.instances)
        )
        / 1e9,
        "split_digest": splits_digest(folds),
        "torch_threads": torch.get_num_threads(),
        "load_average_end": os.getloadavg(),
    }


def run_side(side: str, argv: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="train-speed-") as tmp:
        out = Path(tmp) / f"{side}.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            *argv,
            "--worker",
            side,
            "--worker-out",
            str(out),
        ]
        load = os.getloadavg()
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{side} worker failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        result = json.loads(out.read_text())
    result["load_average_start"] = load
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bags", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--witnesses", type=int, default=20, help="witness instances per positive bag")
    parser.add_argument("--shift", type=float, default=1.5, help="witness shift along the signal direction")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sub-instances",
        default="512",
        help="mil-sub sides: instances per bag per training step, comma-separated (one side each)",
    )
    parser.add_argument("--device", default="cpu", help="cpu | cuda (both sides)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per side (0: torch's default)")
    parser.add_argument(
        "--sides",
        default="mil,mil-sub,torchmil",
        help="run order; comma-separated subset of " + ",".join(SIDES),
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.witnesses <= args.instances:
        parser.error(f"--witnesses {args.witnesses} must be between 0 and --instances {args.instances}")
    if args.worker:
        args.worker_out.write_text(json.dumps(worker(args)))
        return {}
    try:
        sides = expand_sides(args.sides, args.sub_instances)
    except ValueError as exc:
        parser.error(str(exc))
    cpu = resolve_device(args.device).type == "cpu"
    rate = gemm_rate(args) if cpu else None
    results = {side: run_side(side, argv) for side in sides}
    if rate is not None:  # best of before and after: the floor should be the machine at its fastest
        rate = max(rate, gemm_rate(args))
    gb = args.bags * args.instances * args.dim * 4 / 1e9
    setup = (
        f"{args.folds}-fold CV, {args.bags} bags x {args.instances} instances x {args.dim}-d ({gb:.2f} GB float32), "
        f"{args.witnesses} witnesses shifted {args.shift} per positive bag, hidden {args.hidden}, batch "
        f"{args.batch_size}, <= {args.epochs} epochs (patience {args.patience}), Adam lr {args.lr:g}, "
        f"device {results[sides[0]]['device']}, cpu threads {results[sides[0]]['torch_threads']}"
    )
    print(setup)
    print(f"{'side':11s} {'CV wall s':>10s} {'CV cpu s':>9s} {'AUC pooled':>11s} {'AUC folds (mean)':>17s} {'peak RSS MB':>12s} "
          f"{'epochs':>14s} {'gen s':>6s} {'load start':>10s}  folds")  # fmt: skip
    for side, r in results.items():
        print(
            f"{side:11s} {r['cv_seconds']:10.1f} {r['cv_cpu_seconds']:9.1f} {r['auc_pooled']:11.3f} {np.mean(r['auc_per_fold']):17.3f} "
            f"{r['peak_rss_mb']:12.0f} {','.join(map(str, r['epochs_run'])):>14s} {r['generate_seconds']:6.1f} "
            f"{r['load_average_start'][0]:10.1f}  {r['split_digest']}"
        )
    payload: dict = {"benchmark": "train_speed", "setup": setup, "args": vars(args), "results": results}
    if rate is not None:
        print(f"arithmetic floor: each side's matrix products at the best GEMM rate measured in this run "
              f"({rate / 1e9:.0f} GFLOP/s; no elementwise ops, no data movement):")  # fmt: skip
        floors = {side: r["model_gflop"] * 1e9 / rate for side, r in results.items()}
        for side, floor in floors.items():
            print(f"  {side:11s} {results[side]['model_gflop'] / 1e3:7.1f} TFLOP  floor {floor:6.1f} s  "
                  f"measured / floor {results[side]['cv_seconds'] / floor:4.2f}")  # fmt: skip
        if "torchmil" in results:
            bound = results["torchmil"]["cv_seconds"] / floors["torchmil"]
            print(f"  torchmil's wall time / the same rule's floor = {bound:.2f}x: the most any implementation of "
                  "every-instance training could gain over torchmil on this machine")  # fmt: skip
            payload["same_rule_bound"] = bound
        payload["gemm_gflops"] = rate / 1e9
    if "torchmil" in results:
        base = results["torchmil"]
        for side in (s for s in sides if s != "torchmil"):
            r = results[side]
            if r["split_digest"] != base["split_digest"]:
                raise SystemExit("the sides saw different folds; this is a bug in the benchmark")
            ratio = base["cv_seconds"] / r["cv_seconds"]
            cpu_ratio = base["cv_cpu_seconds"] / r["cv_cpu_seconds"]
            d_auc = r["auc_pooled"] - base["auc_pooled"]
            print(f"speed-up torchmil / {side}: wall {ratio:.2f}x (target >= 5x), cpu time {cpu_ratio:.2f}x; "
                  f"pooled AUC {side} - torchmil: {d_auc:+.3f}")  # fmt: skip
            payload.setdefault("speedup", {})[side] = ratio
            payload.setdefault("cpu_speedup", {})[side] = cpu_ratio
            payload.setdefault("auc_difference", {})[side] = d_auc
    payload["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in payload["args"].items()}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
