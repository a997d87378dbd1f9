"""What a loader worker sends to the main process: typed records, one stream per run.

Per slide, in order: `SlideStarted`, any number of `Stage`, `CropChunk` and `Notice` records, then exactly one
of `SlideFinished` (the bag can be written), `SlideFailed` (drop what was accumulated) or `SlideSkipped`
(another run landed the bag since this run planned it). Chunks of different slides interleave when several
workers run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SlideStarted:
    index: int  # position in the run's to-do list
    slide_id: str
    started_at: float  # epoch seconds, for per-slide wall time


@dataclass
class Stage:
    index: int
    slide_id: str
    stage: str  # "open" | "qc" | "detect" | "crops" | "read"
    info: dict[str, Any] = field(default_factory=dict)  # e.g. done/total tiles, instances to crop


@dataclass
class CropChunk:
    index: int
    slide_id: str
    images: Any  # B x px x px x 3 uint8 torch tensor (shared memory across processes)
    coords: np.ndarray | None  # B x 2 int64 level-0 centres (slides)
    paths: list[str] | None  # B image paths relative to the patient folder (cells)
    obs: dict[str, np.ndarray]  # per-instance columns


@dataclass
class Notice:
    """One input of a slide was left out and the rest go on (an unreadable cell image, an empty field)."""

    index: int
    slide_id: str
    message: str  # one line naming the file and the fix
    file: str = ""  # the input, relative to the slide's folder (as the bag's `paths` name it)
    reason: str = ""  # the message without the path


@dataclass
class SlideFinished:
    index: int
    slide_id: str
    n_instances: int
    qc: dict[str, Any]
    mpp: float | None
    mpp_source: str | None
    crop_um: float | None
    subsample: dict[str, Any] | None  # {"seed", "from", "kept"} when max_instances applied


@dataclass
class SlideFailed:
    index: int
    slide_id: str
    message: str  # one line
    detail: str | None = None  # traceback for unexpected errors (kept in the run record)


@dataclass
class SlideSkipped:
    """Another run landed this slide's bag after this run planned it (two unsharded runs on one store): the
    first writer wins and this run does not redo it."""

    index: int
    slide_id: str
    n_instances: int
    message: str


Record = SlideStarted | Stage | CropChunk | Notice | SlideFinished | SlideFailed | SlideSkipped
