"""The driver end of the Ray extraction pipeline: feature rows in, one committed bag (or one failure) per slide.

Rows of many slides arrive in any order, possibly more than once (Ray replays the output of a task it
retried). Each slide's features are kept with their positions; the slide is committed when its finished
record is in and every position 0..n-1 has arrived (duplicates dropped), through the local engine's commit
(`EncodeLoop.commit`: the same checks, provenance and staged-then-renamed `BagStore.write`). A slide that
failed (its loader's one-line error, or the encoder's) becomes a failed outcome and its rows are dropped;
rows of a slide already committed or failed are ignored, so a late replay can neither duplicate nor break
a bag.
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from features.pipeline.encode_loop import EncodeLoop, SlideFeatures
from features.pipeline.engines.base import EncodeRun
from features.pipeline.engines.ray_stages import ENCODED_ON, ERROR, FEATURES, POS, RECORD, SLIDE, SlideDone
from features.pipeline.provenance import SlideOutcome, failed
from features.pipeline.records import Notice, SlideFailed, SlideStarted, Stage
from features.sources.base import SlideRef


@dataclass
class _Slide:
    started_at: float
    features: list[np.ndarray] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)
    received: int = 0  # rows, duplicates included (for the progress bar)
    total: int | None = None
    notices: list[Notice] = field(default_factory=list)
    done: SlideDone | None = None
    encoded_on: str | None = None


class Collector:
    """Assembles the slides of one run from the pipeline's output batches and commits each when complete."""

    def __init__(self, run: EncodeRun, todo: list[SlideRef], outcomes: list[SlideOutcome]):
        self.run, self.todo, self.outcomes = run, todo, outcomes
        self.open: dict[int, _Slide] = {}
        self.closed: set[int] = set()  # committed or failed: later rows are replays, ignored
        self.stop = False  # a slide failed and skip_errors is off
        self._loops: dict[str, EncodeLoop] = {}

    @property
    def emit(self) -> Callable[..., None]:
        return self.run.emit

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Take one output batch of the pipeline; commit or fail the slides it completes."""
        slide, pos = np.asarray(batch[SLIDE]), np.asarray(batch[POS])
        errors = np.asarray(batch[ERROR]) != ""
        for index in np.unique(slide[errors]):  # the encoder refused these slides' crops
            first = int(np.flatnonzero(errors & (slide == index))[0])
            self._fail(int(index), f"{self.todo[index].slide_id}: {batch[ERROR][first]}")
        for row in np.flatnonzero(pos < 0):  # records first: a slide's stages before its instances
            self._control(int(slide[row]), pickle.loads(batch[RECORD][row]))
        crops = (pos >= 0) & ~errors
        if crops.any():
            self._add_features(
                slide[crops], pos[crops], np.asarray(batch[FEATURES])[crops], batch[ENCODED_ON][crops]
            )
        for index in [i for i, s in self.open.items() if s.done is not None]:
            self._try_commit(index)

    def _slot(self, index: int) -> _Slide | None:
        if index in self.closed:
            return None
        if index not in self.open:
            self.open[index] = _Slide(time.time())
            self.emit("slide_start", slide_id=self.todo[index].slide_id)
        return self.open[index]

    def _add_features(
        self, slide: np.ndarray, pos: np.ndarray, feats: np.ndarray, encoded_on: np.ndarray
    ) -> None:
        order = np.argsort(slide, kind="stable")
        indices, starts = np.unique(slide[order], return_index=True)
        for index, rows in zip(indices, np.split(order, starts[1:]), strict=True):  # per slide, not per cell
            slot = self._slot(int(index))
            if slot is None:
                continue
            slot.features.append(feats[rows])
            slot.positions.append(pos[rows])
            slot.received += len(rows)
            slot.encoded_on = slot.encoded_on or str(encoded_on[rows[0]])
            done = min(slot.received, slot.total) if slot.total else slot.received
            self.emit("slide_instances", slide_id=self.todo[index].slide_id, done=done, total=slot.total)

    def _control(self, index: int, record: Any) -> None:
        slot = self._slot(index)
        if slot is None:
            return
        slide_id = self.todo[index].slide_id
        if isinstance(record, SlideStarted):
            slot.started_at = min(slot.started_at, record.started_at)
        elif isinstance(record, Stage):
            slot.total = record.info.get("total", slot.total)
            self.emit("slide_stage", slide_id=slide_id, stage=record.stage, info=record.info)
        elif isinstance(record, Notice):
            if all(n.message != record.message for n in slot.notices):  # a retried task sends them again
                slot.notices.append(record)
                self.emit("slide_notice", slide_id=slide_id, message=record.message)
        elif isinstance(record, SlideDone):
            slot.done = record
        elif isinstance(record, SlideFailed):
            detail = "\n".join([*(n.message for n in slot.notices), record.detail or ""]).strip() or None
            self._fail(index, record.message, detail)

    def _try_commit(self, index: int) -> None:
        slot = self.open[index]
        assert slot.done is not None
        n = slot.done.finished.n_instances
        if slot.received < n:
            return  # rows still in flight
        positions = np.concatenate(slot.positions) if slot.positions else np.zeros(0, np.int64)
        unique, first = np.unique(positions, return_index=True)
        if len(unique) < n:
            return  # replays counted in `received`: rows still in flight
        if len(unique) != n or unique[-1] != n - 1:
            self._fail(index, f"{self.todo[index].slide_id}: {len(unique)} instances came back for {n} crops")
            return
        dim = self.run.identity.dim
        features = np.concatenate(slot.features)[first] if slot.features else np.zeros((0, dim), np.float32)
        done = slot.done
        bag = SlideFeatures(
            slot.started_at,
            features=[features],
            coords=[done.coords] if done.coords is not None else [],
            paths=list(done.paths or []),
            obs={name: [values] for name, values in done.obs.items()},
            total=n,
            notices=slot.notices,
        )
        outcome = self._loop(slot.encoded_on).commit(
            self.todo[index], done.finished, bag, time.time() - slot.started_at
        )
        self._close(index, outcome)

    def _loop(self, encoded_on: str | None) -> EncodeLoop:
        """The local engine's commit, with the provenance of the actor that encoded the slide."""
        key = encoded_on or "{}"
        if key not in self._loops:
            on = json.loads(key)
            encoder = SimpleNamespace(
                input_px=self.run.encoder.input_px,
                weights_path=self.run.encoder.weights_path,
                precision=SimpleNamespace(label=on.get("precision")),
                device=on.get("device", "unknown"),
            )
            run = self.run
            self._loops[key] = EncodeLoop(
                encoder, run.identity, run.config, run.store, run.overwrite, run.emit
            )
        return self._loops[key]

    def _fail(self, index: int, message: str, detail: str | None = None) -> None:
        if index in self.closed:
            return
        slot = self.open.get(index)
        seconds = time.time() - slot.started_at if slot else 0.0
        self._close(index, failed(self.todo[index], message, seconds, detail))

    def _close(self, index: int, outcome: SlideOutcome) -> None:
        self.open.pop(index, None)
        self.closed.add(index)
        self.outcomes.append(outcome)
        self.emit("slide_done", outcome=outcome)
        if outcome.status == "failed" and not self.run.config.skip_errors:
            self.stop = True

    def finish(self, reason: str) -> None:
        """Slides the pipeline never finished (a loader that kept crashing on one slide, a stopped pipeline)."""
        for index, ref in enumerate(self.todo):
            if index not in self.closed:
                self._fail(index, f"{ref.slide_id}: {reason}")
