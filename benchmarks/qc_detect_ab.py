"""QC + detection time of two checkouts of this repository on the same slides, rounds interleaved.

    python benchmarks/qc_detect_ab.py --old /path/to/old/checkout [--new .] [--slides 'DIR/*.tiff'] [--rounds 4]

Each round runs, one after the other, a fresh subprocess per checkout (its own `features` package first on
sys.path, one thread) that runs `assess_regions` and `detect_cells` with the defaults on every slide and
reports CPU seconds per slide for QC and for detection, and the cells found. The machine is shared, so the
old/new order alternates and the medians over rounds are compared. Without --slides, 6 synthetic slides of
4000 px are generated first (seed 2028: 3 default, 3 with cellularity x3).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from features.smear.detect import DetectParams, detect_cells
from features.smear.qc import QCParams, assess_regions
from features.sources.openslide_reader import SlideReader
qc = det = 0.0
cells = 0
slides = sys.argv[2:]
for s in slides:
    with SlideReader(Path(s)) as reader:
        t = time.process_time(); region_map = assess_regions(reader, QCParams()); qc += time.process_time() - t
        t = time.process_time(); found = detect_cells(reader, region_map, DetectParams())
        det += time.process_time() - t
        cells += len(found)
print(json.dumps({"qc": qc / len(slides), "detect": det / len(slides), "cells": cells}))
"""


def synthetic_slides(out: Path) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from features.synth import SynthConfig, generate_cohort

    for name, scale in (("default", 1.0), ("dense", 3.0)):
        config = SynthConfig(
            patients=3, layout="slides", slide_px=4000, seed=2028, cellularity_scale=scale, sites=1
        )
        generate_cohort(out / name, config, overwrite=True, workers=2)
    return sorted(glob.glob(str(out / "*" / "slides" / "*.tiff")))


def run(checkout: Path, slides: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(checkout), *slides], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="checkout of the code to compare against")
    parser.add_argument("--new", type=Path, default=ROOT)
    parser.add_argument("--slides", default=None, help="glob of slides (default: synthetic, generated)")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        slides = sorted(glob.glob(args.slides)) if args.slides else synthetic_slides(Path(tmp))
        print(f"{len(slides)} slides; load average {os.getloadavg()[0]:.1f}")
        results: dict[str, list[dict]] = {"old": [], "new": []}
        for r in range(args.rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for name in order:
                results[name].append(run(getattr(args, name), slides))
                got = results[name][-1]
                print(f"round {r + 1} {name}: QC {got['qc']:.3f} s/slide, detection {got['detect']:.3f} s/slide, "
                      f"{got['cells']} cells", flush=True)  # fmt: skip
    for key in ("qc", "detect"):
        old = statistics.median(r[key] for r in results["old"])
        new = statistics.median(r[key] for r in results["new"])
        print(f"{key:<7} median old {old:.3f} s/slide, new {new:.3f} s/slide, new/old {new / old:.2f}")
    old = statistics.median(r["qc"] + r["detect"] for r in results["old"])
    new = statistics.median(r["qc"] + r["detect"] for r in results["new"])
    print(f"QC + detection median old {old:.3f} s/slide, new {new:.3f} s/slide, new/old {new / old:.2f}")


if __name__ == "__main__":
    main()
