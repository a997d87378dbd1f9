"""The cell-type composition baseline (`cell_composition`) beside the head and `pooled_stats`, where the signal
sits in a cell type's share.

    python benchmarks/cell_composition.py data [--patients 120 --cell-patients 40 --cells 150 --witness 0.15]
    python benchmarks/cell_composition.py run [--seeds 1,2,3 --json PATH]

data: one `mil synth` cohort (cells layout, 3 sites with stain shifts, healthy and AML in equal shares, AML
without a listed lesion, so its only defining cell is the ordinary myeloblast; `--witness` scales the extra
blasts: at 0.15 an AML marrow holds ~6-13 % blasts against ~1.5 % in a healthy one, a few cells in a 150-cell
bag), split by patient: the first `--cell-patients` become the cell model's store, the next `--patients` the
run's. Both are extracted with `cytomorph` (`mil extract`'s library call) into .bench/cell_composition/. The
cell model is `mil cells train --vocabulary synth20` on the first store with the synth truth as cell labels,
so the run's patients are never seen by it (the leakage check of `mil train` warns otherwise).

run: `mil train` (the CLI's entry point `mil.cli.main`, in a subprocess) on the run's store, target `apl_aml_healthy` (healthy vs
AML), default recipe and head, `--cell-model` given, so each run fits the head, `pooled_stats` and
`cell_composition` on the same 5 folds; seeds as given. Printed: each model's pooled AUC per seed, mean ± SD,
and the paired bootstrap difference head - baseline from each run's metrics.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, Timer  # noqa: E402
from recipe import NORMAL, RULES  # noqa: E402  (the pseudo-patient rules of benchmarks/recipe.py)

ROOT = BENCH_DIR / "cell_composition"
MIX = {"healthy": 1.0, "AML": 1.0}
TARGET = "apl_aml_healthy"
MIL = [sys.executable, "-c", "import sys; from mil.cli import main; main(sys.argv[1:])"]  # what `mil` runs


def data(args: argparse.Namespace) -> None:
    for witness in [float(w) for w in args.witness.split(",")]:
        _data(args, witness)


def _data(args: argparse.Namespace, witness: float) -> None:
    import pandas as pd

    from features.pipeline.config import ExtractConfig
    from features.pipeline.extract import extract
    from features.synth import SynthConfig, generate_cohort
    from mil.cells.train import train_cells
    from mil.config import CellsConfig

    root = ROOT / f"w{witness:g}"
    if (root / "cellmodel" / "cellmodel.json").is_file() and (root / "run" / "bags.zarr").is_dir():
        print(f"{root}: cached", flush=True)
        return
    shutil.rmtree(root, ignore_errors=True)
    total = args.patients + args.cell_patients
    config = SynthConfig(patients=total, layout="cells", sites=3, seed=args.seed, witness=witness,
                         cells_per_patient=args.cells, diagnosis_mix=MIX, aml_genetics={"none": 1.0})  # fmt: skip
    cohort = root / "cohort"
    with Timer() as t_synth:
        generate_cohort(cohort, config, workers=args.workers)
    labels = pd.read_csv(cohort / "labels.csv", dtype=str)
    patients = sorted(labels["patient_id"].unique())
    parts = {"cells": patients[: args.cell_patients], "run": patients[args.cell_patients :]}
    extract_config = ExtractConfig(encoder="cytomorph", device="cpu", workers=args.workers)
    seconds = {}
    for part, members in parts.items():
        view = root / part / "view"
        view.mkdir(parents=True)
        for p in members:
            (view / p).symlink_to((cohort / "cells" / p).resolve())
        with Timer() as t:
            summary = extract(view, root / part / "bags.zarr", extract_config)
        if summary.count("failed") or not summary.count("written"):
            raise SystemExit(f"extraction failed: {summary.message}")
        labels[labels["patient_id"].isin(members)].to_csv(root / part / "labels.csv", index=False)
        seconds[part] = t.seconds
    with Timer() as t_cells:
        trained = train_cells(root / "cells" / "bags.zarr", cohort, root / "cellmodel",
                              CellsConfig(vocabulary="synth20", seed=0))  # fmt: skip
    print(f"{root}: synth {t_synth.seconds:.0f} s, extract {seconds}, cell model {t_cells.seconds:.0f} s "
          f"(balanced accuracy {trained.metrics['balanced_accuracy']:.3f} over {len(trained.classes)} classes, "
          f"{trained.n_patients} patients)", flush=True)  # fmt: skip


def run(args: argparse.Namespace) -> None:
    record = {}
    for cohort in args.cohorts.split(","):
        target = "label" if cohort == "pbc" else TARGET
        record[cohort] = _run(ROOT / cohort, target, [int(s) for s in args.seeds.split(",")])
        if args.json:  # after each cohort: a later one that fails leaves the earlier figures
            Path(args.json).write_text(json.dumps(record, indent=1))


def _run(root: Path, target: str, seeds: list[int]) -> dict:
    import subprocess

    store, labels, cell_model = root / "run" / "bags.zarr", root / "run" / "labels.csv", root / "cellmodel"
    if not store.is_dir():
        raise SystemExit(f"{store}: run `python benchmarks/cell_composition.py data` first")
    rows: dict[str, list[float]] = {}
    diffs: dict[str, list[dict]] = {}
    seconds = []
    for seed in seeds:
        out = root / "runs" / f"seed{seed}"
        argv = [*MIL, "train", "--bags", str(store), "--labels", str(labels), "--target", target, "--seed", str(seed),
                "--cell-model", str(cell_model), "--device", "cpu", "-o", str(out), "--overwrite"]  # fmt: skip
        with Timer() as t:
            result = subprocess.run(argv, capture_output=True, text=True)  # the `mil` console script's entry
        if result.returncode != 0:
            raise SystemExit(f"mil train failed (exit {result.returncode}): {result.stderr[-2000:]}")
        seconds.append(t.seconds)
        metrics = json.loads((out / "metrics.json").read_text())
        metric = next(iter(metrics["comparison"].values()))["metric"]
        rows.setdefault("head", []).append(metrics["pooled"][metric]["estimate"])
        for name, block in metrics["baselines"].items():
            rows.setdefault(name, []).append(block["pooled"][metric]["estimate"])
            diffs.setdefault(name, []).append(metrics["comparison"][name]["difference"])
        print(f"{root.name} seed {seed}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in rows.items())
              + f" ({t.seconds:.0f} s)", flush=True)  # fmt: skip
    print(f"\n{root.name}: pooled {metric} over {len(seeds)} seeds (mean ± SD), {store}:")
    for name, values in rows.items():
        sd = np.std(values, ddof=1) if len(values) > 1 else 0.0
        print(f"  {name:18s} {np.mean(values):.3f} ± {sd:.3f}  ({' / '.join(f'{v:.3f}' for v in values)})")
    print("  head - baseline, paired bootstrap 95 % CI per seed:")
    for name, per_seed in diffs.items():
        cells = [f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" for d in per_seed]
        print(f"  {name:18s} " + "; ".join(cells), flush=True)
    return {"seeds": seeds, "metric": metric, "values": rows, "difference": diffs, "seconds_per_run": seconds}


# Real cells (pbc-subset): pseudo-patients as benchmarks/recipe.py draws them (`pbc_cohort`, left shift).
PBC = Path("/work/shared/data/pbc-subset")
LEFT_SHIFT = RULES["left_shift"]  # immature granulocytes 1.5 % -> ~7.5 %
CELL_MODEL_SHARE = 0.3  # of each class's 250 images: the cell model's; the rest make the pseudo-patients


def pbc_data(args: argparse.Namespace) -> None:
    """pbc-subset encoded once (cytomorph, one "slide" per class folder), each class's images split at random
    into the cell model's 30 % and the pseudo-patients' 70 %; the cell model's cells are spread over 5
    pseudo-slides (its CV groups by patient) and learnt with `mil cells train --vocabulary pbc8`; 120
    pseudo-patients (half left shift) drawn from the other 70 % into a store of their own."""
    import pandas as pd

    from features.bagstore import Bag, BagMeta, BagStore
    from features.pipeline.config import ExtractConfig
    from features.pipeline.extract import extract
    from mil.cells.train import train_cells
    from mil.config import CellsConfig

    root = ROOT / "pbc"
    if (root / "cellmodel" / "cellmodel.json").is_file() and (root / "run" / "bags.zarr").is_dir():
        print(f"{root}: cached", flush=True)
        return
    shutil.rmtree(root, ignore_errors=True)
    with Timer() as t_extract:
        summary = extract(Path(args.data), root / "classes.zarr",
                          ExtractConfig(encoder="cytomorph", device="cpu", mpp=args.mpp, workers=args.workers))  # fmt: skip
    if summary.count("failed") or not summary.count("written"):
        raise SystemExit(f"extraction failed: {summary.message}")
    classes = BagStore(root / "classes.zarr")
    encoder = classes.encoder
    rng = np.random.default_rng(args.seed)
    model_cells, patient_cells = {}, {}
    for meta in classes.metas():
        x = classes.read_features(meta.slide_id).astype(np.float32)
        order = rng.permutation(len(x))
        cut = round(CELL_MODEL_SHARE * len(x))
        model_cells[meta.slide_id], patient_cells[meta.slide_id] = x[order[:cut]], x[order[cut:]]

    def write(store: BagStore, slide: str, x: np.ndarray) -> None:
        store.write(Bag(x), BagMeta(slide, slide, len(x), encoder, str(PBC), "cells", mpp=args.mpp))

    cm_store, rows = BagStore(root / "cells" / "bags.zarr", "a", encoder), []
    for k in range(5):
        parts = {c: x[k::5] for c, x in model_cells.items()}
        write(cm_store, f"CM{k + 1}", np.concatenate(list(parts.values())))
        types = [c for c, x in parts.items() for _ in range(len(x))]
        rows += [{"slide_id": f"CM{k + 1}", "instance": i, "cell_type": t} for i, t in enumerate(types)]
    pd.DataFrame(rows).to_csv(root / "cells" / "labels.csv", index=False)
    run_store, labels = BagStore(root / "run" / "bags.zarr", "a", encoder), []
    types = list(NORMAL)
    for i in range(args.patients):
        case = i % 2
        shares = {t: NORMAL[t] + (LEFT_SHIFT.get(t, 0.0) if case else 0.0) for t in types}
        p = rng.dirichlet(100 * np.array([shares[t] for t in types]) / sum(shares.values()))
        counts = rng.multinomial(int(rng.integers(100, 301)), p)
        bag = np.concatenate([patient_cells[t][rng.integers(0, len(patient_cells[t]), k)]
                              for t, k in zip(types, counts, strict=True) if k])  # fmt: skip
        write(run_store, f"PB{i + 1:03d}", bag[rng.permutation(len(bag))])
        labels.append({"patient_id": f"PB{i + 1:03d}", "slide_id": f"PB{i + 1:03d}",
                       "label": "left_shift" if case else "control"})  # fmt: skip
    pd.DataFrame(labels).to_csv(root / "run" / "labels.csv", index=False)
    with Timer() as t_cells:
        trained = train_cells(root / "cells" / "bags.zarr", root / "cells" / "labels.csv", root / "cellmodel",
                              CellsConfig(vocabulary="pbc8", seed=0))  # fmt: skip
    print(f"{root}: extract {t_extract.seconds:.0f} s ({summary.instances} cells), cell model "
          f"{t_cells.seconds:.0f} s (balanced accuracy {trained.metrics['balanced_accuracy']:.3f} over "
          f"{len(trained.classes)} classes)", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("data")
    d.add_argument("--patients", type=int, default=120)
    d.add_argument("--cell-patients", type=int, default=40)
    d.add_argument("--cells", type=int, default=150)
    d.add_argument("--witness", default="0.05,0.15")
    d.add_argument("--seed", type=int, default=31)
    d.add_argument("--workers", type=int, default=1)
    b = sub.add_parser("pbc-data")
    b.add_argument("--data", default=str(PBC))
    b.add_argument("--mpp", type=float, default=0.1, help="pbc-subset: 360 px crops of ~36 µm")
    b.add_argument("--patients", type=int, default=120)
    b.add_argument("--seed", type=int, default=5)
    b.add_argument("--workers", type=int, default=1)
    r = sub.add_parser("run")
    r.add_argument("--seeds", default="1,2,3")
    r.add_argument("--cohorts", default="w0.05,w0.15,pbc", help="w<witness> (from `data`), pbc (`pbc-data`)")
    r.add_argument("--json")
    args = parser.parse_args()
    {"data": data, "pbc-data": pbc_data, "run": run}[args.what](args)


if __name__ == "__main__":
    main()
