"""Cell types and the differential count, measured against `mil synth` truth (and real PBC cells), part by part.

    python benchmarks/cells.py --part detect|classify|count|speed|all [--work DIR] [--json PATH]

Parts (each in its own file, imported here; `--part a,b` runs several, `all` every one):

detect    region QC + detection per cell type and region on six widened scenarios (benchmarks/cells_detect.py):
          `--patients` slides per scenario of `--slide-px` px, `--seed`, `--scenarios`;
count     blast % and every type's % from `mil cells train` on one synthetic cohort and `mil cells count` on
          another (benchmarks/cells_types.py): `--count-patients`, `--count-slide-px`, `--count-seeds`;
classify  classifier balanced accuracy per encoder on synthetic cells and on the real PBC cells
          (`--classify-on synth,pbc`, `--encoder-slides`, `--pbc-patients`, `--data`);
speed     classification cells/s against the extraction that made the embeddings.

Cohorts, stores and models are kept under `--work` (default: a temporary folder) and reused when the script
is run again with the same folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import cells_detect  # noqa: E402
import cells_types  # noqa: E402

PARTS = ("detect", "count", "classify", "speed")
DEFAULT_DATA = ROOT.parent / "shared" / "data"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all", help=f"comma list of {', '.join(PARTS)}, or all")
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for cohorts and stores (kept; reused)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the count/classify/speed figures here")
    detect = parser.add_argument_group("detect")
    detect.add_argument(
        "--scenarios",
        default=",".join(cells_detect.SCENARIOS),
        help=f"comma list of {', '.join(cells_detect.SCENARIOS)}",
    )
    detect.add_argument("--patients", type=int, default=5, help="slides per scenario (blast shares 0-95 %%)")
    detect.add_argument("--slide-px", type=int, default=4000)
    detect.add_argument("--seed", type=int, default=2027)
    types = parser.add_argument_group("count, classify, speed")
    types.add_argument("--count-patients", type=int, default=20, help="patients per synthetic cohort")
    types.add_argument("--count-slide-px", type=int, default=4500)
    types.add_argument(
        "--count-seeds", default="21,22", help="TRAIN,COUNT: seeds of the training and the counted cohort"
    )
    types.add_argument("--classify-on", default="synth,pbc", help="comma list of synth, pbc")
    types.add_argument("--encoder-slides", type=int, default=6, help="slides for the encoder and speed parts")
    types.add_argument("--data", type=Path, default=Path(os.environ.get("MIL_TEST_DATA") or DEFAULT_DATA))
    types.add_argument("--pbc-patients", type=int, default=10)
    args = parser.parse_args(argv)
    args.parts = list(PARTS) if args.part == "all" else [p for p in args.part.split(",") if p]
    args.scenario_list = [s for s in args.scenarios.split(",") if s]
    args.on = [s for s in args.classify_on.split(",") if s]
    unknown = (
        [p for p in args.parts if p not in PARTS]
        + [s for s in args.scenario_list if s not in cells_detect.SCENARIOS]
        + [s for s in args.on if s not in ("synth", "pbc")]
    )
    if unknown:
        parser.error(f"unknown part, scenario or --classify-on value: {', '.join(unknown)}")
    try:
        train, count = (int(s) for s in args.count_seeds.split(","))
    except ValueError:
        parser.error(f"--count-seeds wants TRAIN,COUNT (two integers), got {args.count_seeds!r}")
    args.seeds = (train, count)
    return args


def run_part(part: str, args: argparse.Namespace, work: Path) -> dict | None:
    if part == "detect":
        cohorts = cells_detect.Cohorts(work / "detect", args.patients, args.slide_px, args.seed)
        cells_detect.part_detect(cohorts, args.scenario_list)
        return None
    if part == "count":
        return cells_types.part_count(work, args.count_patients, args.count_slide_px, args.seeds)
    if part == "classify":
        return cells_types.part_classify(work, args.count_patients, args.count_slide_px, args.encoder_slides,
                                         args.data, args.pbc_patients, args.on)  # fmt: skip
    return cells_types.part_speed(work, args.count_patients, args.count_slide_px, args.encoder_slides)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mil_cells_bench_") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results: dict = {}
        for part in args.parts:
            started = time.perf_counter()
            result = run_part(part, args, work)
            seconds = round(time.perf_counter() - started, 1)
            if result is None:
                print(f"== {part}: {seconds} s")
                continue
            results[part] = {**result, "wall_seconds": seconds}
            print(f"== {part}")
            print(json.dumps(results[part], indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
