"""Extraction throughput: end-to-end `features.pipeline.extract.extract` vs the bare encoder on the same crops, in one run.

    python benchmarks/extract.py                      # CPU: dinobloom-s, random weights, fp32 (see below)
    python benchmarks/extract.py --device cuda        # GPU: precision auto (bf16 autocast), more workers
    python benchmarks/extract.py --rss-only           # only the peak-memory run on a 20k x 20k px slide

A = the library call `extract()` on synthetic smears (read, QC, detect, crop in loader workers; encode and
write in this process). B = `encoder.encode` over the very crops A encodes (same detections, same crop
reader), already in memory, in batches of the same size. A and B alternate round by round (this machine's
CPU is shared and noisy), and the ratio of each pair is printed with the median.

A's cells/s is counted from its "start" progress event to its return (steady state: discovery and building
the encoder are one-off costs of a run, printed separately as `setup_s`), and includes writing every bag
and QC file. CPU defaults: fp32, because bf16 on a CPU without AVX512-BF16/AMX is emulated (~17x slower
than fp32 on this 2-core AVX2 EPYC) and a bf16 number here would measure the emulation; pass
`--precision bf16` on a CPU that has it. Torch threads default to (cores - workers): the encoder gets the
cores the loader workers do not use, in A and in B alike, so B is the encoder's real ceiling in A.

Peak RSS: a child process extracts one 20k x 20k px synthetic slide (400 MPx) and reports its own peak RSS
(VmHWM) and its children's ru_maxrss (the loader worker), i.e. the memory such a smear needs end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".bench"


def cohort(patients: int, slide_px: int) -> Path:
    """Synthetic slides, generated once and cached in .bench/ (git-ignored)."""
    from features.synth import SynthConfig, generate_cohort

    out = CACHE / f"extract-{patients}x{slide_px}"
    if not (out / "slides").exists():
        print(f"generating {patients} synthetic slide(s) of {slide_px} px in {out} ...", flush=True)
        config = SynthConfig(patients=patients, layout="slides", slide_px=slide_px, sites=1)
        generate_cohort(out, config, overwrite=True, workers=min(patients, os.cpu_count() or 1))
    return out / "slides"


def crops_in_memory(slides: Path, config, input_px: int) -> list[np.ndarray]:
    """The crops A will encode: same QC, detection, subsample and crop reader as the pipeline."""
    from features.pipeline.slide_job import subsample_index
    from features.smear.crops import read_crops
    from features.smear.detect import detect_cells
    from features.smear.qc import assess_regions
    from features.sources.openslide_reader import SlideReader

    out = []
    for path in sorted(slides.glob("*.tiff")):
        with SlideReader(path) as reader:
            det = detect_cells(reader, assess_regions(reader, config.qc), config.detect)
            keep = subsample_index(len(det), config.max_instances, config.seed, path.stem)
            if keep is not None:
                det = det.subset(keep)
            out.append(read_crops(reader, det.xy, config.crop_um, input_px))
    return out


def run_pipeline(slides: Path, config) -> dict:
    from features.pipeline.extract import extract

    marks: dict[str, float] = {}

    def progress(event: str, **info) -> None:
        if event == "start":
            marks["start"] = time.perf_counter()

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        summary = extract(slides, Path(tmp) / "bags.zarr", config, progress=progress)
        t1 = time.perf_counter()
    assert summary.count("failed") == 0, [o.message for o in summary.outcomes if o.status == "failed"]
    return {"cells": summary.instances, "steady_s": t1 - marks["start"], "setup_s": marks["start"] - t0}


def run_bare(encoder, crops: list[np.ndarray], batch: int) -> dict:
    n = 0
    t0 = time.perf_counter()
    for slide in crops:
        for start in range(0, len(slide), batch):
            encoder.encode(slide[start : start + batch])
            n += len(slide[start : start + batch])
    return {"cells": n, "seconds": time.perf_counter() - t0}


def rss_child(slide: str, encoder: str, workers: int) -> None:
    """Runs in a subprocess: extract one big slide, print JSON with both peak RSS figures (KiB on Linux)."""
    from features.pipeline.config import ExtractConfig
    from features.pipeline.extract import extract

    cfg = ExtractConfig(
        encoder=encoder, weights=None if encoder == "cytomorph" else "random", workers=workers
    )
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        t0 = time.perf_counter()
        summary = extract(slide, Path(tmp) / "bags.zarr", cfg)
        seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "instances": summary.instances,
                "status": [o.status for o in summary.outcomes],
                "seconds": round(seconds, 1),
                "maxrss_main_kib": _peak_rss_kib(),
                "maxrss_workers_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            }
        )
    )


def _peak_rss_kib() -> int:
    """This process's own peak RSS. VmHWM rather than ru_maxrss: after fork + exec, Linux's ru_maxrss starts
    at the *parent's* RSS (a parent that generated the 20k slide held ~5 GB, which the child then reported);
    VmHWM belongs to the new address space only."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_rss(slide_px: int, encoder: str, workers: int) -> None:
    slide = next(cohort(1, slide_px).glob("*.tiff"))
    cmd = [
        sys.executable,
        __file__,
        "--rss-child",
        str(slide),
        "--encoder",
        encoder,
        "--workers",
        str(workers),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    r = json.loads(out)
    print(
        f"peak RSS, {slide_px} x {slide_px} px slide ({slide.stat().st_size / 2**20:.0f} MiB file), encoder "
        f"{encoder}, {workers} worker(s): main {r['maxrss_main_kib'] / 1024:.0f} MiB, largest worker "
        f"{r['maxrss_workers_kib'] / 1024:.0f} MiB; {r['instances']} cells in {r['seconds']} s ({r['status']})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--encoder", default="dinobloom-s")
    p.add_argument("--precision", default=None, help="default: fp32 on cpu, auto (bf16 autocast) on cuda")
    p.add_argument("--patients", type=int, default=3, help="slides (one per patient)")
    p.add_argument("--slide-px", type=int, default=6000)
    p.add_argument("--max-instances", type=int, default=None, help="cap per slide (shortens CPU runs)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=None, help="default: 1 on cpu, 8 on cuda")
    p.add_argument("--batch-size", type=int, default=None, help="default: 32 on cpu, 256 on cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads; default: cores - workers")
    p.add_argument("--rss-slide-px", type=int, default=20000)
    p.add_argument("--rss-encoder", default="cytomorph")
    p.add_argument("--no-rss", action="store_true")
    p.add_argument("--rss-only", action="store_true")
    p.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    CACHE.mkdir(exist_ok=True)
    cuda = args.device.startswith("cuda")
    workers = args.workers if args.workers is not None else (8 if cuda else 1)
    if args.rss_child:
        rss_child(args.rss_child, args.encoder, workers)
        return
    if args.rss_only:
        measure_rss(args.rss_slide_px, args.rss_encoder, workers)
        return

    import torch

    from features.encoders import create_encoder
    from features.pipeline.config import ExtractConfig

    warnings.simplefilter("ignore")  # the random-weights warning: intended here, stated in the output
    threads = args.threads or max(1, (os.cpu_count() or 1) - (0 if cuda else workers))
    torch.set_num_threads(threads)
    precision = args.precision or ("auto" if cuda else "fp32")
    weights = None if args.encoder == "cytomorph" else "random"  # cytomorph has no weights to randomise
    batch = args.batch_size or (256 if cuda else 32)
    cfg = ExtractConfig(
        encoder=args.encoder,
        weights=weights,
        device=args.device,
        precision=precision,
        workers=workers,
        batch_size=batch,
        max_instances=args.max_instances,
    )
    slides = cohort(args.patients, args.slide_px)
    encoder = create_encoder(args.encoder, weights=weights, device=args.device, precision=precision)
    crops = crops_in_memory(slides, cfg, encoder.input_px)
    run_bare(encoder, [crops[0][: min(batch, 8)]], batch)  # warm-up (kernel selection, allocator)
    label = getattr(getattr(encoder, "precision", None), "label", precision)
    print(
        f"encoder {args.encoder} ({weights or 'no'} weights, {label}) on {args.device}, {threads} torch thread(s), "
        f"{workers} loader worker(s), batch {batch}; {len(crops)} slides of {args.slide_px} px, "
        f"{sum(len(c) for c in crops)} cells"
    )
    ratios = []
    for r in range(args.rounds):
        a = run_pipeline(slides, cfg)
        b = run_bare(encoder, crops, batch)  # encode() returns host arrays: each batch is synchronised
        if a["cells"] != b["cells"]:
            raise SystemExit(f"A encoded {a['cells']} cells, B {b['cells']}: not the same crops, no ratio")
        a_rate, b_rate = a["cells"] / a["steady_s"], b["cells"] / b["seconds"]
        ratios.append(a_rate / b_rate)
        print(
            f"round {r + 1}: extract {a_rate:8.1f} cells/s ({a['cells']} cells, {a['steady_s']:.1f} s + setup "
            f"{a['setup_s']:.1f} s) | bare encoder {b_rate:8.1f} cells/s ({b['seconds']:.1f} s) | ratio {ratios[-1]:.3f}",
            flush=True,
        )
    print(
        f"median ratio extract / bare encoder: {statistics.median(ratios):.3f} (rounds: "
        f"{', '.join(f'{x:.3f}' for x in ratios)}; target >= 0.85)"
    )
    if not args.no_rss:
        measure_rss(args.rss_slide_px, args.rss_encoder, workers)


if __name__ == "__main__":
    main()
