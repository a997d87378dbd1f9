"""Microscope field images: per-patient folders of camera photographs of a smear (JPEG, PNG, BMP, TIFF).

Most hematology labs photograph fields at x50-x100 oil instead of scanning slides, and most public smear
datasets are fields (BCCD, ALL-IDB1, LISC, Raabin). Layout: `ROOT/<patient_id>/**/<image>`, as cell folders;
a patient's fields form one bag (`SlideRef.kind == "fields"`, slide id = patient folder name), every cell keeps
the field it came from (`paths`) and its centre in that field's own pixels (`coords`), so galleries, overlays
and GeoJSON work per field. A manifest may list fields too (`features.sources.manifest`): rows of one patient
form one bag, each row may carry its own mpp (`FieldsRef.image_mpp`).

Fields or crops? Both are folders of small images. `recognise` tells them apart where it can: a crop is one
cell (CellaVision: ~5 red cells across, the nucleated cell centred), a field is many cells wide. Images under
`CROP_MAX_PX` on their long side are crops (no camera saves fields that small); otherwise images are
decoded and their red cells measured (`features.smear.mpp_estimate`): at least `FIELD_MIN_RBC` red cells
across the long side is a field, at most `CROP_MAX_RBC` a crop, anything else is refused with the fix
(`--source cells` or `--source fields`) rather than guessed. Crowded fields hold few separate red cells (BCCD:
most of its 640 px fields hold none or one that is not touching another), so images are decoded `SAMPLE` at a
time, spread over the folder, until `ENOUGH_RBC` red cells are pooled or `SAMPLE_MAX` images were looked at;
when none could be measured, images of at least `FIELD_MIN_PX` are fields (4 x the crop limit: no single-cell
export is that large).

`FieldImage` gives a decoded field the surface of `SlideReader` (dimensions, mpp, level-0 reads padded with
white), so `features.smear.crops` cuts fixed-µm crops from it exactly as from a slide.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from features.core.errors import InputError, SlideError
from features.smear.imageops import block_mean
from features.sources import SOURCES
from features.sources.base import SlideRef, check_mpp
from features.sources.cells import list_images, patient_folders

CROP_MAX_PX = 320  # long side below which an image is a single-cell crop, not a camera field
FIELD_MIN_RBC = 6.0  # red cells across the long side from which an image is a field (BCCD: 7)
CROP_MAX_RBC = 5.5  # ... up to which it is a crop (PBC / CellaVision exports: 5.0)
SAMPLE = 8  # images decoded at a time to recognise a folder
SAMPLE_MAX = 48  # ... until ENOUGH_RBC red cells were measured, or this many images were decoded
ENOUGH_RBC = 8  # pooled single red cells after which no more images are decoded
FIELD_MIN_PX = 4 * CROP_MAX_PX  # long side from which an image whose red cells cannot be measured is a field
# Long / short side from which images are not taken for crops on their red cells alone: crops are square
# around their cell (PBC 360 x 363, CellaVision, Matek 400 x 400), camera fields 4:3 or wider (BCCD 640 x 480),
# and a few large objects mistaken for red cells must not turn a folder of fields into one cell per field.
CROP_MAX_ASPECT = 1.2
MAX_FIELD_PX = 64_000_000  # a bigger image is a scan: convert it to a tiled TIFF and use the slides source


@dataclass(frozen=True)
class FieldsRef(SlideRef):
    """A patient's fields; `image_mpp[i]` overrides the mpp of `images[i]` (manifest rows), None = not given;
    `mpp_estimate` is the run's red-cell estimate when `fields.mpp_scope` is "run" (then also `mpp`)."""

    image_mpp: tuple[float | None, ...] = ()
    mpp_estimate: dict | None = None

    def mpp_of(self, i: int) -> tuple[float | None, str | None]:
        """The given mpp of field i and where it came from (None: estimate it from red cells)."""
        if self.image_mpp and self.image_mpp[i] is not None:
            return self.image_mpp[i], self.mpp_source or "manifest"
        return self.mpp, self.mpp_source


@SOURCES.register("fields")
class FieldSource:
    """Per-patient folders of microscope field images (jpg/png/bmp/tif at any depth); one bag per patient."""

    def discover(self, input: Path, mpp: float | None = None) -> list[SlideRef]:
        input = Path(input)
        mpp = check_mpp(mpp, "--mpp")
        if not input.is_dir():
            raise InputError(f"{input}: not a folder (expected one sub-folder of field images per patient)")
        refs: list[SlideRef] = [
            FieldsRef(p.name, p.name, p, "fields", mpp, "user" if mpp is not None else None, list_images(p))
            for p in patient_folders(input)
        ]
        if not any(r.images for r in refs):
            loose = list_images(input)
            hint = (
                f" ({len(loose)} images lie directly in it: put each patient's fields in a sub-folder, or list "
                "them in a manifest with a patient_id column)"
                if loose
                else ""
            )
            raise InputError(
                f"{input}: no field images found (expected <patient_id>/**/*.{{jpg,png,bmp,tif}}){hint}"
            )
        return refs


def read_field_image(path: Path) -> np.ndarray:
    """One field as H x W x 3 uint8 RGB (alpha composited on white). Raises `SlideError` naming the file when it
    cannot be read, is grayscale (a stained smear needs colour: chromatin and red cells differ by hue), or is
    too large to be a camera field."""
    from features.sources.base import composite_on_white, regular_file

    regular_file(Path(path), "image")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_FIELD_PX:
                raise SlideError(
                    str(path),
                    f"{img.width} x {img.height} px is a scan, not a camera field; convert it to a tiled TIFF "
                    "and use --source slides",
                )
            img.load()
            if img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
                raise SlideError(str(path), _GREY)
            if img.mode in ("RGBA", "LA", "P", "PA") or "transparency" in img.info:
                rgb = composite_on_white(np.asarray(img.convert("RGBA")))
            else:
                rgb = np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise SlideError(str(path), f"cannot read image ({' '.join(str(exc).split())})") from None
    step = max(1, rgb.shape[0] * rgb.shape[1] // 50_000)
    sample = rgb.reshape(-1, 3)[::step].astype(np.int16)
    # R = G = B everywhere (JPEG leaves +-1 or 2) in a picture with content; a blank frame is left to QC
    if np.abs(sample - sample[:, 1:2]).max() <= 2 and np.ptp(sample[:, 1]) > 30:
        raise SlideError(str(path), _GREY)
    return rgb


_GREY = (
    "grayscale image: a stained smear field needs colour (chromatin and red cells differ by hue); export RGB"
)


class FieldImage:
    """A decoded field with `SlideReader`'s surface: one level, level-0 reads padded with white (glass)."""

    level_downsamples = (1.0,)
    level_count = 1

    def __init__(self, rgb: np.ndarray, mpp: float, mpp_source: str, name: str = "field"):
        self.rgb, self.mpp, self.mpp_source, self.name = rgb, float(mpp), mpp_source, name
        self.dimensions = (rgb.shape[1], rgb.shape[0])
        self.level_dimensions = (self.dimensions,)

    def __enter__(self) -> FieldImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def best_level(self, downsample: float) -> int:
        return 0

    def read_region(self, x: int, y: int, w: int, h: int, level: int = 0) -> np.ndarray:
        out = np.full((int(h), int(w), 3), 255, np.uint8)
        H, W = self.rgb.shape[:2]
        x0, y0, x1, y1 = max(int(x), 0), max(int(y), 0), min(int(x) + int(w), W), min(int(y) + int(h), H)
        if x0 < x1 and y0 < y1:
            out[y0 - int(y) : y1 - int(y), x0 - int(x) : x1 - int(x)] = self.rgb[y0:y1, x0:x1]
        return out

    def read_downsampled(self, target_mpp: float, chunk_px: int = 2048) -> tuple[np.ndarray, float]:
        k = max(1, int(math.floor(target_mpp / self.mpp + 1e-6)))
        return block_mean(self.rgb, k), float(k)


def field_mpps(qc: dict) -> dict[str, float]:
    """file -> mpp of each field of a fields bag, from its QC record (`BagMeta.qc["fields"]`)."""
    return {
        row["file"]: float(row["mpp"])
        for row in qc.get("fields", [])
        if isinstance(row, dict) and row.get("mpp") is not None
    }


def read_field_crops(
    folder: Path,
    names: np.ndarray,
    xy: np.ndarray,
    mpp_by_file: dict[str, float],
    default_mpp: float | None,
    crop_um: float,
    out_px: int,
) -> np.ndarray:
    """len(names) x out_px x out_px x 3 crops of `crop_um` around `xy` (each field's own pixels), each field
    read once at full resolution: what galleries show, the cell as photographed."""
    from features.smear.crops import read_crops

    out = np.empty((len(names), out_px, out_px, 3), np.uint8)
    names = np.asarray(names, dtype=object)
    for name in dict.fromkeys(names.tolist()):  # a gallery's few fields, not a hot path
        path = Path(folder) / str(name)
        if not path.is_file():
            raise SlideError(str(path), "field image not found; move it back or re-extract")
        mpp = mpp_by_file.get(str(name), default_mpp)
        if mpp is None:
            raise SlideError(str(path), "no mpp recorded for this field; re-extract")
        rows = np.flatnonzero(names == name)
        reader = FieldImage(read_field_image(path), mpp, "bag", str(name))
        out[rows] = read_crops(reader, np.asarray(xy)[rows], crop_um, out_px)
    return out


def recognise(root: Path, mpp: float | None = None) -> str:
    """ "fields" or "cells" for a folder of per-patient image folders; `InputError` when it cannot tell."""
    per_patient = max(1, SAMPLE_MAX // 3)  # images from each of the first patients, so a sample spans several
    images = [p / name for p in patient_folders(root)[:SAMPLE_MAX] for name in list_images(p)[:per_patient]]
    return recognise_images(images, mpp, str(root))


def recognise_images(images: list[Path], mpp: float | None, where: str) -> str:
    """ "fields" or "cells" for these images (a sample is decoded); `InputError` naming `where` if unclear."""
    if not images:
        raise InputError(f"{where}: no images")
    spread = [
        images[i]
        for i in np.unique(np.linspace(0, len(images) - 1, min(SAMPLE_MAX, len(images))).astype(int))
    ]
    rounds = -(-len(spread) // SAMPLE)  # each round's images (spread[r::rounds]) span the whole folder
    sizes = [_size(p) for p in spread[::rounds]]
    long_px = float(np.median([max(s) for s in sizes if s] or [0]))
    aspect = float(np.median([max(s) / max(min(s), 1) for s in sizes if s] or [1.0]))
    if 0 < long_px < CROP_MAX_PX:
        return "cells"
    rbc_px, looked = (
        (7.5 / mpp, "") if mpp is not None else _red_cell_px([spread[r::rounds] for r in range(rounds)])
    )
    across = long_px / rbc_px if rbc_px else None
    if across is not None and across >= FIELD_MIN_RBC:
        return "fields"
    if across is not None and across <= CROP_MAX_RBC and aspect < CROP_MAX_ASPECT:
        return "cells"
    if across is None and long_px >= FIELD_MIN_PX:
        return "fields"
    seen = f"~{across:.1f} red cells across" if across is not None else "no red cells to measure"
    shape = ""
    if across is not None and across <= CROP_MAX_RBC:
        shape = f", but {aspect:.2f}:1 like a camera field, not square like a crop"
    raise InputError(
        f"{where}: cannot tell single-cell crops from microscope fields ({long_px:.0f} px images, {seen}"
        f"{looked}{shape}); pass --source cells or --source fields"
    )


def _red_cell_px(rounds: list[list[Path]]) -> tuple[float | None, str]:
    """The median single red cell's diameter in px (None: too few), measured round after round until
    `ENOUGH_RBC` were found; and how many images that took, for the refusal."""
    from features.smear.mpp_estimate import estimate_mpp, measure_red_cells

    measured, estimate = {}, None
    for batch in rounds:
        for p in batch:
            try:
                measured[str(p)] = measure_red_cells(read_field_image(p))
            except SlideError:
                continue  # unreadable or grayscale: the extraction reports it, one line per image
        estimate = estimate_mpp(measured, min_red_cells=3)
        if estimate is not None and estimate.n_cells >= ENOUGH_RBC:
            break
    return (estimate.rbc_diameter_px if estimate is not None else None), f" in {len(measured)} image(s)"


def is_field_tiff(path: Path) -> bool:
    """A plain (untiled, single-page) TIFF is a camera field; a tiled or multi-page one is a slide."""
    return tiff_layout(path) == "plain"


def tiff_layout(path: Path) -> str | None:
    """ "plain" (untiled, single page: a field), "tiled" (tiled or multi-page: a slide), or None when it is not a
    regular file or PIL cannot read it (the reader that gets it says what is wrong, in one line)."""
    if not _regular(path):
        return None
    try:
        with Image.open(path) as img:
            tiled = 322 in getattr(img, "tag_v2", {})  # TileWidth
            return "plain" if not tiled and getattr(img, "n_frames", 1) == 1 else "tiled"
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _size(path: Path) -> tuple[int, int] | None:
    if not _regular(path):
        return None
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _regular(path: Path) -> bool:
    """Opening anything but a regular file (a FIFO named x.jpg) could block: such paths are never opened."""
    try:
        return stat.S_ISREG(Path(path).stat().st_mode)
    except OSError:
        return False


def common_root(paths: list[Path]) -> Path:
    """The deepest folder holding every path (the source folder of a manifest patient's fields)."""
    return Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))


__all__ = [
    "FieldImage",
    "FieldSource",
    "FieldsRef",
    "field_mpps",
    "is_field_tiff",
    "read_field_crops",
    "read_field_image",
    "recognise",
    "recognise_images",
    "tiff_layout",
]
