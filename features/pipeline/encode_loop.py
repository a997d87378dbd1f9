"""The main-process half of extraction: encode each crop chunk as it arrives, write each bag when complete.

Records from `features.pipeline.loader` arrive interleaved across slides (one slide per worker at a time);
features are accumulated per slide (they are small: 100k cells x 384 float32 = 150 MB at most, while the
crops that made them were streamed) and written in one atomic `BagStore.write` on the slide's
`SlideFinished` record. A slide that fails midway (`SlideFailed`, or a store error at write time) drops what
was accumulated, so nothing partial ever reaches the store. A write the file system refuses (a full disk,
permissions, a name too long) fails that slide in one line; the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.bagstore import Bag, BagStore, EncoderIdentity
from features.core.errors import MilError, SlideError
from features.pipeline.config import ExtractConfig
from features.pipeline.loader import iterate_records
from features.pipeline.provenance import LANDED, SlideOutcome, concat, failed, skipped, write_bag
from features.pipeline.records import (
    CropChunk,
    Notice,
    SlideFailed,
    SlideFinished,
    SlideSkipped,
    SlideStarted,
    Stage,
)
from features.pipeline.slide_job import SlideJob
from features.sources.base import SlideRef


@dataclass
class _Pending:
    """One slide's features so far."""

    started_at: float
    features: list[np.ndarray] = field(default_factory=list)
    coords: list[np.ndarray] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    obs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    total: int | None = None
    notices: list[Notice] = field(default_factory=list)  # inputs of this slide left out

    @property
    def n(self) -> int:
        return sum(len(f) for f in self.features)

    def add(self, chunk: CropChunk, feats: np.ndarray) -> None:
        self.features.append(feats)
        if chunk.coords is not None:
            self.coords.append(chunk.coords)
        if chunk.paths is not None:
            self.paths.extend(chunk.paths)
        for name, values in chunk.obs.items():
            self.obs.setdefault(name, []).append(np.asarray(values))

    def bag(self) -> Bag:
        return Bag(
            features=concat(self.features).astype(np.float32, copy=False),
            coords=concat(self.coords) if self.coords else None,
            paths=np.asarray(self.paths, dtype=object) if self.paths else None,
            obs={name: concat(parts) for name, parts in self.obs.items()},
        )


SlideFeatures = _Pending  # what an engine hands to `EncodeLoop.commit`


class EncodeLoop:
    def __init__(
        self,
        encoder: Any,
        identity: EncoderIdentity,
        config: ExtractConfig,
        bag_store: BagStore,
        overwrite: bool,
        emit: Callable[..., None],
    ):
        self.encoder, self.identity, self.config = encoder, identity, config
        self.bag_store, self.overwrite, self.emit = bag_store, overwrite, emit

    def run(self, todo: list[SlideRef], outcomes: list[SlideOutcome]) -> bool:
        """Process `todo`, appending one outcome per slide; True when stopped early (skip_errors off)."""
        job = SlideJob(todo, self.config, self.encoder.input_px, self.bag_store, self.overwrite)
        pending: dict[int, _Pending] = {}
        dead: set[int] = set()  # slides that failed in this process; their remaining chunks are dropped
        for record in iterate_records(job, self.config.workers):
            ref = todo[record.index]
            if isinstance(record, SlideStarted):
                pending[record.index] = _Pending(record.started_at)
                self.emit("slide_start", slide_id=ref.slide_id)
            elif isinstance(record, Stage):
                if "total" in record.info:
                    pending[record.index].total = record.info["total"]
                self.emit("slide_stage", slide_id=ref.slide_id, stage=record.stage, info=record.info)
            elif isinstance(record, Notice):
                pending[record.index].notices.append(record)
                self.emit("slide_notice", slide_id=ref.slide_id, message=record.message)
            elif isinstance(record, CropChunk):
                if record.index in dead:
                    continue
                slot = pending[record.index]
                try:
                    feats = self.encoder.encode(record.images)
                except MilError as exc:  # e.g. a crop batch the encoder refuses: this slide only
                    dead.add(record.index)
                    outcome = failed(ref, f"{ref.slide_id}: {' '.join(str(exc).split())}")
                    outcomes.append(outcome)
                    self.emit("slide_done", outcome=outcome)
                    if not self.config.skip_errors:
                        return True
                    continue
                slot.add(record, feats)
                self.emit("slide_instances", slide_id=ref.slide_id, done=slot.n, total=slot.total)
            elif isinstance(record, SlideFinished | SlideFailed | SlideSkipped):
                slot = pending.pop(record.index)
                seconds = time.time() - slot.started_at
                if record.index in dead:
                    continue
                if isinstance(record, SlideFinished):
                    outcome = self._write(ref, record, slot, seconds)
                elif isinstance(record, SlideSkipped):
                    outcome = skipped(ref, record.message, record.n_instances)
                else:
                    lines = [n.message for n in slot.notices]
                    detail = "\n".join([*lines, record.detail or ""]).strip() or None
                    outcome = failed(ref, record.message, seconds, detail)
                outcomes.append(outcome)
                self.emit("slide_done", outcome=outcome)
                if outcome.status == "failed" and not self.config.skip_errors:
                    return True
        return False

    def commit(
        self, ref: SlideRef, record: SlideFinished, slot: SlideFeatures, seconds: float
    ) -> SlideOutcome:
        """The one commit path of every engine (`features.pipeline.engines`): a slide's features, complete and
        in instance order, become one bag (or one failed outcome)."""
        return self._write(ref, record, slot, seconds)

    def _write(self, ref: SlideRef, record: SlideFinished, slot: _Pending, seconds: float) -> SlideOutcome:
        try:
            bag = slot.bag()
            bad = int((~np.isfinite(bag.features)).any(axis=1).sum())
            if bad:  # fp16 overflow or a broken checkpoint: never store it as if it were a bag
                raise SlideError(
                    ref.slide_id,
                    f"the encoder returned NaN/inf for {bad} of {len(bag.features)} instances; rerun with "
                    "--set extract.precision=fp32, or check the weights",
                )
            landed = write_bag(
                self.bag_store,
                ref,
                bag,
                self.config,
                self.overwrite,
                mpp=record.mpp,
                mpp_source=record.mpp_source,
                crop_um=record.crop_um,
                crop_px=self.encoder.input_px,
                weights_path=self.encoder.weights_path,
                qc=record.qc,
                skipped=[[n.file, n.reason] for n in slot.notices],
                settings={
                    "precision": getattr(getattr(self.encoder, "precision", None), "label", None),
                    "device": str(getattr(self.encoder, "device", "cpu")),
                    "subsample": record.subsample,
                },
            )
        except MilError as exc:
            return failed(ref, " ".join(str(exc).split()), seconds)
        except OSError as exc:  # the store's file system refused this bag: this slide fails, the rest go on
            return failed(
                ref, f"{ref.slide_id}: cannot write its bag ({' '.join(str(exc).split())})", seconds
            )
        if not landed:
            return skipped(ref, LANDED, len(bag.features))
        # Inputs left out (unreadable cell images, a patient's unusable fields): counted in the table, named
        # one per line in the run record (`detail`) and in the bag (`skipped`); each was printed as it happened.
        message = f"{len(slot.notices)} input(s) left out" if slot.notices else ""
        return SlideOutcome(
            ref.slide_id,
            ref.patient_id,
            str(ref.path),
            "written",
            message,
            len(bag.features),
            round(seconds, 3),
            "\n".join(n.message for n in slot.notices) or None,
            len(slot.notices),
        )
