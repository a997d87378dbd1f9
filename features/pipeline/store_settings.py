"""A store's one extraction setting: what, beside the encoder, makes two bags' features comparable.

The encoder identity (name, weights digest, dim, unit) is pinned in the store's root attrs since schema 2;
crop size and the rest were only recorded per bag, so slides cropped at 32 µm could join bags cropped at
24 µm and train together unnoticed. The setting is recorded beside the identity when the store is created
(`BagStore(..., extraction=...)`), every later run must bring the same one (else one line naming the
differences, before any work), and `mil train` records it in the run so `mil predict` and `mil heatmap`
refuse a store made otherwise (`mil.training.store_check`).

What it holds: the unit; the crop (µm and the encoder's input px) or the tile (µm, regions); region QC and
nucleated-cell detection parameters; the microscope fields' mpp policy (red-cell ruler, pooling scope,
bounds: `extract.fields`); the per-slide cap and its seed. Not the mpp override (`--mpp`, a manifest row):
that states a fact about particular slides, and a run may legitimately give it for some slides only. Imported
.h5 features carry their own tiling; their setting is only where they came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from features.bagstore import BagMeta, BagStore, EncoderIdentity
from features.bagstore.layout import json_safe
from features.core.errors import StoreError
from features.pipeline.config import ExtractConfig

IMPORTED = {"source": "h5"}


def store_settings(config: ExtractConfig, crop_px: int | None) -> dict[str, Any]:
    """The setting of an encoding run (JSON types, as the store records it)."""
    out: dict[str, Any] = {"unit": config.unit, "crop_px": crop_px}
    if config.unit == "cells":
        out.update(crop_um=config.crop_um, detect=config.detect.model_dump(mode="json"))
    else:
        out.update(tile_um=config.tile_um, tile_regions=list(config.regions_tiled))
    out.update(
        qc=config.qc.model_dump(mode="json"),
        fields=config.fields.model_dump(mode="json"),
        max_instances=config.max_instances,
    )
    if config.max_instances is not None:
        out["seed"] = config.seed
    return json_safe(out)


def settings_of_bag(meta: BagMeta) -> dict[str, Any] | None:
    """The setting a bag was made with, from its provenance (stores and runs that predate the record); None
    for a bag that does not say (written through the `BagStore` API, not by `extract`)."""
    if meta.source_kind == "h5":
        return dict(IMPORTED)
    recorded = meta.settings.get("extract")
    if recorded is None:
        return None
    try:
        config = ExtractConfig.model_validate(recorded)
    except ValueError as exc:
        raise StoreError(
            f"bag {meta.slide_id!r}: its recorded extraction settings no longer validate "
            f"({' '.join(str(exc).split())[:120]}); re-extract into a new store"
        ) from None
    return store_settings(config, meta.crop_px)


def differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """`key: old -> new` for every setting that differs (nested sections as dotted keys)."""
    flat_before, flat_now = _flatten(before), _flatten(now)
    keys = sorted(set(flat_before) | set(flat_now))
    return [
        f"{k}: {flat_before.get(k)!r} -> {flat_now.get(k)!r}"
        for k in keys
        if flat_before.get(k) != flat_now.get(k)
    ]


def describe_differences(before: dict[str, Any], now: dict[str, Any], most: int = 4) -> str:
    diff = differences(before, now)
    return "; ".join(diff[:most]) + (f"; and {len(diff) - most} more" if len(diff) > most else "")


def effective_settings(store: BagStore) -> dict[str, Any] | None:
    """The store's recorded setting, else (older stores) the one its bags agree on; None when nothing says
    (an empty store, or bags written through the API). Bags that disagree are a `StoreError`: such a store
    is already mixed."""
    if store.extraction is not None:
        return store.extraction
    first: tuple[str, dict[str, Any]] | None = None
    for meta in store.metas():
        settings = settings_of_bag(meta)
        if settings is None:
            continue
        if first is None:
            first = (meta.slide_id, settings)
        elif settings != first[1]:
            raise StoreError(
                f"{store.path}: its bags were extracted with different settings ({first[0]!r} vs "
                f"{meta.slide_id!r}: {describe_differences(first[1], settings)}); re-extract into a new store"
            )
    return first[1] if first else None


def open_store(path: str | Path, identity: EncoderIdentity, settings: dict[str, Any]) -> BagStore:
    """Open (or create) the store for a run with this encoder and setting; another setting is refused in one
    line, before any work. A store that predates the record gets the setting its bags agree on (or, empty,
    this run's)."""
    store = BagStore(path, "a", identity, settings)
    if store.extraction is None:
        store.record_extraction(effective_settings(store) or settings)
    if store.extraction != settings:
        raise StoreError(
            f"{store.path}: the store's bags were extracted with other settings "
            f"({describe_differences(store.extraction, settings)}); a store holds one extraction setting: "
            "write to a new store, or rerun with the store's settings"
        )
    return store


def _flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


__all__ = [
    "IMPORTED",
    "describe_differences",
    "differences",
    "effective_settings",
    "open_store",
    "settings_of_bag",
    "store_settings",
]
