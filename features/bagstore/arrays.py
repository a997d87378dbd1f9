"""A bag's arrays on disk: written whole, and read so that damage is an error, never data.

zarr fills a chunk it cannot find with the array's fill value, so a bag that lost a chunk file (a partial
copy, a sync tool, a full disk) reads back with rows of zeros and trains as if nothing happened. Every chunk a
bag's arrays must hold is listed from the array's own metadata (shape, chunk grid, key encoding) and looked
for on disk before a read, which costs one `stat` per chunk (a bag has a handful).

Bags written since `BagMeta.every_chunk_stored` store every chunk, so a missing one is always damage. Older
bags left chunks equal to the fill value unwritten: there only `features`, `coords` and `paths` are checked (an
all-zero chunk of embeddings, of level-0 centres or of empty paths does not occur), not the `obs` columns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.metadata.v3 import ArrayV3Metadata

from features.bagstore.bag import Bag, BagMeta
from features.core.errors import StoreError

# Arrays whose chunks are never all fill value in a real bag, so they are checked in bags of any age.
ALWAYS_CHECKED = ("features", "coords", "paths")

# The fix for damage a rerun can see (unreadable metadata, a lost chunk): `plan_slides` re-extracts such a bag.
REPAIR = "rerun mil extract on it (it re-extracts damaged bags)"


def missing_chunks(metadata: ArrayV3Metadata, folder: Path) -> list[str]:
    """Keys (`c/0/0`) of the chunks an array of this metadata (stored in `folder`) must hold that are not on
    disk."""
    keys = (metadata.encode_chunk_key(c) for c in metadata.chunk_grid.all_chunk_coords(metadata.shape))
    return [key for key in keys if not (folder / key).is_file()]


def bag_arrays(group: zarr.Group, obs: bool = True) -> dict[str, zarr.Array]:
    """The bag's arrays by their path in the group (`features`, `coords`, `paths`, `obs/<name>`)."""
    arrays = {name: group[name] for name in sorted(group.array_keys())}
    if obs and "obs" in set(group.group_keys()):
        sub = group["obs"]
        arrays.update({f"obs/{name}": sub[name] for name in sorted(sub.array_keys())})
    return arrays


def array_metadata(where: str, folder: Path) -> dict[str, ArrayV3Metadata]:
    """The bag's arrays' metadata by path, as `bag_arrays` names them, parsed from their `zarr.json` files
    without opening the group (a fraction of a millisecond per array: `mil bags info` on a large store). An
    array whose metadata does not parse is one `StoreError` naming the bag, the array and the fix."""
    found: dict[str, ArrayV3Metadata] = {}
    for prefix, node in (("", folder), ("obs/", folder / "obs")):
        if prefix and not (node / "zarr.json").is_file():
            continue
        for child in sorted(node.iterdir()) if node.is_dir() else ():
            doc = child / "zarr.json"
            if not doc.is_file():
                continue
            name = prefix + child.name
            try:
                document = json.loads(doc.read_text())
                if document.get("node_type") != "array":  # the obs group, handled above
                    continue
                found[name] = ArrayV3Metadata.from_dict(document)
            except Exception as exc:  # noqa: BLE001 - JSON, OS and zarr's own parse errors mean the same here
                reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
                raise StoreError(f"{where}: {name} metadata unreadable ({reason}); {REPAIR}") from None
    return found


def check_present(
    where: str, folder: Path, arrays: dict[str, ArrayV3Metadata], every_chunk_stored: bool
) -> None:
    """Raise `StoreError` naming the bag, the array and the first missing chunk (`arrays`: metadata by path,
    from `array_metadata` or the opened arrays)."""
    for name, metadata in arrays.items():
        if not every_chunk_stored and name not in ALWAYS_CHECKED:
            continue
        gone = missing_chunks(metadata, folder / name)
        if gone:
            total = metadata.chunk_grid.get_nchunks(metadata.shape)
            raise StoreError(
                f"{where}: {name} has lost {len(gone)} of {total} chunk(s) (first: {name}/{gone[0]}); {REPAIR}"
            )


def decode(where: str, name: str, array: zarr.Array) -> np.ndarray:
    """The whole array, or `StoreError` naming the bag and the array when a chunk does not decode."""
    try:
        return array[:]
    except Exception as exc:  # noqa: BLE001 - codec errors come as several types; all mean a damaged chunk
        raise StoreError(
            f"{where}: {name} does not decode ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); "
            "re-extract the slide with --overwrite"
        ) from None


# Every chunk is written (a missing one is then always damage) and carries a zstd checksum (a damaged one
# fails to decode instead of reading back as other numbers).
_ARRAY_KW: dict[str, Any] = {
    "compressors": zarr.codecs.ZstdCodec(level=0, checksum=True),
    "config": {"write_empty_chunks": True},
}


def write_bag_group(path: Path, bag: Bag, meta: BagMeta) -> None:
    """The bag's group at `path` (a staging folder): attrs = provenance, then every array."""
    group = zarr.open_group(path, mode="w", attributes=meta.to_attrs())
    n = len(bag.features)
    chunk = max(1, min(n, 4096))
    group.create_array(
        "features",
        data=np.ascontiguousarray(bag.features, dtype=np.float32),
        chunks=(chunk, bag.features.shape[1]),
        **_ARRAY_KW,
    )
    if bag.coords is not None:
        coords = np.asarray(bag.coords, dtype=np.int64)
        group.create_array("coords", data=coords, chunks=(chunk, 2), **_ARRAY_KW)
    if bag.paths is not None:
        paths = np.asarray([str(p) for p in bag.paths], dtype=np.dtypes.StringDType())
        arr = group.create_array("paths", shape=(n,), dtype=str, chunks=(chunk,), **_ARRAY_KW)
        if n:
            arr[:] = paths
    if bag.obs:
        sub = group.create_group("obs")
        for name, values in bag.obs.items():
            sub.create_array(name, data=np.asarray(values), chunks=(chunk,), **_ARRAY_KW)


__all__ = [
    "ALWAYS_CHECKED",
    "REPAIR",
    "array_metadata",
    "bag_arrays",
    "check_present",
    "decode",
    "missing_chunks",
    "write_bag_group",
]
