"""Benchmark of the synthetic cohort generator (`mil synth`), against the targets set for it on 2 cores:

    cells layout : 60 patients x 200 crops (96 px at 0.25 mpp)   <= 120 s
    slides layout: 20 slides of 6000 x 6000 px at 0.25 mpp        <= 180 s

Prints wall seconds, CPU seconds (this process and its workers), throughput and the wall/target ratio, plus the
load average, because on a shared machine wall time depends on what else runs. Run:

    python benchmarks/synth.py [--workers 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.synth import SynthConfig, generate_cohort  # noqa: E402


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def run(
    name: str, config: SynthConfig, workers: int, target_s: float, unit: str, count: int, root: Path
) -> None:
    out = root / name
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), _cpu_s()
    summary = generate_cohort(out, config, workers=workers)
    wall, cpu = time.perf_counter() - wall, _cpu_s() - cpu
    print(
        f"{name:7s} {count:5d} {unit:7s} wall {wall:7.1f} s  cpu {cpu:7.1f} s  "
        f"{count / wall:7.2f} {unit}/s  target {target_s:5.0f} s  wall/target {wall / target_s:4.2f}  "
        f"size {_du_mb(out):7.1f} MB  load before {load:.1f}"
    )
    if summary.slides:
        print(
            f"        nucleated cells on slides: {summary.nucleated_on_slides} ({summary.nucleated_on_slides / summary.slides:.0f} per slide)"
        )
    shutil.rmtree(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes (the targets assume 2 cores)"
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the work, targets scaled")
    parser.add_argument("--only", choices=["cells", "slides"], help="run one of the two")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    n_cells_patients, n_slides = max(1, round(60 * scale)), max(1, round(20 * scale))
    print(f"mil synth benchmark: workers={args.workers}, cpus={os.cpu_count()}, quick={args.quick}")
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        root = Path(tmp)
        if args.only in (None, "cells"):
            cells = SynthConfig(patients=n_cells_patients, layout="cells", cells_per_patient=200, seed=0)
            run("cells", cells, args.workers, 120 * scale, "crops", n_cells_patients * 200, root)
        if args.only in (None, "slides"):
            slides = SynthConfig(patients=n_slides, layout="slides", slide_px=6000, seed=0)
            run("slides", slides, args.workers, 180 * scale, "slides", n_slides, root)


if __name__ == "__main__":
    main()
