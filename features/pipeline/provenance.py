"""Per-slide decisions against the bag store, and the one place a bag's provenance is assembled.

A rerun skips a complete bag only when it stands for the same input under the same settings: the same
source file (resolved path) and the same `shaping_settings` (crop size, QC/detection parameters, mpp
override, subsampling). The encoder is not compared here because the store's identity already pins it.
Anything else stops the run before any work, naming the differing settings: silently keeping bags made
another way would mix them into one training set unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from features.bagstore import Bag, BagMeta, BagStore
from features.core.errors import StoreError
from features.pipeline.config import ExtractConfig, shaping_settings
from features.sources.base import SlideRef


@dataclass(frozen=True)
class SlideOutcome:
    slide_id: str
    patient_id: str
    source_path: str
    status: str  # "written" | "skipped" | "failed"
    message: str = ""
    instances: int = 0
    seconds: float = 0.0
    detail: str | None = None  # traceback of an unexpected error (run record only; the message is one line)


def source_stat(ref: SlideRef) -> tuple[int | None, float | None]:
    """Size in bytes and mtime of the input: the file, or for a cell or field folder the sum/latest over its
    images."""
    try:
        if ref.kind in ("cells", "fields"):
            stats = [(ref.path / name).stat() for name in ref.images]
            return sum(s.st_size for s in stats), max((s.st_mtime for s in stats), default=None)
        st = ref.path.stat()
        return st.st_size, st.st_mtime
    except OSError:
        return None, None


def provenance_mismatch(meta: BagMeta, ref: SlideRef, config: ExtractConfig) -> str | None:
    """Why an existing bag does not stand for this input under these settings (None: it does)."""
    if meta.source_path != str(ref.path.resolve()):
        return f"source {meta.source_path} (this run: {ref.path.resolve()})"
    before = meta.settings.get("shaping")
    now = shaping_settings(config, ref.kind)
    if before != now:
        keys = sorted(k for k in set(before or {}) | set(now) if (before or {}).get(k) != now.get(k))
        return (
            "other settings ("
            + ", ".join(f"{k}: {(before or {}).get(k)!r} -> {now.get(k)!r}" for k in keys)
            + ")"
        )
    return None


def plan_slides(
    refs: list[SlideRef],
    bag_store: BagStore,
    config: ExtractConfig,
    overwrite: bool,
    outcomes: list[SlideOutcome],
) -> list[SlideRef]:
    """Slides to (re)do; complete bags whose provenance matches are recorded as skipped. A bag made from
    another file or with other settings stops the run before any work: mixing them would go unnoticed."""
    todo = []
    for ref in refs:
        if overwrite or not bag_store.has(ref.slide_id):
            todo.append(ref)
            continue
        meta = bag_store.meta(ref.slide_id)
        problem = provenance_mismatch(meta, ref, config)
        if problem:
            raise StoreError(
                f"{bag_store.path}: bag {ref.slide_id!r} was extracted from {problem}; rerun with --overwrite "
                "to replace it, or write to a new store"
            )
        outcomes.append(
            SlideOutcome(
                ref.slide_id,
                ref.patient_id,
                str(ref.path),
                "skipped",
                "complete bag exists",
                meta.n_instances,
            )
        )
    return todo


def write_bag(
    bag_store: BagStore,
    ref: SlideRef,
    bag: Bag,
    config: ExtractConfig,
    overwrite: bool,
    **meta_fields: Any,
) -> None:
    """Write one bag with its provenance; `meta_fields` fill the BagMeta fields the caller knows."""
    size, mtime = source_stat(ref)
    extra = meta_fields.pop("settings", {})
    meta = BagMeta(
        slide_id=ref.slide_id,
        patient_id=ref.patient_id,
        n_instances=len(bag.features),
        encoder=bag_store.encoder,
        source_path=str(ref.path.resolve()),
        source_kind=ref.kind,
        source_size=size,
        source_mtime=mtime,
        settings={
            "shaping": shaping_settings(config, ref.kind),
            "extract": config.model_dump(mode="json"),
            **extra,
        },
        **meta_fields,
    )
    bag_store.write(bag, meta, overwrite=overwrite)


def failed(ref: SlideRef, message: str, seconds: float = 0.0, detail: str | None = None) -> SlideOutcome:
    return SlideOutcome(
        ref.slide_id, ref.patient_id, str(ref.path), "failed", message, 0, round(seconds, 3), detail
    )


def concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if len(parts) > 1 else parts[0]
