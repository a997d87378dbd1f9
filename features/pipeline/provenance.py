"""Per-slide decisions against the bag store, and the one place a bag's provenance is assembled.

A rerun skips a complete bag only when it stands for the same input under the same settings: the same
source file (resolved path) and the same `shaping_settings` (crop size, QC/detection parameters, mpp
override, subsampling). The encoder is not compared here because the store's identity already pins it.
Anything else stops the run before any work, naming the differing settings: silently keeping bags made
another way would mix them into one training set unnoticed.

Two runs may write one store at once (two unsharded `mil extract` on one cohort): the store lets the first
writer of a bag win (`BagExists`), and the other run counts that slide as skipped when the landed bag stands
for the same input under the same settings (`write_bag`, `landed_meanwhile`), as a rerun would.

Inputs left out of a bag (an unreadable cell image or field) are one `Notice` each (`leave_out`), listed in
the bag's provenance (`BagMeta.skipped`: [file, reason]) and counted in the run's outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from features.bagstore import Bag, BagMeta, BagStore
from features.bagstore.bag import BagExists
from features.core.errors import SlideError, StoreError
from features.pipeline.config import ExtractConfig, shaping_settings
from features.pipeline.records import Notice
from features.sources.base import SlideRef, printable


@dataclass(frozen=True)
class SlideOutcome:
    slide_id: str
    patient_id: str
    source_path: str
    status: str  # "written" | "skipped" | "failed"
    message: str = ""
    instances: int = 0
    seconds: float = 0.0
    detail: str | None = None  # traceback of an unexpected error, or the inputs left out, one per line
    left_out: int = 0  # inputs of a written bag left out (unreadable images, unusable fields)


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
    repaired: list[str],
) -> list[SlideRef]:
    """Slides to (re)do; complete bags whose provenance matches are recorded as skipped. A bag made from
    another file or with other settings stops the run before any work: mixing them would go unnoticed. A
    damaged bag (unreadable metadata, a lost chunk) is removed and its slide redone; `repaired` gets its
    slide id and the damage."""
    todo = []
    for ref in refs:
        if overwrite or not bag_store.has(ref.slide_id):
            todo.append(ref)
            continue
        damage = bag_store.damage(ref.slide_id)
        if damage is not None:
            bag_store.discard(ref.slide_id)
            repaired.append(f"{ref.slide_id}: {damage}")
            todo.append(ref)
            continue
        meta = bag_store.meta(ref.slide_id)
        problem = provenance_mismatch(meta, ref, config)
        if problem:
            raise StoreError(
                f"{bag_store.path}: bag {ref.slide_id!r} was extracted from {problem}; rerun with --overwrite "
                "to replace it, or write to a new store"
            )
        outcomes.append(skipped(ref, "complete bag exists", meta.n_instances))
    return todo


def landed_meanwhile(bag_store: BagStore, ref: SlideRef, config: ExtractConfig) -> int | None:
    """Instances of the bag another run landed for this slide since this run planned it; None when there is
    none. A landed bag made from another file or with other settings is a `SlideError` (one slide fails)."""
    if not bag_store.has(ref.slide_id):
        return None
    meta = bag_store.meta(ref.slide_id)
    problem = provenance_mismatch(meta, ref, config)
    if problem:
        raise SlideError(
            ref.slide_id,
            f"another run wrote this bag meanwhile, extracted from {problem}; rerun with --overwrite to replace "
            "it",
        )
    return meta.n_instances


LANDED = "bag written meanwhile by another run"


def skipped(ref: SlideRef, message: str, instances: int) -> SlideOutcome:
    return SlideOutcome(ref.slide_id, ref.patient_id, str(ref.path), "skipped", message, instances)


def leave_out(index: int, ref: SlideRef, name: str, reason: str, strict: bool = False) -> Notice:
    """The notice that input `name` (relative to `ref.path`) is left out of the slide's bag, for `reason`;
    with `strict` (an input that cannot be read, `extract.strict`) the whole slide fails instead."""
    reason, where = " ".join(reason.split()), printable(str(ref.path / name))
    if strict:
        raise SlideError(ref.slide_id, f"{where}: {reason} (--strict: without it this input is left out)")
    return Notice(index, ref.slide_id, f"{where}: {reason}", printable(name), reason)


def write_bag(
    bag_store: BagStore,
    ref: SlideRef,
    bag: Bag,
    config: ExtractConfig,
    overwrite: bool,
    **meta_fields: Any,
) -> bool:
    """Write one bag with its provenance; `meta_fields` fill the BagMeta fields the caller knows. False when
    another run landed the same bag first (first writer wins; this run's copy is dropped)."""
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
    try:
        bag_store.write(bag, meta, overwrite=overwrite)
    except BagExists:  # another run landed this slide first: theirs stands if it is what this run would write
        if landed_meanwhile(bag_store, ref, config) is None:
            raise
        return False
    return True


def failed(ref: SlideRef, message: str, seconds: float = 0.0, detail: str | None = None) -> SlideOutcome:
    detail = printable(detail) if detail else detail
    return SlideOutcome(
        ref.slide_id,
        ref.patient_id,
        str(ref.path),
        "failed",
        printable(message),
        0,
        round(seconds, 3),
        detail,
    )


def concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if len(parts) > 1 else parts[0]
