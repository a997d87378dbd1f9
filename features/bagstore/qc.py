"""Per-slide QC in the store: `STORE/qc/<key>/`, a zarr group (attrs = summary; arrays = overview and maps).

The extraction's worker writes a slide's QC several times as the slide advances (detected, then with the
overview once the crops are out, or failed with the error): each write builds the whole group in staging and
swaps it in, so a reader sees one complete version. A thumbnail or map not given is carried over from the
previous version: the overview is drawn after detection, and a failure after that must not lose it.

Every failed slide has an entry (`write_failed_qc`), also one that failed before QC could look at it (it
could not be opened or read, had no usable mpp, its manifest row names a missing file): then the entry is
just `status: failed` and the error. Such a bare failure never replaces what an earlier run found out: a
slide with a bag in the store, or whose QC an earlier run completed, keeps its QC (the run's record and
summary still name the failure).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from features.bagstore.layout import BAGS, QC, bag_key, json_safe, land, remove, staging_path

THUMBNAIL = "thumbnail"
# Statuses of a QC that an earlier run completed (slides: crops cut; cell folders: images read).
COMPLETED = ("cropped", "read")


@dataclass
class SlideQC:
    """What QC says about one slide: a JSON-able summary, an RGB overview for a person, and QC maps."""

    summary: dict[str, Any]  # status, region areas, counts, focus, error ...
    thumbnail: np.ndarray | None = None  # H x W x 3 uint8
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. "regions": h x w uint8 region codes
    map_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. level-0 px per map px

    def __post_init__(self) -> None:
        if self.thumbnail is not None:
            t = self.thumbnail
            if t.ndim != 3 or t.shape[2] != 3 or t.dtype != np.uint8:
                raise ValueError(f"thumbnail must be H x W x 3 uint8, got {t.shape} {t.dtype}")
        if THUMBNAIL in self.maps:
            raise ValueError(f"{THUMBNAIL!r} is the overview's name, not a map name")


def write_qc(store: Path, slide_id: str, qc: SlideQC) -> None:
    key = bag_key(slide_id)
    final = store / QC / key
    staged = staging_path(store, QC, key)
    try:
        group = zarr.open_group(staged, mode="w", attributes=json_safe({"slide_id": slide_id, **qc.summary}))
        arrays = dict(qc.maps)
        if qc.thumbnail is not None:
            arrays[THUMBNAIL] = np.ascontiguousarray(qc.thumbnail)
        for name, values in arrays.items():
            values = np.asarray(values)
            group.create_array(  # one chunk: QC images are small and always read whole
                name,
                data=values,
                chunks=tuple(max(1, n) for n in values.shape),
                attributes=json_safe(qc.map_attrs.get(name, {})),
            )
        _carry_over(final, staged, set(arrays))
        land(staged, final, replace=True)
    except BaseException:
        remove(staged)
        raise


def write_failed_qc(store: Path, slide_id: str, error: str, summary: dict[str, Any] | None = None) -> bool:
    """Record in the slide's QC that it failed with `error`; False when the entry was left as it was.

    `summary`: what QC found in this run before the failure; it replaces the entry (overview and maps
    carried over). Without one (the slide failed before QC), the entry becomes `{status: failed, error}`
    unless the slide has a bag or an earlier run's completed QC: a bare failure never replaces those."""
    if summary is None:
        earlier = qc_summary(store, slide_id) or {}
        if (store / BAGS / bag_key(slide_id) / "zarr.json").is_file() or earlier.get("status") in COMPLETED:
            return False
    summary = {k: v for k, v in (summary or {}).items() if k != "slide_id"}
    write_qc(store, slide_id, SlideQC({**summary, "status": "failed", "error": error}))
    return True


def qc_summary(store: Path, slide_id: str) -> dict[str, Any] | None:
    """The slide's QC summary as stored (None: no entry, or one whose metadata cannot be read); cheap, one
    small JSON file."""
    try:
        attrs = json.loads((store / QC / bag_key(slide_id) / "zarr.json").read_text())["attributes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return attrs if isinstance(attrs, dict) else None


def _carry_over(final: Path, staged: Path, replaced: set[str]) -> None:
    """Copy into `staged` the arrays of the landed version that this one does not replace (as stored: no decode).

    Another run writing the same slide's QC can land its version while we copy (two unsharded runs on one
    store): the old folder is renamed away under us. Then start again from the version now in place."""
    if not final.exists():
        return
    for attempt in range(8):
        copied: list[str] = []
        try:
            for name in sorted(set(zarr.open_group(final, mode="r").array_keys()) - replaced):
                copied.append(name)
                shutil.copytree(final / name, staged / name)
            return
        except (FileNotFoundError, shutil.Error):
            for name in copied:
                remove(staged / name)
            # a landing leaves `final` absent between its two renames: wait that out before giving up on it
            time.sleep(0.01 * (attempt + 1))
            if not final.exists():
                return  # nothing landed any more: nothing to carry over
    raise RuntimeError(f"{final}: other writers kept replacing it while its QC was being carried over")


def qc_keys(store: Path) -> list[str]:
    folder = store / QC
    return sorted(p.name for p in folder.iterdir() if (p / "zarr.json").is_file()) if folder.is_dir() else []


def read_qc(store: Path, key: str, images: bool = True) -> SlideQC:
    group = zarr.open_group(store / QC / key, mode="r")
    qc = SlideQC(group.attrs.asdict())
    if images:
        for name in sorted(group.array_keys()):
            array = group[name]
            if name == THUMBNAIL:
                qc.thumbnail = array[:]
            else:
                qc.maps[name] = array[:]
                qc.map_attrs[name] = array.attrs.asdict()
    return qc
