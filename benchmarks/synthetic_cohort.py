"""Synthetic cohort end to end: `apl_aml_healthy` macro AUC from `cytomorph` features, per setting.

    python benchmarks/synthetic_cohort.py [--patients 60 --cells 200 --sites 3] [--witness 1.0,0.3] [--json PATH]

For each witness level (the share of disease-defining cells the generator puts into a patient's smear): one
cohort from `features.synth.generate_cohort` (cells layout), one bag store from `features.pipeline.extract.extract`
(cytomorph encoder, the `mil extract` library call), then `mil.training.train.train_cv` with `configs/apl_aml_healthy.yaml`
twice: stratified k-fold CV (--folds, default 5), and leave-one-site-out (`group_by: site`: trained on the other sites, tested on
the held-out one). Prints the pooled out-of-fold macro AUC with its bootstrap 95 % CI and the seconds of each
stage. The runs stay under --root (default .bench/synthetic_cohort, git-ignored) for `mil evaluate`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, Timer, write_json  # noqa: E402

from features.pipeline.config import ExtractConfig  # noqa: E402
from features.pipeline.extract import extract  # noqa: E402
from features.synth import SynthConfig, generate_cohort  # noqa: E402
from mil.config import load_config  # noqa: E402
from mil.training.train import train_cv  # noqa: E402

SPLITS = {"k-fold": {}, "leave-one-site-out": {"group_by": "site"}}


def cohort_and_store(root: Path, witness: float, args: argparse.Namespace) -> tuple[Path, Path, dict]:
    """Generate the cohort and extract its bags (both redone from scratch under `root`)."""
    cohort, store = root / "cohort", root / "bags.zarr"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    config = SynthConfig(
        patients=args.patients,
        layout="cells",
        sites=args.sites,
        seed=args.seed,
        witness=witness,
        cells_per_patient=args.cells,
    )
    with Timer() as t_synth:
        generate_cohort(cohort, config, workers=max(1, args.workers))
    with Timer() as t_extract:
        summary = extract(
            cohort / "cells", store, ExtractConfig(encoder="cytomorph", device="cpu", workers=args.workers)
        )
    failed = summary.count("failed")
    if failed or summary.count("written") == 0:
        raise SystemExit(f"extraction of {cohort / 'cells'}: {summary.count('written')} bags written, "
                         f"{failed} failed ({summary.message})")  # fmt: skip
    times = {"synth_seconds": t_synth.seconds, "extract_seconds": t_extract.seconds,
             "bags": summary.count("written"), "instances": summary.instances}  # fmt: skip
    return cohort / "labels.csv", store, times


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    for witness in (float(w) for w in args.witness.split(",")):
        root = args.root / f"witness_{witness:g}"
        labels, store, times = cohort_and_store(root, witness, args)
        for name, overrides in SPLITS.items():
            train = {"seed": args.seed, "device": "cpu", "folds": args.folds, **overrides}
            if args.epochs:
                train["epochs"] = args.epochs
            evaluate = {"n_bootstrap": args.bootstrap, "seed": args.seed}
            config = load_config("apl_aml_healthy", flags={"train": train, "evaluate": evaluate})
            with Timer() as t:
                summary = train_cv(
                    store, labels, config.train, root / "runs" / name.replace(" ", "_"), overwrite=True,
                    evaluate=config.evaluate,
                )  # fmt: skip
            pooled = summary.pooled
            rows.append(
                {
                    "witness": witness,
                    "split": name,
                    "macro_auc": pooled.get("estimate"),
                    "ci_low": pooled.get("low"),
                    "ci_high": pooled.get("high"),
                    "n_patients": summary.n_patients,
                    "folds": [
                        {
                            "fold": f.fold,
                            "name": f.name,
                            "n_test": f.n_test,
                            "test": f.test,
                            "best_epoch": f.best_epoch,
                        }  # fmt: skip
                        for f in summary.folds
                    ],
                    "train_seconds": t.seconds,
                    "run": str(summary.run),
                    **times,
                }
            )
    return rows


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--cells", type=int, default=200, help="cells per patient")
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--witness", default="1.0,0.3", help="comma-separated witness levels")
    parser.add_argument("--folds", type=int, default=5, help="folds of the k-fold setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap draws for the CIs")
    parser.add_argument("--root", type=Path, default=BENCH_DIR / "synthetic_cohort")
    parser.add_argument("--epochs", type=int, help="override the config's maximum epochs (smoke tests)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training (small bags: 1)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with Timer() as total:
        rows = run(args)
    setup = (
        f"apl_aml_healthy, cytomorph, {args.patients} patients x {args.cells} cells, {args.sites} sites, "
        f"seed {args.seed}, configs/apl_aml_healthy.yaml (abmil)"
    )
    print(setup)
    print(f"{'witness':>7s} {'split':19s} {'patients':>8s} {'macro AUC [95% CI]':>22s} "
          f"{'synth s':>8s} {'extract s':>9s} {'train s':>8s}")  # fmt: skip
    for r in rows:
        auc = (
            "n/a"
            if r["macro_auc"] is None
            else f"{r['macro_auc']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        )
        print(
            f"{r['witness']:7.2f} {r['split']:19s} {r['n_patients']:8d} {auc:>22s} "
            f"{r['synth_seconds']:8.1f} {r['extract_seconds']:9.1f} {r['train_seconds']:8.1f}"
        )
        if r["split"] == "leave-one-site-out":
            per_site = ", ".join(
                f"{f['name']}: {f['test'].get('estimate', float('nan')):.3f}" if f["test"].get("estimate")
                is not None else f"{f['name']}: n/a" for f in r["folds"]
            )  # fmt: skip
            print(f"{'':7s} {'':19s} per held-out site: {per_site}")
    print(f"total {total.seconds:.0f} s")
    payload = {"benchmark": "synthetic_cohort", "setup": setup, "rows": rows, "seconds": total.seconds}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
