"""The two stages of the Ray extraction pipeline that run on Ray workers: slides -> crop rows -> feature rows.

Rows have one schema all the way: `slide` (index in the run's to-do list), `pos` (the crop's position in its
slide, or -1), `image` (px x px x 3 uint8) and `record` (pickled bytes, empty for crops). A slide's
records other than crops (started, stage, notice, finished, failed) travel as control rows (`pos` -1, a
blank image) in the same stream, so they are retried, ordered and delivered like the crops; the finished
record carries the slide's per-instance columns (coords, paths, obs), gathered by the loader while its
crops streamed out, so a crop row holds nothing but its pixels.

Why positions: Ray retries a task or restarts an actor that dies, and blocks may arrive in any order; the
driver keys every feature row by (slide, pos), so a replayed row is a duplicate it drops, and a slide is
complete exactly when all of its positions 0..n-1 are in.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.pipeline.records import CropChunk, SlideFinished
from features.pipeline.slide_job import SlideJob

SLIDE, POS, IMAGE, RECORD = "slide", "pos", "image", "record"
FEATURES, ERROR, ENCODED_ON = "features", "error", "encoded_on"


@dataclass
class SlideDone:
    """A slide's `SlideFinished` with its per-instance columns, in position order."""

    finished: SlideFinished
    coords: np.ndarray | None
    paths: list[str] | None
    obs: dict[str, np.ndarray] = field(default_factory=dict)


def slide_rows(batch: dict[str, np.ndarray], job: SlideJob) -> Iterator[dict[str, np.ndarray]]:
    """The loader task: each slide of `batch` (one per task) -> batches of crop rows and control rows."""
    from threadpoolctl import threadpool_limits

    _lower_priority()
    # One core per loader task: numpy's BLAS threads would otherwise spin on the cores the encoder needs.
    with threadpool_limits(1):
        for index in batch[SLIDE]:
            yield from _one_slide(job, int(index))


_NICED: list[bool] = []  # per worker process (Ray reuses one for many tasks): lowered once


def _lower_priority() -> None:
    """Loader processes run 5 nice levels below the encoder, as the local engine's loader workers do
    (`features.pipeline.loader`): on a node shared with other work, the encoder is not the one kept waiting."""
    if not _NICED:
        try:
            os.nice(5)
        except OSError:
            pass
        _NICED.append(True)


def _one_slide(job: SlideJob, index: int) -> Iterator[dict[str, np.ndarray]]:
    px, pos = job.input_px, 0
    coords: list[np.ndarray] = []
    paths: list[str] = []
    obs: dict[str, list[np.ndarray]] = {}
    for record in job.records(index):
        if isinstance(record, CropChunk):
            images = np.asarray(record.images)  # a CPU torch tensor or an array: no copy
            n = len(images)
            if record.coords is not None:
                coords.append(np.asarray(record.coords))
            paths.extend(record.paths or [])
            for name, values in record.obs.items():
                obs.setdefault(name, []).append(np.asarray(values))
            yield _rows(index, np.arange(pos, pos + n), images, np.full(n, b"", dtype=object))
            pos += n
            continue
        if isinstance(record, SlideFinished):
            record = SlideDone(
                record,
                np.concatenate(coords) if coords else None,
                paths or None,
                {name: np.concatenate(parts) for name, parts in obs.items()},
            )
        blank = np.zeros((1, px, px, 3), np.uint8)
        yield _rows(index, np.array([-1]), blank, np.array([pickle.dumps(record)], dtype=object))


def _rows(index: int, pos: np.ndarray, images: np.ndarray, records: np.ndarray) -> dict[str, np.ndarray]:
    return {
        SLIDE: np.full(len(pos), index, np.int64),
        POS: pos.astype(np.int64),
        IMAGE: images,
        RECORD: records,
    }


class EncoderActor:
    """Holds one encoder (on its GPU, or the CPU) and turns crop rows into feature rows; control rows pass."""

    def __init__(
        self, name: str, weights: str | None, device: str, precision: str, identity: dict[str, Any], seed: int
    ):
        import torch

        from features.core.device import resolve_device
        from features.core.errors import StoreError
        from features.encoders import create_encoder

        resolved = str(resolve_device(device, "extract.device"))
        # Random weights (tests, timing) are drawn from a seeded RNG, so every actor, and an actor Ray restarts
        # after a crash, holds the same encoder.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = create_encoder(name, weights=weights, device=resolved, precision=precision)
        if self.encoder.weights_sha256 != identity["weights_sha256"] or self.encoder.dim != identity["dim"]:
            raise StoreError(
                f"a Ray worker loaded {name} weights {self.encoder.weights_sha256[:12]} ({self.encoder.dim}-d), the "
                f"driver {identity['weights_sha256'][:12]}: give every node the same file (--weights PATH on "
                "a filesystem all nodes see)"
            )
        precision_label = getattr(getattr(self.encoder, "precision", None), "label", None)
        self.encoded_on = json.dumps(
            {"device": str(getattr(self.encoder, "device", resolved)), "precision": precision_label}
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        slide, pos = batch[SLIDE], batch[POS]
        n = len(pos)
        features = np.zeros((n, self.encoder.dim), np.float32)
        error = np.full(n, "", dtype=object)
        crops = pos >= 0
        if crops.any():
            images = batch[IMAGE] if crops.all() else batch[IMAGE][crops]
            features[crops], error[crops] = self._encode(images, slide[crops])
        return {
            SLIDE: slide,
            POS: pos,
            FEATURES: features,
            RECORD: batch[RECORD],
            ERROR: error,
            ENCODED_ON: np.full(n, self.encoded_on, dtype=object),
        }

    def _encode(self, images: np.ndarray, slides: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features of a batch; when the encoder refuses it, each slide's share is tried alone, so an error
        fails only the slide it belongs to (as in the local engine, where a batch is one slide's chunk)."""
        import torch

        from features.core.errors import MilError

        error = np.full(len(images), "", dtype=object)
        try:
            return self.encoder.encode(torch.from_numpy(np.ascontiguousarray(images))), error
        except MilError:
            pass
        features = np.zeros((len(images), self.encoder.dim), np.float32)
        for index in np.unique(slides):  # a batch holds a few slides: a loop over slides, not cells
            mine = slides == index
            try:
                features[mine] = self.encoder.encode(torch.from_numpy(np.ascontiguousarray(images[mine])))
            except MilError as exc:
                error[mine] = " ".join(str(exc).split())
        return features, error
