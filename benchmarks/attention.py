"""Does attention find the cells that define the disease? Measured against the synthetic cohort's truth.

For each witness level (share of disease-defining cells, 1.0 = textbook, 0.3 = scarce), the script generates
a `mil synth` cohort, extracts it with the cytomorph encoder, trains every head per task with patient-level
cross-validation, and scores each head's per-cell explanation against the truth files:

    auroc      instance-level AUROC, diagnostic vs other cells, within each positive patient, averaged over
               patients (positive = a patient of a class whose diagnostic cells are marked: APL and AML for
               apl_aml_healthy, MDS and AML for mds_aa_aml), ranked by that class's attention row
    auroc_pool the same over all positive patients' cells pooled, ranked by attention x N (comparability check)
    p@20       share of diagnostic cells among each positive patient's 20 highest-attention cells, averaged
    p@20_max   the best p@20 possible (a patient with fewer than 20 diagnostic cells cannot reach 1)
    base       share of diagnostic cells in those patients (what a random ranking scores on p@20)
    bag_auc    the run's pooled out-of-fold macro AUROC (metrics.json), for context
    top_intruder  the non-diagnostic cell type most often in the top 20 (out-of-fold), with its count

Honest by construction: every patient is explained by the fold model that did NOT train on it (out-of-fold,
like the predictions); `auroc_ens` shows the all-fold ensemble that `mil heatmap` uses, for comparison. Heads
without attention (mean_pool, max_pool) are scored on their gradient x input attribution. Cells join to the
truth by `file` (cells layout) or nearest x, y within 4 µm (slides layout) via `mil.explain.truth.join_truth`.

    python benchmarks/attention.py [--witness 1.0 0.3] [--tasks apl_aml_healthy mds_aa_aml] [--quick]

Everything is cached under --root (cohorts, stores, runs), so a rerun only scores. Results: printed table,
plus attention_benchmark.csv / .json in --root.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mil.explain.truth import join_truth  # noqa: E402
from mil.heads import HEADS as HEAD_REGISTRY  # noqa: E402

HEADS = HEAD_REGISTRY.names()  # every registered head
POSITIVE = {"apl_aml_healthy": ["APL", "AML"], "mds_aa_aml": ["MDS", "AML"]}
TOP = 20
RADIUS_UM = 4.0


def cohort(
    root: Path, layout: str, witness: float, patients: int, cells: int, slide_px: int, seed: int
) -> Path:
    from features.synth import generate_cohort, make_config

    out = root / f"synth_{layout}_w{witness:g}"
    if not (out / "labels.csv").exists():
        config = make_config(
            patients=patients,
            layout=layout,
            witness=witness,
            cells_per_patient=cells,
            slide_px=slide_px,
            seed=seed,
        )
        generate_cohort(out, config, overwrite=True, workers=2)
    return out


def store(root: Path, synth: Path, layout: str) -> Path:
    from features.pipeline.config import ExtractConfig
    from features.pipeline.extract import extract

    path = root / f"{synth.name}.bags"
    marker = path / ".complete"
    if not marker.exists():
        summary = extract(synth / layout, path, ExtractConfig(encoder="cytomorph", workers=1, device="cpu"))
        if summary.count("failed"):
            raise SystemExit(f"extraction of {synth / layout} failed for {summary.count('failed')} slides")
        marker.write_text("ok\n")
    return path


def train(root: Path, bags: Path, labels: Path, task: str, head: str, args) -> Path:
    from mil.config import EvaluateConfig, TrainConfig
    from mil.training.train import train_cv

    run = root / "runs" / f"{bags.stem}-{task}-{head}"
    if not (run / "metrics.json").exists():
        config = TrainConfig(
            target=task, head=head, folds=args.folds, epochs=args.epochs, lr=1e-3, batch_size=4, patience=15,
            allow_missing=True, device="cpu", seed=args.seed,
        )  # fmt: skip
        train_cv(bags, labels, config, run, overwrite=True, evaluate=EvaluateConfig(n_bootstrap=0))
    return run


def score(run: Path, bags: Path, synth: Path, layout: str, task: str) -> list[dict]:
    """Per positive class: attention vs truth metrics, out-of-fold and ensemble (see module doc)."""
    from mil.explain.cohort import Explainer
    from mil.explain.tables import attention_frame, rank_column

    ex = Explainer.open(run, bags)
    by_fold = {m.fold: m for m in ex.models}
    preds = ex.predictions.dropna(subset=["y_true"])
    rows = []
    for cls in POSITIVE[task]:
        per = {"oof": [], "ens": []}
        pooled_v, pooled_y, base, ceiling, intruders = [], [], [], [], []
        for _, p in preds[preds["y_true"] == cls].iterrows():
            for variant, models in (("oof", [by_fold[int(p["fold"])]]), ("ens", ex.models)):
                _, att = ex.explain(p["patient_id"], models)
                frames = [truth_join(attention_frame(s, ex.store.read(s), att), synth, layout, s, p["patient_id"],
                                     ex.metas[s].mpp) for s in ex.patient_slides[p["patient_id"]]]  # fmt: skip
                frame = pd.concat(frames, ignore_index=True).dropna(subset=["truth_diagnostic"])
                v, y = frame[rank_column(att, cls)].to_numpy(float), frame["truth_diagnostic"].to_numpy(int)
                top = np.argsort(-v, kind="stable")[:TOP]
                per[variant].append((_auc(y, v), y[top].mean()))
                if variant == "oof":
                    pooled_v.append(v), pooled_y.append(y), base.append(y.mean())
                    ceiling.append(min(TOP, int(y.sum())) / min(TOP, len(y)))
                    intruders += list(frame["truth_cell_type"].to_numpy()[top][y[top] == 0])
        if not per["oof"]:
            continue
        oof, ens = np.array(per["oof"]), np.array(per["ens"])
        rows.append({
            "class": cls, "n_pos": len(oof), "base": float(np.mean(base)),
            "auroc": float(np.nanmean(oof[:, 0])), "auroc_pool": _auc(np.concatenate(pooled_y), np.concatenate(pooled_v)),
            "p@20": float(oof[:, 1].mean()), "p@20_max": float(np.mean(ceiling)),
            "auroc_ens": float(np.nanmean(ens[:, 0])), "p@20_ens": float(ens[:, 1].mean()),
            "top_intruder": _most_common(intruders), "method": ex.method,
        })  # fmt: skip
    return rows


def truth_join(frame: pd.DataFrame, synth: Path, layout: str, slide: str, patient: str, mpp: float | None):
    if layout == "cells":
        return join_truth(frame, pd.read_csv(synth / "truth" / "cells" / f"{patient}.csv"))
    truth = pd.read_csv(synth / "truth" / "slides" / f"{slide}.csv")
    truth = truth[truth["nucleated"] == 1]  # red cells and platelets are never instances
    return join_truth(
        frame.drop(columns=["region"], errors="ignore"), truth, radius_px=RADIUS_UM / (mpp or 0.25)
    )


def _most_common(types: list[str]) -> str:
    """The non-diagnostic cell type most often among the top-20 cells (what attention confuses), with its count."""
    if not types:
        return "-"
    names, counts = np.unique(np.asarray(types, dtype=str), return_counts=True)
    return f"{names[counts.argmax()]} ({counts.max()})"


def _auc(y: np.ndarray, v: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, v)) if 0 < y.sum() < len(y) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/mil_attention_benchmark"))
    parser.add_argument("--layout", choices=["cells", "slides"], default="cells")
    parser.add_argument("--witness", type=float, nargs="+", default=[1.0, 0.3])
    parser.add_argument("--tasks", nargs="+", default=["apl_aml_healthy", "mds_aa_aml"])
    parser.add_argument("--heads", nargs="+", default=HEADS)
    parser.add_argument("--patients", type=int, default=80)
    parser.add_argument("--cells", type=int, default=120, help="cells per patient (cells layout)")
    parser.add_argument("--slide-px", type=int, default=2500, help="slide side (slides layout)")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="30 patients, abmil + mean_pool, one task")
    args = parser.parse_args()
    if args.quick:
        args.patients, args.heads, args.tasks, args.epochs = (
            30,
            ["abmil", "mean_pool"],
            ["apl_aml_healthy"],
            25,
        )
    torch.set_num_threads(1)
    args.root.mkdir(parents=True, exist_ok=True)
    results = []
    for witness in args.witness:
        t0 = time.perf_counter()
        synth = cohort(args.root, args.layout, witness, args.patients, args.cells, args.slide_px, args.seed)
        bags = store(args.root, synth, args.layout)
        print(f"# witness {witness:g}: cohort + store ready in {time.perf_counter() - t0:.0f} s", flush=True)
        for task in args.tasks:
            for head in args.heads:
                t1 = time.perf_counter()
                run = train(args.root, bags, synth / "labels.csv", task, head, args)
                bag_auc = json.loads((run / "metrics.json").read_text())["pooled"]["macro_auc"]["estimate"]
                for row in score(run, bags, synth, args.layout, task):
                    row = {"layout": args.layout, "witness": witness, "task": task, "head": head, "bag_auc": bag_auc,
                           **row, "seconds": round(time.perf_counter() - t1, 1)}  # fmt: skip
                    results.append(row)
                    print(_line(row), flush=True)
    table = pd.DataFrame(results)
    table.to_csv(args.root / "attention_benchmark.csv", index=False, float_format="%.4f")
    (args.root / "attention_benchmark.json").write_text(table.to_json(orient="records", indent=1))
    print()
    print(table.drop(columns=["seconds"]).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    summarise(table)


def summarise(table: pd.DataFrame) -> None:
    """The target line: APL at witness 1.0, best head overall and best head with real attention."""
    best = table[(table["witness"] == 1.0) & (table["class"] == "APL")]
    for label, rows in (("best head", best), ("best attention head", best[best["method"] == "attention"])):
        if len(rows):
            top = rows.sort_values("auroc", ascending=False).iloc[0]
            ok = top["auroc"] >= 0.95 and top["p@20"] >= 0.9
            print(
                f"APL, witness 1.0, {label} {top['head']} ({top['method']}): AUROC {top['auroc']:.3f} (target 0.95, "
                f"ratio {top['auroc'] / 0.95:.3f}), precision@20 {top['p@20']:.3f} (target 0.9, ratio "
                f"{top['p@20'] / 0.9:.3f}) -> {'MET' if ok else 'MISSED'}"
            )


def _line(r: dict) -> str:
    return (
        f"w{r['witness']:g} {r['task']:15s} {r['head']:12s} {r['class']:4s} n={r['n_pos']:2d} base {r['base']:.2f} "
        f"auroc {r['auroc']:.3f} pool {r['auroc_pool']:.3f} p@20 {r['p@20']:.2f}/{r['p@20_max']:.2f} | ens auroc "
        f"{r['auroc_ens']:.3f} p@20 {r['p@20_ens']:.2f} | bag AUC {r['bag_auc']:.3f} [{r['method']}] "
        f"top intruder {r['top_intruder']} {r['seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
