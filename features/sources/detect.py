"""`--source auto`: what an input path holds, which source reads it, and the mixes it refuses.

A folder is surveyed once, at any depth (hidden entries and bag stores skipped): `.h5` feature files,
whole-slide files (as `slide_files` finds them, nested per patient or not), folders of cell or field images
(the sub-folders of the input: one per patient) and images lying directly in the input. Exactly one kind
picks its source; two kinds are refused in one line naming what was found and the fix, because every source
reads one kind and would skip the rest without a word. A `.tif`/`.tiff` is a slide when tiled or multi-page
and an image when plain (`features.sources.fields.tiff_layout`), judged per folder (`_sort_files`: a plain
TIFF beside slides is a slide that fails alone, an unreadable one beside images an image left out alone; a
folder of plain TIFF crops costs `TIFF_CHECKS` header reads). Images beside a `.vms`/`.vmu` file are that
Hamamatsu slide's tiles, not inputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from features.core.errors import InputError
from features.sources.base import IMAGE_SUFFIXES, SLIDE_SUFFIXES, not_data

TIFF = frozenset(SLIDE_SUFFIXES & IMAGE_SUFFIXES)  # .tif, .tiff: a slide or a field, by their layout
VMS = frozenset({".vms", ".vmu"})  # Hamamatsu: an index file and the JPEG tiles beside it
TIFF_CHECKS = 16  # TIFF headers read per folder when all are plain (a folder of 100k TIFF crops stays fast)


@dataclass
class Survey:
    """What a folder holds, as paths (files; for `image_folders`, the patient folders)."""

    h5: list[Path] = field(default_factory=list)
    slides: list[Path] = field(default_factory=list)
    image_folders: list[Path] = field(default_factory=list)
    loose: list[Path] = field(default_factory=list)  # images directly in the folder, outside any patient's


def survey(root: Path) -> Survey:
    """The h5 files, slides, patient image folders and loose images below `root` (see the module doc)."""
    from features.sources.cells import patient_folders

    found = Survey()
    files = sorted(e.name for e in root.iterdir() if not not_data(e.name) and not e.is_dir())
    h5, slides, images = _sort_files(root, files)
    found.h5 += h5
    found.slides += slides
    found.loose += images
    for folder in patient_folders(root):
        holds_images = False
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not not_data(d))
            names = sorted(f for f in filenames if not not_data(f))
            h5, slides, images = _sort_files(Path(dirpath), names)
            found.h5 += h5
            found.slides += slides
            holds_images = holds_images or bool(images)
        if holds_images:
            found.image_folders.append(folder)
    return found


def _sort_files(folder: Path, names: list[str]) -> tuple[list[Path], list[Path], list[Path]]:
    """(h5, slides, images) among the files `names` of one folder. A TIFF goes with its folder: all are slides
    where one is (a plain one then fails alone at open, one line), else images (an unreadable one is left out
    by the image reader, one line); only unreadable TIFFs alone are slides (OpenSlide says what is wrong)."""
    from features.sources.fields import tiff_layout

    h5: list[Path] = []
    slides: list[Path] = []
    images: list[Path] = []
    tiffs: list[Path] = []
    vms = any(Path(n).suffix.lower() in VMS for n in names)
    for name in names:
        path, suffix = folder / name, Path(name).suffix.lower()
        if suffix == ".h5":
            h5.append(path)
        elif suffix in TIFF:
            tiffs.append(path)
        elif suffix in SLIDE_SUFFIXES:
            slides.append(path)
        elif suffix in IMAGE_SUFFIXES and not vms:
            images.append(path)
    layouts: list[str | None] = []
    for path in tiffs if not slides else ():
        layouts.append(tiff_layout(path))
        if layouts[-1] == "tiled" or len(layouts) == TIFF_CHECKS:
            break  # one slide decides; after TIFF_CHECKS without one (crops, fields) the rest go with them
    if slides or "tiled" in layouts or (tiffs and not images and "plain" not in layouts):
        slides += tiffs
    else:
        images += tiffs
    return h5, slides, images


def detect_source(input: Path, mpp: float | None = None) -> str:
    """The source `auto` picks: a .csv file -> manifest; .h5 files -> h5; whole-slide files (at any depth,
    DICOM series included) or one slide file -> slides; a folder of sub-folders with images -> cells or
    fields (`features.sources.fields.recognise`: a crop is one cell, a field many cells wide; refused with the
    fix when it cannot tell). Two kinds in one folder, or images outside patient sub-folders, are refused."""
    from features.sources.fields import recognise, recognise_images, tiff_layout

    input = Path(input)
    if input.is_file():
        suffix = input.suffix.lower()
        if suffix == ".csv":
            return "manifest"
        if suffix == ".h5":
            return "h5"
        if suffix in SLIDE_SUFFIXES and not (suffix in TIFF and tiff_layout(input) == "plain"):
            return "slides"
        if suffix in IMAGE_SUFFIXES:
            raise InputError(
                f"{input}: one image, not a slide; put each patient's cell or field images in a sub-folder "
                "of one folder and pass that folder, or list them in a manifest with a patient_id column"
            )
        raise InputError(f"{input}: cannot tell what this file is (expected a .csv manifest, a slide or .h5)")
    if not input.is_dir():
        raise InputError(f"{input}: no such file or folder")
    found = survey(input)
    kinds = [
        (found.h5, "h5", _some(found.h5, input, ".h5 feature file")),
        (found.slides, "slides", _some(found.slides, input, "whole-slide file")),
        (found.image_folders, "cells or fields", _some(found.image_folders, input, "folder of cell or field "
                                                       "images", "folders of cell or field images")),
        (found.loose, "cells or fields", _some(found.loose, input, "image directly in it", "images directly "
                                              "in it")),
    ]  # fmt: skip
    present = [(what, source) for paths, source, what in kinds if paths]
    sources = list(dict.fromkeys(source for _, source in present))
    if len(sources) > 1:
        names = [name for source in sources for name in source.split(" or ")]
        raise InputError(
            f"{input}: mixes {_and([what for what, _ in present], 'with')}; put each kind in a folder of its "
            f"own, or pass --source {_and(names, 'or')} to read one kind only"
        )
    if found.image_folders and found.loose:
        raise InputError(
            f"{input}: {present[1][0]} beside {present[0][0]}; move each image into its patient's sub-folder "
            "(every sub-folder is one patient)"
        )
    if found.h5:
        return "h5"
    if found.slides:
        return "slides"
    if found.loose:
        try:
            word = {"fields": "fields", "cells": "cell images"}[
                recognise_images(found.loose, mpp, str(input))
            ]
        except InputError:
            word = "cell or field images"
        raise InputError(
            f"{input}: no images in patient sub-folders ({len(found.loose)} image(s) lie directly in it: put "
            f"each patient's {word} in a sub-folder, or list them in a manifest with a patient_id column)"
        )
    if found.image_folders:
        return recognise(input, mpp)
    raise InputError(
        f"{input}: found no slides, cell-image folders or .h5 files (expected whole-slide files, "
        "one sub-folder of cell images per patient, .h5 feature files, or pass a .csv manifest)"
    )


def _some(paths: list[Path], root: Path, one: str, many: str | None = None) -> str:
    """'2 whole-slide files (a.svs, P1/b.svs)': a count and the first two, relative to `root`."""
    names = [p.relative_to(root).as_posix() for p in paths[:2]]
    more = ", ..." if len(paths) > 2 else ""
    noun = one if len(paths) == 1 else many or f"{one}s"
    return f"{len(paths)} {noun} ({', '.join(names)}{more})"


def _and(parts: list[str], word: str = "and") -> str:
    return f"{', '.join(parts[:-1])} {word} {parts[-1]}" if len(parts) > 1 else parts[0]


__all__ = ["Survey", "detect_source", "survey"]
