"""What `mil bags validate` costs, by depth, against reading every feature once, measured in one run.

    python benchmarks/store_validate.py [--bags 40] [--cells 10000] [--dim 384] [--out DIR]

A synthetic store (random float32 embeddings; they compress like real ones, barely) is written once, then:
- default: metadata, provenance, shapes, every chunk on disk, the small arrays (coords, obs) decoded;
- deep (`--deep`): the same plus every feature chunk decoded (zstd checksum) and scanned for NaN/inf;
- read: every bag's features read once through `BagStore.read_features` (the floor for anything that
  decodes the data: what `mil train` pays to load the store);
- plan: the per-bag check a rerun of `mil extract` makes before skipping a bag (`BagStore.damage`).
The default's cost is set by the number of bags, deep's by the bytes: the ratio grows with the store.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from features.bagstore import Bag, BagMeta, BagStore, EncoderIdentity


def build(path: Path, bags: int, cells: int, dim: int) -> BagStore:
    encoder = EncoderIdentity("bench", "none", dim, "cells")
    store = BagStore(path, "a", encoder)
    rng = np.random.default_rng(0)
    for i in range(bags):
        features = rng.standard_normal((cells, dim), dtype=np.float32)
        coords = rng.integers(0, 100_000, (cells, 2))
        obs = {"region": rng.integers(0, 4, cells).astype(np.uint8), "in_focus": rng.random(cells) > 0.1}
        meta = BagMeta(
            f"slide{i:04d}", f"P{i:04d}", cells, encoder, f"/data/slide{i:04d}.svs", "slide", mpp=0.25
        )
        store.write(Bag(features=features, coords=coords, obs=obs), meta)
    return store


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bags", type=int, default=40)
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument(
        "--out", type=Path, default=None, help="where to build the store (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    root = Path(args.out or tempfile.mkdtemp(prefix="mil-validate-"))
    path = root / "bench.zarr"
    shutil.rmtree(path, ignore_errors=True)
    store = build(path, args.bags, args.cells, args.dim)
    gb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e9
    ids = store.slide_ids()
    # interleaved repeats, best of three: the machine is shared, each figure is its least disturbed run
    default, deep, read, plan = ([] for _ in range(4))
    for _ in range(3):
        default.append(timed(lambda: store.validate()))
        deep.append(timed(lambda: store.validate(deep=True)))
        read.append(timed(lambda: [store.read_features(s) for s in ids]))
        plan.append(timed(lambda: [store.damage(s) for s in ids]))
    result = {
        "bags": args.bags,
        "store_gb": gb,
        "default_s": min(default),
        "deep_s": min(deep),
        "read_s": min(read),
        "plan_ms_per_bag": 1000 * min(plan) / len(ids),
    }
    print(f"store: {args.bags} bags x {args.cells} cells x {args.dim} float32 = {gb:.2f} GB on disk")
    print(f"validate (default):      {result['default_s']:.3f} s")
    print(f"validate --deep:         {result['deep_s']:.3f} s ({gb / result['deep_s']:.2f} GB/s)")
    print(f"read every feature once: {result['read_s']:.3f} s")
    print(f"deep / default: {result['deep_s'] / result['default_s']:.1f}x; deep / read: "
          f"{result['deep_s'] / result['read_s']:.2f}x")  # fmt: skip
    print(f"rerun's check before skipping a bag: {result['plan_ms_per_bag']:.1f} ms per bag")
    if args.out is None:
        shutil.rmtree(root, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
