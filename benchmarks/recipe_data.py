"""Cohorts for the training-recipe benchmarks (`benchmarks/recipe.py`), built once and cached under .bench/.

    python benchmarks/recipe_data.py synth [--patients 240 --cells 1000 --witness 0.1,0.3 --workers 1]
    python benchmarks/recipe_data.py pbc [--data ../shared/data/pbc-subset]

synth: the largest cohort of the stress grid per witness level (cells layout, 3 sites with stain shifts,
APL / AML / healthy in equal shares, seed 11) through `features.synth.generate_cohort` and the `mil extract`
library call with the `cytomorph` encoder -> .bench/recipe/synth_w<witness>/bags.zarr + labels.csv. The smaller
grid cells (60 / 120 patients, 100-cell bags) are subsamples of these (`recipe.py` draws them), because
extracting ~0.5 M synthetic cells takes about an hour on 2 shared cores (cytomorph on crops).

pbc: the 2,000 real CellaVision cells of pbc-subset (Acevedo et al. 2020, CC BY 4.0) through the `mil extract`
library call with `cytomorph` -> .bench/recipe/pbc/bags.zarr, one bag per cell-type folder (the folder name is
its patient id); `recipe.py` draws pseudo-patients from those bags. The images are read from the shared folder,
never copied.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, Timer  # noqa: E402

ROOT = BENCH_DIR / "recipe"
PBC_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pbc-subset"
MIX = {"healthy": 1.0, "AML": 1.0, "APL": 1.0}


def _extract_store(cells: Path, root: Path, workers: int, mpp: float | None = None) -> tuple[int, float]:
    """cells -> root/bags.zarr by the `mil extract` library call (cytomorph, CPU); written to root/tmp.zarr and
    renamed when complete, so the cached name never holds a partial store. Returns (cells, seconds)."""
    from features.pipeline.config import ExtractConfig
    from features.pipeline.extract import extract

    config = ExtractConfig(encoder="cytomorph", device="cpu", mpp=mpp, workers=workers)
    shutil.rmtree(root / "tmp.zarr", ignore_errors=True)  # an interrupted earlier run
    with Timer() as t:
        summary = extract(cells, root / "tmp.zarr", config)
    if summary.count("failed") or not summary.count("written"):
        raise SystemExit(f"extraction failed: {summary.message}")
    (root / "tmp.zarr").rename(root / "bags.zarr")
    return summary.instances, t.seconds


def synth(args: argparse.Namespace) -> None:
    from features.synth import SynthConfig, generate_cohort

    for witness in [float(w) for w in args.witness.split(",")]:
        root = ROOT / f"synth_w{witness:g}{args.tag}"
        if (root / "bags.zarr").is_dir() and (root / "labels.csv").is_file():
            print(f"{root}: cached", flush=True)
            continue
        shutil.rmtree(root, ignore_errors=True)
        config = SynthConfig(patients=args.patients, layout="cells", sites=3, seed=11, witness=witness,
                             cells_per_patient=args.cells, diagnosis_mix=MIX)  # fmt: skip
        with Timer() as t_synth:
            generate_cohort(root / "cohort", config, workers=args.workers)
        shutil.copy(root / "cohort" / "labels.csv", root / "labels.csv")  # "cached" needs bags.zarr as well
        n_cells, seconds = _extract_store(root / "cohort" / "cells", root, args.workers)
        shutil.rmtree(root / "cohort" / "cells")  # the crops are not needed once encoded (GBs)
        print(f"{root}: synth {t_synth.seconds:.0f} s, extract {seconds:.0f} s "
              f"({n_cells} cells, {n_cells / seconds:.0f} cells/s)", flush=True)  # fmt: skip


def subset(args: argparse.Namespace) -> None:
    """Extract part of a cohort whose rendering was stopped early (a shared 2-core machine ran ~10x slower
    than planned): the first `--patients` rendered patients with their first `--cells` crops (crops are drawn
    i.i.d. per patient, so the first c are a random sample) -> synth_w<witness>/, or with `--full` every crop
    (1,000-cell bags) -> synth_w<witness>_full/; labels.csv is rebuilt from the cohort's seed
    (`features.synth.cohort.build_cohort`)."""
    import pandas as pd

    from features.synth import SynthConfig
    from features.synth.cohort import build_cohort, labels_row

    root = ROOT / f"synth_w{args.witness:g}"
    cells = next(root.glob(".cohort.tmp*/cells"))
    if (
        args.full
    ):  # the 1,000-cell bags go to their own store (synth:w..:c1000 reads it), the 100-cell one stays
        root = ROOT / f"synth_w{args.witness:g}_full"
        root.mkdir(exist_ok=True)
    config = SynthConfig(patients=args.total, layout="cells", sites=3, seed=11, witness=args.witness,
                         cells_per_patient=1000, diagnosis_mix=MIX)  # fmt: skip
    patients = build_cohort(config)[: args.patients]
    view = root / "view"
    shutil.rmtree(view, ignore_errors=True)
    for patient in patients:
        files = sorted((cells / patient.patient_id).glob("*.png"), key=lambda f: int(f.stem))
        keep = files if args.full else files[: args.cells]
        (view / patient.patient_id).mkdir(parents=True)
        for f in keep:
            (view / patient.patient_id / f.name).symlink_to(f.resolve())
    pd.DataFrame([labels_row(p, p.patient_id) for p in patients]).to_csv(root / "labels.csv", index=False)
    n_cells, seconds = _extract_store(view, root, args.workers)
    print(f"{root}: {n_cells} cells extracted in {seconds:.0f} s", flush=True)


def pbc(args: argparse.Namespace) -> None:
    root = ROOT / "pbc"
    if (root / "bags.zarr").is_dir():
        print(f"{root / 'bags.zarr'}: cached")
        return
    if not Path(args.data).is_dir():
        raise SystemExit(
            f"{args.data}: no pbc-subset folder there; point --data at it (one folder per cell type)"
        )
    n_cells, seconds = _extract_store(Path(args.data), root, args.workers, mpp=args.mpp)
    print(f"{root / 'bags.zarr'}: {n_cells} cells extracted in {seconds:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("synth")
    s.add_argument("--patients", type=int, default=240)
    s.add_argument("--cells", type=int, default=1000)
    s.add_argument("--witness", default="0.1,0.3")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--tag", default="", help="suffix of the cache folder (e.g. _n240: a second cohort size)")
    u = sub.add_parser("subset")
    u.add_argument("--witness", type=float, default=0.1)
    u.add_argument("--total", type=int, default=240, help="patients the interrupted cohort was made with")
    u.add_argument("--patients", type=int, default=120)
    u.add_argument("--full", action="store_true", help="every crop of each patient (1,000-cell bags)")
    u.add_argument("--cells", type=int, default=100)
    u.add_argument("--workers", type=int, default=1)
    p = sub.add_parser("pbc")
    p.add_argument(
        "--data", default=str(PBC_DATA), help="the pbc-subset folder (default: beside the checkout)"
    )
    p.add_argument("--mpp", type=float, default=0.1, help="pbc-subset: 360 px crops of ~36 µm")
    p.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    {"synth": synth, "subset": subset, "pbc": pbc}[args.what](args)


if __name__ == "__main__":
    main()
