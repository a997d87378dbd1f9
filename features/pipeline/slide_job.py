"""The per-slide CPU work of extraction, run inside a loader worker (or inline): one generator per slide.

A slide is opened once; region QC runs on a coarse level, then cell detection (or grid tiles) in the chosen
regions, an optional seeded subsample, and the crops stream out in chunks of `batch_size`. A folder of cell
images is read image by image (each is one instance) and gets a per-image focus score instead of region QC.

A slide whose bag another run landed since this run planned it is skipped before it is opened
(`SlideSkipped`): two unsharded runs on one store share the work instead of doing it twice. A cell image that
cannot be read is left out in one line (`Notice`, recorded in the bag), the patient's other images make its
bag; `extract.strict` fails the patient instead.

A slide's QC (`STORE/qc/<key>`: summary, region map, overview; `features.bagstore.qc`) is written here, by
the process that holds the slide open: the summary and maps as soon as detection is done (so a slide that
fails later still leaves its QC behind), the overview once the crops are out (so the encoder is not kept
waiting for it) or when a failure stops the slide. A slide that fails before QC (it cannot be opened or
read, has no usable mpp) gets an entry with the error alone (`features.bagstore.qc.write_failed_qc`).
"""

from __future__ import annotations

import time
import traceback
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from features.bagstore import BagStore, SlideQC
from features.bagstore.qc import write_failed_qc
from features.core.errors import MilError, SlideError
from features.pipeline.config import ExtractConfig
from features.pipeline.provenance import LANDED, landed_meanwhile, leave_out
from features.pipeline.records import (
    CropChunk,
    Record,
    SlideFailed,
    SlideFinished,
    SlideSkipped,
    SlideStarted,
    Stage,
)
from features.smear.imageops import focus_scores
from features.sources.base import SlideRef, check_name, printable

if TYPE_CHECKING:
    from features.smear.detect import Detections
    from features.smear.qc import RegionMap
    from features.sources.openslide_reader import SlideReader


def subsample_index(n: int, cap: int | None, seed: int, slide_id: str) -> np.ndarray | None:
    """Sorted indices of a seeded random subsample of `cap` out of `n`, or None when no cap applies.

    The generator is seeded by (seed, crc32(slide id)), so a slide's subsample does not depend on which
    shard or in which order it is processed; sorting keeps the instances in spatial (tile) order."""
    if cap is None or n <= cap:
        return None
    rng = np.random.default_rng([seed, zlib.crc32(slide_id.encode("utf-8"))])
    return np.sort(rng.choice(n, size=cap, replace=False))


def _with_maps(summary: dict[str, Any], region_map: RegionMap) -> SlideQC:
    """QC with the slide's maps, each with its scale (level-0 px per map px), so they can be overlaid."""
    from features.smear.qc import REGIONS

    region_attrs = {"downsample": region_map.downsample, "codes": list(REGIONS)}
    focus_attrs = {"downsample": region_map.focus_downsample}
    return SlideQC(
        summary,
        maps={"regions": region_map.labels, "focus": region_map.focus, "in_focus": region_map.in_focus},
        map_attrs={"regions": region_attrs, "focus": focus_attrs, "in_focus": focus_attrs},
    )


def _as_tensor(images: np.ndarray) -> torch.Tensor:
    # A tensor crosses the worker queue through shared memory; a numpy array would be pickled (copied).
    return torch.from_numpy(np.ascontiguousarray(images))


class SlideJob:
    """Everything a worker needs for one run; small and picklable (spawned workers receive a copy)."""

    def __init__(
        self,
        refs: list[SlideRef],
        config: ExtractConfig,
        input_px: int,
        store: BagStore,
        overwrite: bool = False,
    ):
        self.refs, self.config, self.input_px, self.store = refs, config, input_px, store
        self.overwrite = overwrite

    def records(self, index: int) -> Iterator[Record]:
        ref = self.refs[index]
        yield SlideStarted(index, ref.slide_id, time.time())
        qc: dict[str, Any] = {}
        try:
            check_name(ref.path)  # a slide or patient folder named in another encoding than UTF-8
            landed = None if self.overwrite else landed_meanwhile(self.store, ref, self.config)
            if landed is not None:
                yield SlideSkipped(index, ref.slide_id, landed, LANDED)
            elif ref.kind == "cells":
                yield from self._cells(index, ref, qc)
            elif ref.kind == "fields":
                from features.pipeline.field_job import field_records

                yield from field_records(self, index, ref, qc)
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
        # Every failed slide gets a QC entry saying why: beside what QC found when it got that far, else
        # alone (not opened, not read, no mpp), and then never over a bag's or an earlier run's complete QC.
        try:
            write_failed_qc(self.store.path, ref.slide_id, message, qc or None)
        except OSError:
            pass
        return SlideFailed(index, ref.slide_id, message, detail)

    def _slide(self, index: int, ref: SlideRef, qc: dict[str, Any]) -> Iterator[Record]:
        from features.smear.qc import assess_regions
        from features.smear.qc_thumbnail import qc_thumbnail
        from features.sources.openslide_reader import SlideReader

        cfg = self.config
        yield Stage(index, ref.slide_id, "open")
        mpp = ref.mpp if ref.mpp is not None else cfg.mpp
        mpp_source = ref.mpp_source if ref.mpp is not None else ("user" if cfg.mpp is not None else None)
        with SlideReader(ref.path, mpp=mpp, mpp_source=mpp_source) as reader:
            yield Stage(index, ref.slide_id, "qc")
            region_map = assess_regions(reader, cfg.qc)
            yield Stage(index, ref.slide_id, "detect")
            det, n_found, keep = self._detect(reader, region_map, ref.slide_id, qc)

            def overview() -> np.ndarray:
                return qc_thumbnail(reader, region_map, det.xy, max_px=cfg.qc_thumbnail_px)

            if len(det) == 0:
                regions = cfg.regions_tiled if cfg.unit == "tiles" else cfg.detect.regions
                self.store.write_qc(ref.slide_id, SlideQC({**qc, "status": "empty"}, overview()))
                raise SlideError(
                    ref.slide_id,
                    f"no {'nucleated cells' if cfg.unit == 'cells' else 'tiles'} found in regions "
                    f"{', '.join(regions)} (see its QC overview: `mil bags qc {self.store.path} -o DIR`)",
                )
            yield Stage(index, ref.slide_id, "crops", {"total": len(det)})
            try:
                yield from self._slide_crops(index, ref.slide_id, reader, det)
            except Exception:  # the overview matters most when a read failed: try to leave it behind
                try:
                    self.store.write_qc(ref.slide_id, SlideQC({**qc, "status": "failed"}, overview()))
                except Exception:  # noqa: BLE001 - the original error is the one to report
                    pass
                raise
            # The overview is drawn after the crops are streamed, so the encoder is not kept waiting for it.
            self.store.write_qc(ref.slide_id, SlideQC({**qc, "status": "cropped"}, overview()))
            mpp, mpp_source = reader.mpp, reader.mpp_source
        subsample = None if keep is None else {"seed": cfg.seed, "from": n_found, "kept": len(det)}
        yield SlideFinished(index, ref.slide_id, len(det), qc, mpp, mpp_source, cfg.instance_um, subsample)

    def _detect(
        self, reader: SlideReader, region_map: RegionMap, slide_id: str, qc: dict[str, Any]
    ) -> tuple[Detections, int, np.ndarray | None]:
        """Cells (or grid tiles) in the chosen regions, subsampled to `max_instances`; the QC summary and maps
        are written now, so a slide that fails later still leaves them. Returns (detections, number found
        before the subsample, the subsample's indices or None)."""
        from features.smear.detect import detect_cells, grid_tiles
        from features.smear.qc import qc_summary

        cfg = self.config
        if cfg.unit == "cells":
            det = detect_cells(reader, region_map, cfg.detect)
        else:
            det = grid_tiles(region_map, cfg.tile_um, reader.mpp, cfg.regions_tiled)
        n_found = len(det)
        keep = subsample_index(n_found, cfg.max_instances, cfg.seed, slide_id)
        if keep is not None:
            det = det.subset(keep)
        qc.update(qc_summary(region_map, reader.mpp, det.xy))
        qc.update(mpp=reader.mpp, mpp_source=reader.mpp_source, unit=cfg.unit, instances_found=n_found)
        qc["instances_kept"] = len(det)
        self.store.write_qc(slide_id, _with_maps({**qc, "status": "detected"}, region_map))
        return det, n_found, keep

    def _slide_crops(
        self, index: int, slide_id: str, reader: SlideReader, det: Detections
    ) -> Iterator[CropChunk]:
        """The crops of `instance_um` around each detection, in chunks of `batch_size`, with their obs."""
        from features.smear.crops import iter_crops

        cfg, start = self.config, 0
        for batch in iter_crops(reader, det.xy, cfg.instance_um, self.input_px, cfg.batch_size):
            stop = start + len(batch)
            obs = {
                "region": det.region[start:stop],
                "in_focus": det.in_focus[start:stop],
                "area_um2": det.area_um2[start:stop],
            }
            yield CropChunk(index, slide_id, _as_tensor(batch), det.xy[start:stop], None, obs)
            start = stop

    def _cells(self, index: int, ref: SlideRef, qc: dict[str, Any]) -> Iterator[Record]:
        from features.smear.crops import resize_batch
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
        scores, left_out = [], []
        for start in range(0, len(images), cfg.batch_size):
            names = []
            batch = np.empty((min(cfg.batch_size, len(images) - start), px, px, 3), np.uint8)
            focus = np.empty(len(batch), np.float32)
            for name in images[start : start + cfg.batch_size]:  # one file per instance: the loop is the read
                try:
                    rgb = read_cell_image(ref.path / name)[None]
                except SlideError as exc:
                    left_out.append(name)
                    reason = str(exc).removeprefix(f"{printable(str(ref.path / name))}: ")
                    yield leave_out(index, ref, name, reason, cfg.strict)
                    continue
                # Focus on the image as exported, so the score does not depend on the encoder's input size;
                # the measure (and so the scale of the values) is region QC's (features.smear.imageops).
                focus[len(names)] = focus_scores(rgb)[0]
                # The whole image to the encoder's input size, with the slide crops' resampling (area
                # average when shrinking); the aspect is not kept, cell exports are near-square.
                batch[len(names)] = resize_batch(rgb, px, px)[0]
                names.append(name)
            if names:
                scores.append(focus[: len(names)])
                chunk = _as_tensor(batch[: len(names)])
                yield CropChunk(index, ref.slide_id, chunk, None, names, {"focus": focus[: len(names)]})
        kept = len(images) - len(left_out)
        qc.update(
            unit="cells", instances_found=len(ref.images), instances_kept=kept, images_left_out=left_out
        )
        if not kept:
            raise SlideError(
                ref.slide_id, f"none of its {len(images)} cell image(s) could be read (see the lines above)"
            )
        focus_all = np.concatenate(scores)
        qc.update(focus_median=float(np.median(focus_all)), focus_p10=float(np.percentile(focus_all, 10)))
        self.store.write_qc(ref.slide_id, SlideQC({**qc, "status": "read"}))
        subsample = None if keep is None else {"seed": cfg.seed, "from": len(ref.images), "kept": len(images)}
        yield SlideFinished(index, ref.slide_id, kept, qc, ref.mpp, ref.mpp_source, None, subsample)
