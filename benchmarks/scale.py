"""Scaling out on Ray: the Ray engines against the local ones on the same data, interleaved in one run.

    python benchmarks/scale.py extract  [--slides 20 --slide-px 4000 --loaders 2 --rounds 2]
    python benchmarks/scale.py loaders  [--slides 20 --slide-px 4000 --rounds 2]
    python benchmarks/scale.py train    [--patients 60 --cells 200 --witness 0.1 --folds 5 --epochs 40 --rounds 2]
    python benchmarks/scale.py gpu      [--slides 24 --slide-px 6000 --loaders 14]   # device machine only

extract: `extract()` on the same synthetic slides with the local engine (`--loaders` loader processes, the
encoder in this process) and with `RayEngine` (`--loaders` loader tasks, one encoder actor), cytomorph,
arms alternating round by round: `ray-cold` starts and stops Ray inside the run (what one `mil extract
--engine ray` on one machine pays), `ray-warm` finds Ray already running (a cluster). Overhead = Ray wall
time / local wall time - 1. After the first round the stores are compared: same slide set, same coords and
obs, features within float tolerance.

loaders: Ray with 1 then 2 loader tasks (one cytomorph encoder actor, Ray already running), interleaved:
the CPU side of the pipeline (decode, QC, detection, cropping) should scale with the loaders it is given.

train: `train_cv` 5-fold CV of the default head on a synthetic cell cohort (cytomorph bags), local engine vs
`RayFoldEngine` (one CPU per fold task, folds in parallel), interleaved; metrics must be equal.

gpu: on a machine with a GPU (the issue's H200 with 16 cores): `RayEngine` with `--loaders` loader tasks and
one encoder actor on the GPU vs the bare encoder on the very crops it encodes (`benchmarks/extract.py`'s
`crops_in_memory` and `run_bare`), DinoBloom-S-shaped ViT with random weights, bf16 autocast; goal >= 0.9x.
`--device cpu` runs the same code on the CPU (a check that the script works, not a figure).

Timings on the shared 2-core development machine swing with the other jobs on it: each comparison
interleaves its arms in one run and prints every round, the load average and the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a Ray started here binds to loopback

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from extract import CACHE, cohort, crops_in_memory, run_bare  # noqa: E402

from features.pipeline.config import ExtractConfig  # noqa: E402


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


_STARTED: list[bool] = []  # whether start_ray started the Ray that stop_ray should stop


def start_ray(num_cpus: int, num_gpus: int | None = None) -> None:
    """Ray running before the run, as on a cluster (an already running Ray is used as it is)."""
    import ray

    _STARTED[:] = [not ray.is_initialized()]
    if _STARTED[0]:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")  # fmt: skip


def stop_ray() -> None:
    import ray

    if _STARTED and _STARTED[0] and ray.is_initialized():
        ray.shutdown()
    _STARTED[:] = []


def timed_extract(slides: Path, store: Path, config: ExtractConfig, engine: Any = None) -> dict[str, Any]:
    from features.pipeline.extract import extract

    t0 = time.perf_counter()
    summary = extract(slides, store, config, engine=engine)
    seconds = time.perf_counter() - t0
    failed = [o.message for o in summary.outcomes if o.status != "written"]
    assert not failed, failed
    return {"seconds": seconds, "cells": summary.instances, "slides": len(summary.outcomes)}


def compare_stores(a: Path, b: Path) -> dict[str, Any]:
    from features.bagstore import BagStore

    sa, sb = BagStore(a), BagStore(b)
    same_set = sa.slide_ids() == sb.slide_ids()
    worst, coords, obs = 0.0, True, True
    for sid in sa.slide_ids() if same_set else []:
        x, y = sa.read(sid), sb.read(sid)
        worst = max(worst, float(np.abs(x.features - y.features).max()))
        coords &= bool((x.coords == y.coords).all())
        obs &= all(bool((x.obs[k] == y.obs[k]).all()) for k in x.obs)
    return {"same_slides": same_set, "max_abs_feature_diff": worst, "same_coords": coords, "same_obs": obs}


def bench_extract(args: argparse.Namespace) -> None:
    from features.pipeline.engines.ray_extract import RayEngine, RayOptions

    slides = cohort(args.slides, args.slide_px)
    config = ExtractConfig(encoder="cytomorph", workers=args.loaders)
    options = RayOptions(loaders=args.loaders, encoders=1)
    arms = ["local", "ray-cold", "ray-warm"]
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    print(
        f"extract: {args.slides} slides of {args.slide_px} px, cytomorph, {args.loaders} loaders; load {load()}"
    )
    for r in range(args.rounds):
        order = arms if r % 2 == 0 else arms[::-1]
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            for arm in order:
                if arm == "ray-warm":
                    start_ray(args.loaders + 1)
                try:
                    engine = None if arm == "local" else RayEngine(options)
                    result = timed_extract(slides, Path(tmp) / f"{arm}.zarr", config, engine)
                finally:
                    stop_ray()
                times[arm].append(result["seconds"])
                print(f"  round {r + 1} {arm:9s} {result['seconds']:7.1f} s  {result['cells'] / result['seconds']:6.1f} "
                      f"cells/s  ({result['cells']} cells; load {load()})",
                      flush=True)  # fmt: skip
            if r == 0:
                print(
                    "  local vs ray-cold stores:",
                    compare_stores(Path(tmp) / "local.zarr", Path(tmp) / "ray-cold.zarr"),
                )
    for arm in ("ray-cold", "ray-warm"):
        ratios = [b / a - 1 for a, b in zip(times["local"], times[arm], strict=True)]
        print(f"  overhead {arm}: per round {', '.join(f'{x:+.1%}' for x in ratios)}; median "
              f"{statistics.median(ratios):+.1%} (goal <= +15 %)")  # fmt: skip


def bench_loaders(args: argparse.Namespace) -> None:
    """One Ray (3 logical CPUs) for every arm, its loader workers warmed by a first run on 2 slides, so the
    arms differ only in the loader tasks allowed at once (the encoder actor starts anew in each run)."""
    from features.pipeline.engines.ray_extract import RayEngine, RayOptions

    slides = cohort(args.slides, args.slide_px)
    config = ExtractConfig(encoder="cytomorph")
    rates: dict[int, list[float]] = {1: [], 2: []}
    print(f"loaders: {args.slides} slides of {args.slide_px} px, cytomorph, Ray running; load {load()}")
    start_ray(3)
    try:
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            warm = Path(tmp) / "warm"
            warm.mkdir()
            for path in sorted(slides.glob("*.tiff"))[:2]:
                (warm / path.name).symlink_to(path)
            timed_extract(warm, Path(tmp) / "warm.zarr", config, RayEngine(RayOptions(loaders=2, encoders=1)))
        for r in range(args.rounds):
            for loaders in (1, 2) if r % 2 == 0 else (2, 1):
                with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                    engine = RayEngine(RayOptions(loaders=loaders, encoders=1))
                    result = timed_extract(slides, Path(tmp) / "bags.zarr", config, engine)
                rates[loaders].append(result["cells"] / result["seconds"])
                print(f"  round {r + 1} {loaders} loader(s) {result['seconds']:7.1f} s, {rates[loaders][-1]:6.1f} "
                      f"cells/s  (load {load()})", flush=True)  # fmt: skip
    finally:
        stop_ray()
    ratios = [b / a for a, b in zip(rates[1], rates[2], strict=True)]
    print(f"  2 vs 1 loaders, cells/s: per round {', '.join(f'{x:.2f}x' for x in ratios)}; median "
          f"{statistics.median(ratios):.2f}x")  # fmt: skip


def bench_train(args: argparse.Namespace) -> None:
    from features.pipeline.extract import extract
    from features.synth import SynthConfig, generate_cohort
    from mil.config import EvaluateConfig, load_config
    from mil.training.engines.ray_folds import RayFoldEngine
    from mil.training.train import train_cv

    root = CACHE / f"scale-train-{args.patients}x{args.cells}-w{args.witness}"
    if not (root / "bags.zarr").exists():
        print(
            f"generating {args.patients} patients x {args.cells} cells and their cytomorph bags in {root} ..."
        )
        generate_cohort(
            root / "cohort",
            SynthConfig(
                patients=args.patients, layout="cells", cells_per_patient=args.cells, witness=args.witness
            ),
        )
        extract(root / "cohort" / "cells", root / "bags.zarr", ExtractConfig(encoder="cytomorph"))
    base = load_config("apl_aml_healthy").train
    config = base.model_copy(update={"folds": args.folds, "epochs": args.epochs, "device": "cpu"})
    evaluate = EvaluateConfig(n_bootstrap=200)
    print(f"train: {args.patients} patients, {args.folds}-fold CV, head {config.head}, {args.epochs} epochs max; "
          f"load {load()}")  # fmt: skip
    arms = ["local", "ray-cold", "ray-warm"]
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    predictions: dict[str, bytes] = {}
    import torch

    for r in range(args.rounds):
        for arm in arms if r % 2 == 0 else arms[::-1]:
            torch.set_num_threads(1)  # the Ray tasks' thread count: the same float sums, the same predictions
            if arm == "ray-warm":
                start_ray(os.cpu_count() or 1)
            try:
                with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                    engine = None if arm == "local" else RayFoldEngine()
                    t0 = time.perf_counter()
                    summary = train_cv(root / "bags.zarr", root / "cohort" / "labels.csv", config,
                                       Path(tmp) / "run", evaluate=evaluate, engine=engine)  # fmt: skip
                    times[arm].append(time.perf_counter() - t0)
                    predictions.setdefault(arm, (Path(tmp) / "run" / "predictions.csv").read_bytes())
            finally:
                stop_ray()
            print(
                f"  round {r + 1} {arm:8s} {times[arm][-1]:6.1f} s  {summary.headline}  (load {load()})",
                flush=True,
            )
    same = len(set(predictions.values())) == 1
    print(f"  identical predictions.csv in all arms (so identical metrics): {same}")
    for arm in ("ray-cold", "ray-warm"):
        ratios = [b / a for a, b in zip(times["local"], times[arm], strict=True)]
        print(f"  {arm} / local wall time per round {', '.join(f'{x:.2f}x' for x in ratios)}")


def bench_gpu(args: argparse.Namespace) -> None:
    """Ray (loaders + one encoder actor) vs the bare encoder on the same crops, rounds interleaved."""
    import torch

    from features.encoders import create_encoder
    from features.pipeline.engines.ray_extract import RayEngine, RayOptions

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("gpu: no CUDA device here; run it on the device machine (or pass --device cpu)")
    warnings.simplefilter("ignore")  # random weights: intended, stated below
    slides = cohort(args.slides, args.slide_px)
    precision = "auto" if cuda else "fp32"
    weights = None if args.encoder == "cytomorph" else "random"  # cytomorph has no weights to randomise
    config = ExtractConfig(encoder=args.encoder, weights=weights, device=args.device, precision=precision,
                           batch_size=args.batch_size, max_instances=args.max_instances)  # fmt: skip
    encoder = create_encoder(args.encoder, weights=weights, device=args.device, precision=precision)
    crops = crops_in_memory(slides, config, encoder.input_px)
    print(f"gpu: {args.slides} slides of {args.slide_px} px, {sum(map(len, crops))} crops, {args.encoder} (random "
          f"weights, {encoder.precision.label}) on {args.device}; Ray: {args.loaders} loaders + 1 encoder actor")  # fmt: skip
    run_bare(
        encoder, [c[: args.batch_size] for c in crops[:1]], args.batch_size
    )  # warm-up (kernels, autotune)
    options = RayOptions(loaders=args.loaders, encoders=1, gpus_per_encoder=1 if cuda else 0)
    start_ray(args.loaders + 1, 1 if cuda else 0)  # Ray running, as on a cluster
    ratios = []
    try:
        for r in range(args.rounds):
            bare = run_bare(encoder, crops, args.batch_size)
            bare_rate = bare["cells"] / bare["seconds"]
            with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                result = timed_extract(slides, Path(tmp) / "bags.zarr", config, RayEngine(options))
            ray_rate = result["cells"] / result["seconds"]
            ratios.append(ray_rate / bare_rate)
            print(f"  round {r + 1}: bare {bare_rate:8.1f} cells/s, Ray end to end {ray_rate:8.1f} cells/s, "
                  f"ratio {ratios[-1]:.3f}", flush=True)  # fmt: skip
    finally:
        stop_ray()
    print(
        f"  median ratio {statistics.median(ratios):.3f} (goal >= 0.9; local engine on the H200: 0.077-0.081)"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["extract", "loaders", "train", "gpu"])
    p.add_argument("--slides", type=int, default=None, help="default: 20; gpu: 24")
    p.add_argument("--slide-px", type=int, default=None, help="default: 4000; gpu: 6000")
    p.add_argument("--loaders", type=int, default=None, help="default: 2; gpu: 14")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--patients", type=int, default=60)
    p.add_argument("--cells", type=int, default=200)
    p.add_argument("--witness", type=float, default=0.1, help="train: share of disease-defining cells kept")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--device", default="cuda")
    p.add_argument("--encoder", default="dinobloom-s")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-instances", type=int, default=None)
    args = p.parse_args(argv)
    gpu = args.what == "gpu"
    args.slides = args.slides or {"extract": 20, "loaders": 20, "gpu": 24}.get(args.what, 0)
    args.slide_px = args.slide_px or (6000 if gpu else 4000)
    args.loaders = args.loaders or (14 if gpu else 2)
    CACHE.mkdir(exist_ok=True)
    {"extract": bench_extract, "loaders": bench_loaders, "train": bench_train, "gpu": bench_gpu}[args.what](
        args
    )


if __name__ == "__main__":
    main()
