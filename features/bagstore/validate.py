"""`validate_store`: every bag of a store checked, one list of problems per slide (`mil bags validate`).

Two depths, because reading the features is what costs (benchmarks/faults.py measures both):
- the default reads every bag's metadata and checks schema, provenance, shapes and that every chunk of every
  array is on disk, and decodes the small arrays (coords, paths, obs: a few bytes per instance);
- `deep` also decodes every feature chunk (a damaged one fails its zstd checksum) and looks for NaN/inf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import zarr

from features.bagstore import arrays as bag_arrays
from features.bagstore.layout import bag_key
from features.core.errors import StoreError

if TYPE_CHECKING:
    from features.bagstore.store import BagStore


def validate_store(store: BagStore, deep: bool = False) -> dict[str, list[str]]:
    """Problems per slide id (empty lists = fine); an unreadable bag is listed under its folder name."""
    problems: dict[str, list[str]] = {}
    for key in store.keys():
        slide = key
        try:
            meta = store.meta_by_key(key)
            slide = meta.slide_id
            problems[slide] = _bag_problems(store, key, meta, deep)
        except StoreError as exc:
            problems[slide] = [str(exc)]
    return problems


def _bag_problems(store: BagStore, key: str, meta, deep: bool) -> list[str]:
    found: list[str] = []
    if bag_key(meta.slide_id) != key:
        found.append(f"folder {key!r} does not match slide id {meta.slide_id!r}")
    if meta.encoder != store.encoder:
        found.append(f"encoder {meta.encoder.describe()} differs from the store's")
    folder = store.path / "bags" / key
    where = f"{store.path}: bag {meta.slide_id!r}"
    try:
        arrays = bag_arrays.bag_arrays(zarr.open_group(folder, mode="r"))
    except Exception as exc:  # noqa: BLE001 - report any unreadable bag as a problem, keep going
        return [*found, f"unreadable ({type(exc).__name__}: {exc}); {bag_arrays.REPAIR}"]
    if "features" not in arrays:
        return [*found, f"has no features array; {bag_arrays.REPAIR}"]
    try:
        on_disk = {name: array.metadata for name, array in arrays.items()}
        bag_arrays.check_present(where, folder, on_disk, meta.every_chunk_stored)
    except StoreError as exc:
        return [*found, str(exc).removeprefix(f"{where}: ")]
    n, d = arrays["features"].shape
    if n != meta.n_instances:
        found.append(f"{n} feature rows, provenance says {meta.n_instances}")
    if d != store.encoder.dim:
        found.append(f"features are {d}-d, store is {store.encoder.dim}-d")
    if n == 0:
        found.append("empty bag (no instances)")
    if "coords" not in arrays and "paths" not in arrays:
        found.append("neither coords nor paths: instances cannot be located")
    for name, array in arrays.items():
        if name != "features" and array.shape[:1] != (n,):
            found.append(f"{name} has {array.shape[0]} rows, features has {n}")
    small = [name for name in arrays if name != "features"] + (["features"] if deep else [])
    for name in small:
        try:
            values = bag_arrays.decode(where, name, arrays[name])
        except StoreError as exc:
            found.append(str(exc).removeprefix(f"{where}: "))
            continue
        if name == "features" and not np.isfinite(values).all():
            found.append(f"{int((~np.isfinite(values)).any(axis=1).sum())} instances with NaN/inf")
    return found


__all__ = ["validate_store"]
