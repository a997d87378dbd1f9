"""The CPU half of extraction: slides -> a stream of typed records (crops in batches, QC, errors).

Why a torch `IterableDataset`: its worker processes read, QC, detect and crop whole slides while the main
process runs the encoder, so the CPU work hides behind the forward pass. Each worker takes whole slides
(slide i goes to worker i mod W), opens each slide once and streams its crops in chunks of `batch_size`
(bounded by the loader's prefetch, so a 100k-cell slide never holds all its crops). After the last chunk a
`SlideFinished` record carries the QC summary; a failure becomes a `SlideFailed` record instead of killing
the loader, so one bad slide never stops the others. `workers=0` runs the same generator inline.

QC files (`STORE/qc/<key>.png` and `.json`) are written here, by the process that holds the slide open, as
soon as detection is done, so a slide that fails later still leaves its QC behind.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from features.bagstore import bag_key
from features.config import ExtractConfig
from features.errors import MilError, SlideError
from features.sources.base import SlideRef


# -- records: what a worker sends to the main process ---------------------------------------------------------
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


Record = SlideStarted | Stage | CropChunk | SlideFinished | SlideFailed


# -- helpers ---------------------------------------------------------------------------------------------------
def subsample_index(n: int, cap: int | None, seed: int, slide_id: str) -> np.ndarray | None:
    """Sorted indices of a seeded random subsample of `cap` out of `n`, or None when no cap applies.

    The generator is seeded by (seed, crc32(slide id)), so a slide's subsample does not depend on which
    shard or in which order it is processed; sorting keeps the instances in spatial (tile) order."""
    if cap is None or n <= cap:
        return None
    rng = np.random.default_rng([seed, zlib.crc32(slide_id.encode("utf-8"))])
    return np.sort(rng.choice(n, size=cap, replace=False))


def focus_scores(images: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of the green channel (8-bit scale) per image: B x H x W x 3 -> B float32.

    The same measure region QC uses per focus tile (features.qc), here on whole cell images, vectorised over
    the batch. Blur removes the high frequencies it measures, so low values flag out-of-focus cells."""
    g = images[..., 1].astype(np.float32)
    lap = g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:] - 4.0 * g[:, 1:-1, 1:-1]
    return lap.reshape(len(g), -1).var(axis=1).astype(np.float32)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_qc(
    qc_dir: Path, slide_id: str, summary: dict[str, Any], thumbnail: np.ndarray | None = None
) -> None:
    """`qc/<key>.json` (and `.png`), written atomically so a reader never sees half a file."""
    qc_dir.mkdir(parents=True, exist_ok=True)
    key = bag_key(slide_id)
    if thumbnail is not None:
        import io

        from PIL import Image

        buf = io.BytesIO()
        # compress_level 1: a 1024 px overview in ~0.1 s instead of ~1.5 s, for a file ~20 % larger.
        Image.fromarray(np.ascontiguousarray(thumbnail)).save(buf, format="PNG", compress_level=1)
        write_atomic(qc_dir / f"{key}.png", buf.getvalue())
    text = json.dumps({"slide_id": slide_id, **summary}, indent=1, default=_json_default)
    write_atomic(qc_dir / f"{key}.json", text.encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _as_tensor(images: np.ndarray) -> torch.Tensor:
    # A tensor crosses the worker queue through shared memory; a numpy array would be pickled (copied).
    return torch.from_numpy(np.ascontiguousarray(images))


# -- per-slide producers ---------------------------------------------------------------------------------------
class SlideJob:
    """Everything a worker needs for one run; small and picklable (spawned workers receive a copy)."""

    def __init__(self, refs: list[SlideRef], config: ExtractConfig, input_px: int, qc_dir: Path):
        self.refs, self.config, self.input_px, self.qc_dir = refs, config, input_px, Path(qc_dir)

    def records(self, index: int) -> Iterator[Record]:
        ref = self.refs[index]
        yield SlideStarted(index, ref.slide_id, time.time())
        qc: dict[str, Any] = {}
        try:
            if ref.kind == "cells":
                yield from self._cells(index, ref, qc)
            elif ref.kind == "slide":
                yield from self._slide(index, ref, qc)
            else:
                raise SlideError(ref.slide_id, f"kind {ref.kind!r} cannot be encoded (h5 files are imported)")
        except MilError as exc:
            yield self._failed(index, ref, qc, " ".join(str(exc).split()), None)
        except Exception as exc:  # noqa: BLE001 - any bug in one slide must not stop the others
            message = f"{ref.slide_id}: unexpected {type(exc).__name__}: {' '.join(str(exc).split())}"
            yield self._failed(index, ref, qc, message, traceback.format_exc())

    def _failed(self, index: int, ref: SlideRef, qc: dict, message: str, detail: str | None) -> SlideFailed:
        if qc:  # QC got far enough to say something: keep it beside the error
            try:
                write_qc(self.qc_dir, ref.slide_id, {**qc, "status": "failed", "error": message})
            except OSError:
                pass
        return SlideFailed(index, ref.slide_id, message, detail)

    def _slide(self, index: int, ref: SlideRef, qc: dict[str, Any]) -> Iterator[Record]:
        from features.crops import iter_crops
        from features.detect import detect_cells, grid_tiles
        from features.qc import assess_regions, qc_summary, qc_thumbnail
        from features.sources.openslide_reader import SlideReader

        cfg = self.config
        yield Stage(index, ref.slide_id, "open")
        mpp = ref.mpp if ref.mpp is not None else cfg.mpp
        mpp_source = ref.mpp_source if ref.mpp is not None else ("user" if cfg.mpp is not None else None)
        with SlideReader(ref.path, mpp=mpp, mpp_source=mpp_source) as reader:
            yield Stage(index, ref.slide_id, "qc")
            region_map = assess_regions(reader, cfg.qc)
            yield Stage(index, ref.slide_id, "detect")
            if cfg.unit == "cells":
                det = detect_cells(reader, region_map, cfg.detect)
            else:
                det = grid_tiles(region_map, cfg.tile_um, reader.mpp, cfg.regions_tiled)
            n_found = len(det)
            keep = subsample_index(n_found, cfg.max_instances, cfg.seed, ref.slide_id)
            if keep is not None:
                det = det.subset(keep)
            qc.update(qc_summary(region_map, reader.mpp, det.xy))
            qc.update(mpp=reader.mpp, mpp_source=reader.mpp_source, unit=cfg.unit, instances_found=n_found)
            qc["instances_kept"] = len(det)
            write_qc(
                self.qc_dir,
                ref.slide_id,
                {**qc, "status": "detected"},
                qc_thumbnail(reader, region_map, det.xy, max_px=cfg.qc_thumbnail_px),
            )
            if len(det) == 0:
                what = "nucleated cells" if cfg.unit == "cells" else "tiles"
                raise SlideError(
                    ref.slide_id,
                    f"no {what} found in regions {', '.join(cfg.regions_tiled if cfg.unit == 'tiles' else cfg.detect.regions)} "
                    f"(see {self.qc_dir / (bag_key(ref.slide_id) + '.png')})",
                )
            yield Stage(index, ref.slide_id, "crops", {"total": len(det)})
            crop_um = cfg.instance_um
            start = 0
            for batch in iter_crops(reader, det.xy, crop_um, self.input_px, cfg.batch_size):
                stop = start + len(batch)
                obs = {
                    "region": det.region[start:stop],
                    "in_focus": det.in_focus[start:stop],
                    "area_um2": det.area_um2[start:stop],
                }
                yield CropChunk(index, ref.slide_id, _as_tensor(batch), det.xy[start:stop], None, obs)
                start = stop
            mpp, mpp_source = reader.mpp, reader.mpp_source
        subsample = None if keep is None else {"seed": cfg.seed, "from": n_found, "kept": len(det)}
        write_qc(self.qc_dir, ref.slide_id, {**qc, "status": "cropped"})
        yield SlideFinished(index, ref.slide_id, len(det), qc, mpp, mpp_source, crop_um, subsample)

    def _cells(self, index: int, ref: SlideRef, qc: dict[str, Any]) -> Iterator[Record]:
        from features.crops import resize_batch
        from features.sources.cells import read_cell_image

        cfg = self.config
        if not ref.images:
            raise SlideError(ref.slide_id, f"folder {ref.path} holds no cell images")
        images = ref.images
        keep = subsample_index(len(images), cfg.max_instances, cfg.seed, ref.slide_id)
        if keep is not None:
            images = tuple(images[i] for i in keep)
        yield Stage(index, ref.slide_id, "read", {"total": len(images)})
        px = self.input_px
        scores = []
        for start in range(0, len(images), cfg.batch_size):
            names = list(images[start : start + cfg.batch_size])
            batch = np.empty((len(names), px, px, 3), np.uint8)
            for j, name in enumerate(names):  # one file per instance: the per-image loop is the file read
                # The whole image to the encoder's input size, with the slide crops' resampling (area
                # average when shrinking); the aspect is not kept, cell exports are near-square.
                batch[j] = resize_batch(read_cell_image(ref.path / name)[None], px, px)[0]
            focus = focus_scores(batch)
            scores.append(focus)
            yield CropChunk(index, ref.slide_id, _as_tensor(batch), None, names, {"focus": focus})
        focus_all = np.concatenate(scores)
        qc.update(
            unit="cells",
            instances_found=len(ref.images),
            instances_kept=len(images),
            focus_median=float(np.median(focus_all)),
            focus_p10=float(np.percentile(focus_all, 10)),
        )
        write_qc(self.qc_dir, ref.slide_id, {**qc, "status": "read"})
        subsample = None if keep is None else {"seed": cfg.seed, "from": len(ref.images), "kept": len(images)}
        yield SlideFinished(index, ref.slide_id, len(images), qc, ref.mpp, ref.mpp_source, None, subsample)


class SlideStream(IterableDataset):
    """The run's slides as a torch `IterableDataset`; worker w of W takes slides w, w + W, ... whole."""

    def __init__(self, job: SlideJob):
        super().__init__()
        self.job = job

    def __iter__(self) -> Iterator[Record]:
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        for index in range(worker, len(self.job.refs), n_workers):
            yield from self.job.records(index)


def iterate_records(job: SlideJob, workers: int) -> Iterator[Record]:
    """All records of a run: inline (`workers=0`) or from `workers` loader processes, in arrival order."""
    if workers == 0 or not job.refs:
        for index in range(len(job.refs)):
            yield from job.records(index)
        return
    loader = DataLoader(
        SlideStream(job),
        batch_size=None,  # records are already batched: no collation
        collate_fn=_identity,
        num_workers=min(workers, len(job.refs)),
        prefetch_factor=2,  # bounds the crops in flight: workers x 2 chunks
        in_order=False,  # a fast worker's records are not held back behind a slow worker's slide
        worker_init_fn=_single_threaded,
    )
    yield from loader


def _identity(record: Record) -> Record:
    return record


def _single_threaded(worker_id: int) -> None:
    """Loader workers run numpy/scipy single-threaded (torch already does so in workers): W workers use W
    cores and leave the rest to the encoder. Without this each worker's OpenBLAS starts one thread per core
    for the crop resizing matmuls, and those threads spin-wait after each call, taking CPU the encoder needs."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
