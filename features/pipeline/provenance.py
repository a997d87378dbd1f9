"""Per-slide decisions against the bag store, and the one place a bag's provenance is assembled.

A rerun skips a complete bag only when it stands for the same input under the same settings: the same
source file (resolved path) and the same `shaping_settings` (crop size, QC/detection parameters, mpp
override, subsampling). The encoder is not compared here because the store's identity already pins it.
Anything else stops the run before any work, naming the differing settings: silently keeping bags made
another way would mix them into one training set unnoticed.

Two runs may write one store at once (two unsharded `mil extract` on one cohort): the store lets the first
writer of a bag win (`BagExists`), and the other run counts that slide as skipped when the landed bag stands
for the same input under the same settings (`write_bag`, `landed_meanwhile`), as a rerun would.

A slide is one bag: a run that would add a bag for a source the store already holds under another slide id
(a slide renamed because a same-named file turned up elsewhere, an id changed in a manifest) stops before any
work (`same_source_elsewhere`); the store would otherwise hold one slide twice, as two patients. A source
that changed since its bag was extracted (another file size; for cell and field folders another number, set or
total size of images) fails alone instead of being skipped (`source_change`), its bag untouched; `--overwrite`
re-extracts it. A changed mtime alone is no change: copying a cohort resets it.

Inputs left out of a bag (an unreadable cell image or field) are one `Notice` each (`leave_out`), listed in
the bag's provenance (`BagMeta.skipped`: [file, reason]) and counted in the run's outcomes.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
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


def image_set(ref: SlideRef, size: int | None) -> dict[str, Any] | None:
    """What a cell or field folder held (number of images, their total bytes, a digest of their names), kept
    in the bag's `settings["source_images"]`; None for a slide or h5 file."""
    if ref.kind not in ("cells", "fields"):
        return None
    names = hashlib.sha256("\n".join(ref.images).encode("utf-8", "surrogateescape")).hexdigest()
    return {"images": len(ref.images), "bytes": size, "names_sha256": names}


def source_change(meta: BagMeta, ref: SlideRef) -> str | None:
    """How the input changed since its bag was extracted ("<then> then, <now> now"), or None when it did not
    (or nothing tells: an older bag without the record, a source that cannot be read now). Sizes and the
    image set only: an mtime also changes when a cohort is copied."""
    size, _ = source_stat(ref)
    if size is None or meta.source_size is None:
        return None
    before = meta.settings.get("source_images")
    now = image_set(ref, size)
    if isinstance(before, dict) and now is not None:
        if before == now:
            return None
        then_text = f"{before.get('images')} images, {_bytes(before.get('bytes'))}"
        now_text = f"{now['images']} images, {_bytes(size)}"
        if then_text == now_text:
            now_text += ", other file names"
        return f"{then_text} then; {now_text} now"
    if meta.source_size == size:
        return None
    return f"{_bytes(meta.source_size)} then, {_bytes(size)} now"


def _bytes(n: int | None) -> str:
    return "? bytes" if n is None else f"{n:,} bytes"


def _source_key(path: str, kind: str, names: str | None) -> tuple[str, str] | None:
    # A field bag from a manifest is named by the folder holding its rows, which another patient's rows may
    # share: its source is that folder and its image names (None for older field bags, which lack them).
    if kind == "fields":
        return (path, names) if names else None
    return (path, "")


def same_source_elsewhere(refs: list[SlideRef], bag_store: BagStore) -> None:
    """Refuse (`StoreError`) a run that would add a bag for a source the store holds under another slide id:
    the store would hold that slide twice. Checked before any work; bags this run keeps or replaces under
    their own id are not concerned."""
    new = [ref for ref in refs if not bag_store.has(ref.slide_id)]
    if not new:
        return
    held: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key in bag_store.keys():
        try:
            meta = bag_store.meta_by_key(key)
        except StoreError:  # damaged metadata: repaired when a run names that slide
            continue
        listed = meta.settings.get("source_images")
        names = listed.get("names_sha256") if isinstance(listed, dict) else None
        source = _source_key(meta.source_path, meta.source_kind, names)
        if source is not None:
            held[source].append(meta.slide_id)
    for ref in new:
        try:
            path = str(ref.path.resolve())
        except (OSError, RuntimeError):  # a symlink loop: no bag's source; the slide fails when opened
            continue
        listed = image_set(ref, None)
        source = _source_key(path, ref.kind, listed and listed["names_sha256"])
        others = sorted(held.get(source, ())) if source else []
        if others:
            raise StoreError(
                f"{bag_store.path}: {printable(str(ref.path))} is already in the store as slide {others[0]!r}, "
                f"this run names it {ref.slide_id!r} (the store would hold it twice); give each slide its id "
                "with a CSV manifest (slide_id, path), or extract into a new store"
            )


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
    another file or with other settings, or a source the store holds under another id, stops the run before
    any work: mixing them would go unnoticed. A source changed since its bag was extracted fails alone (its
    bag kept; `--overwrite` redoes it). A damaged bag (unreadable metadata, a lost chunk) is removed and its
    slide redone; `repaired` gets its slide id and the damage."""
    same_source_elsewhere(refs, bag_store)
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
        change = source_change(meta, ref)
        if change:
            message = f"{ref.slide_id}: changed since it was extracted ({change}); pass --overwrite to re-extract it"
            outcomes.append(failed(ref, message))
            continue
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
    images = image_set(ref, size)
    if images is not None:
        extra = {**extra, "source_images": images}
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
