"""A folder of per-patient single-cell image folders (CellaVision-style exports, as in SCEMILA).

Layout: `ROOT/<patient_id>/**/<image>`; every image at any depth below a patient folder is one instance and
keeps its path relative to that folder (posix), so attention maps point back to the exact file. Folder names
are kept as found (spaces, commas, unicode): the bag store sanitises them into keys, ids stay readable.
Hidden entries (".DS_Store", macOS "._x.jpg" forks) are not images and are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from features.core.errors import InputError, SlideError
from features.sources import SOURCES
from features.sources.base import (
    IMAGE_SUFFIXES,
    SlideRef,
    check_mpp,
    composite_on_white,
    not_data,
    regular_file,
)


def list_images(folder: Path) -> tuple[str, ...]:
    """Image paths below `folder`, relative and posix, sorted (hidden files and folders skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not not_data(d)]
        rel = Path(dirpath).relative_to(folder)
        found += [
            (rel / f).as_posix()
            for f in filenames
            if not not_data(f) and Path(f).suffix.lower() in IMAGE_SUFFIXES
        ]
    return tuple(sorted(found))


def patient_folders(root: Path) -> list[Path]:
    """The sub-folders of `root` that may be patients: not hidden, and not a zarr store (a bag store written
    into the cohort folder, `-o cells/bags.zarr`, is no patient on the next run)."""
    return sorted(
        p for p in root.iterdir() if p.is_dir() and not not_data(p.name) and not (p / "zarr.json").is_file()
    )


@SOURCES.register("cells")
class CellFolderSource:
    """Per-patient folders of single-cell images (png/jpg/tif/bmp at any depth), one instance per image."""

    def discover(self, input: Path, mpp: float | None = None) -> list[SlideRef]:
        input = Path(input)
        mpp = check_mpp(mpp, "--mpp")
        if not input.is_dir():
            raise InputError(f"{input}: not a folder (expected one sub-folder of cell images per patient)")
        patients = patient_folders(input)
        refs = [
            SlideRef(p.name, p.name, p, "cells", mpp, "user" if mpp is not None else None, list_images(p))
            for p in patients
        ]
        if not any(r.images for r in refs):
            raise InputError(
                f"{input}: no cell images found (expected <patient_id>/**/*.{{png,jpg,jpeg,tif,tiff,bmp}})"
            )
        return refs


def read_cell_image(path: Path) -> np.ndarray:
    """One cell image as H x W x 3 uint8 RGB: palette/grey are expanded, alpha is composited on white, 16-bit
    images are scaled by their own maximum range (CellaVision exports are 8-bit; this keeps 16-bit TIFFs usable).
    An unreadable file raises `SlideError` naming it (the extractor leaves that image out, one line, or with
    `extract.strict` fails the patient; never the run). Anything but a regular file is refused unopened."""
    regular_file(Path(path), "image")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                top = 65535.0 if arr.max() > 255 else 255.0
                grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2)
            if img.mode in ("RGBA", "LA", "P", "PA") or "transparency" in img.info:
                return composite_on_white(np.asarray(img.convert("RGBA")))
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise SlideError(str(path), f"cannot read image ({' '.join(str(exc).split())})") from None
