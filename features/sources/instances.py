"""Reopen a bag's instances at their source: the pixels behind a bag's rows, for the explanations.

Galleries, overlays and reports ask here for cells by row index and get them as extracted, re-read from the
source at full resolution (a slide's crops at the bag's `crop_um`, a folder's cell images), never the
encoder's normalised input. `open_instances(meta, bag)` decides what the source is (slide, cell folder,
microscope fields, imported features without images) so callers never dispatch on `source_kind`, and it opens the source once:
one slide open serves every gallery and the overview of that slide.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from features.core.errors import SlideError
from features.smear.crops import resize_batch

if TYPE_CHECKING:
    from features.bagstore import Bag, BagMeta
    from features.sources.openslide_reader import SlideReader

OVERVIEW_PX = 1000  # longest side of a slide's overview: about a PNG's own pixels, no costly resampling


@dataclass(frozen=True)
class Overview:
    """The whole smear at low resolution, and how its pixels map to level-0 pixels and micrometres."""

    image: np.ndarray  # H x W x 3 uint8
    downsample: float  # level-0 px per image px
    mpp: float  # µm per level-0 px


class _Source:
    """Use as a context manager (`with open_instances(meta, bag) as source:`) so the slide is closed."""

    slide_id: str
    crop_px: int | None  # the bag's own crop side in px: the default size of `crops`

    def _out_px(self, out_px: int | None) -> int:
        if out_px is None and self.crop_px is None:
            raise SlideError(self.slide_id, "bag records no crop size in px (crop_px); pass out_px")
        return int(out_px if out_px is not None else self.crop_px)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass


class SlideInstances(_Source):
    """A slide's cells: crops of `crop_um` around each level-0 coordinate, read from one open slide."""

    def __init__(self, slide_id: str, path: Path, mpp: float | None, crop_um: float | None, crop_px, coords):
        if not path.is_file():
            raise SlideError(slide_id, f"source slide {path} not found; move it back or re-extract")
        if coords is None:
            raise SlideError(slide_id, "bag has no coords; cannot locate its cells on the slide")
        if crop_um is None:
            raise SlideError(slide_id, "bag records no crop size (crop_um); re-extract it")
        from features.sources.openslide_reader import SlideReader

        self.slide_id, self.crop_um, self.crop_px, self.coords = slide_id, float(crop_um), crop_px, coords
        self.reader: SlideReader = SlideReader(path, mpp=mpp, mpp_source="bag")

    def crops(self, index: np.ndarray, out_px: int | None = None) -> np.ndarray:
        """len(index) x out_px x out_px x 3 uint8 (default: the bag's crop_px), from the coarsest pyramid
        level that is still fine enough for `out_px`."""
        from features.smear.crops import read_crops

        xy = self.coords[np.asarray(index, dtype=np.int64)]
        return read_crops(self.reader, xy, self.crop_um, self._out_px(out_px))

    def overview(self, max_px: int = OVERVIEW_PX) -> Overview:
        """The whole slide with its longest side about `max_px`."""
        reader = self.reader
        longest_um = max(reader.dimensions) * reader.mpp
        image, downsample = reader.read_downsampled(max(reader.mpp, longest_um / max_px))
        return Overview(image, downsample, reader.mpp)

    def close(self) -> None:
        self.reader.close()


class CellInstances(_Source):
    """A folder of cell images: each row is one file, shown whole (padded square, aspect kept)."""

    def __init__(self, slide_id: str, folder: Path, crop_px: int | None, paths):
        if not folder.is_dir():
            raise SlideError(slide_id, f"source folder {folder} not found; move it back or re-extract")
        if paths is None:
            raise SlideError(slide_id, "bag has no paths; cannot find its cell images")
        self.slide_id, self.folder, self.crop_px, self.paths = slide_id, folder, crop_px, paths

    def crops(self, index: np.ndarray, out_px: int | None = None) -> np.ndarray:
        """len(index) x out_px x out_px x 3 uint8 (default: the bag's crop_px): each image whole."""
        from features.sources.cells import read_cell_image

        index, out_px = np.asarray(index, dtype=np.int64), self._out_px(out_px)
        out = np.empty((len(index), out_px, out_px, 3), np.uint8)
        for j, i in enumerate(index):  # one file per cell: the loop is the file read (k cells, not a bag)
            path = self.folder / str(self.paths[i])
            if not path.is_file():
                raise SlideError(self.slide_id, f"cell image {path} not found; move it back or re-extract")
            out[j] = square(read_cell_image(path), out_px)
        return out

    def overview(self, max_px: int = OVERVIEW_PX) -> None:
        """None: a folder of cell images has no picture of the whole smear."""
        return None


class FieldInstances(_Source):
    """A patient's microscope fields: crops of `crop_um` around each cell, in its own field's pixels and at
    that field's mpp (`features.sources.fields`); each field is read once per call."""

    def __init__(self, meta: BagMeta, bag: Bag):
        if bag.paths is None or bag.coords is None:
            raise SlideError(meta.slide_id, "bag has no field paths or coords; cannot locate its cells")
        if meta.crop_um is None:
            raise SlideError(meta.slide_id, "bag records no crop size (crop_um); re-extract it")
        from features.sources.fields import field_mpps

        self.slide_id, self.crop_px, self.crop_um = meta.slide_id, meta.crop_px, float(meta.crop_um)
        self.folder, self.paths, self.coords = Path(meta.source_path), bag.paths, bag.coords
        self.mpps, self.default_mpp = field_mpps(meta.qc), meta.mpp

    def crops(self, index: np.ndarray, out_px: int | None = None) -> np.ndarray:
        """len(index) x out_px x out_px x 3 uint8 (default: the bag's crop_px), the cell as photographed."""
        from features.sources.fields import read_field_crops

        index = np.asarray(index, dtype=np.int64)
        return read_field_crops(
            self.folder, self.paths[index], self.coords[index], self.mpps, self.default_mpp, self.crop_um,
            self._out_px(out_px),
        )  # fmt: skip

    def overview(self, max_px: int = OVERVIEW_PX) -> None:
        """None: fields are separate photographs; their overlays are drawn per field."""
        return None


Instances = SlideInstances | CellInstances | FieldInstances


def open_instances(meta: BagMeta, bag: Bag) -> Instances:
    """The source of `bag` (described by `meta`), opened once. Use as `with open_instances(m, b) as src:`.

    Raises `SlideError` (one line naming the slide and the fix) when the source moved, or when the bag was
    imported from feature files (h5) and so has no pixels to show."""
    source = Path(meta.source_path)
    if meta.source_kind == "slide":
        return SlideInstances(meta.slide_id, source, meta.mpp, meta.crop_um, meta.crop_px, bag.coords)
    if meta.source_kind == "cells":
        return CellInstances(meta.slide_id, source, meta.crop_px, bag.paths)
    if meta.source_kind == "fields":
        return FieldInstances(meta, bag)
    raise SlideError(
        meta.slide_id,
        f"bag imported from {meta.source_kind} features has no images to show; extract from images",
    )


def square(image: np.ndarray, size: int) -> np.ndarray:
    """Pad to a white square (cells keep their aspect ratio), then resize to size x size."""
    h, w = image.shape[:2]
    side = max(h, w)
    canvas = np.full((side, side, 3), 255, np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = image
    return resize_batch(canvas[None], size, size)[0]


__all__ = [
    "CellInstances",
    "FieldInstances",
    "Instances",
    "Overview",
    "SlideInstances",
    "open_instances",
    "square",
]
