"""A folder (searched recursively) of whole-slide files, or one slide file: one `SlideRef` per slide.

Slide ids are file stems. DICOM is the exception: a whole-slide image is a *series* of .dcm files (one per
level, plus label/overview), so the .dcm files of one folder are grouped by SeriesInstanceUID into one slide
whose path is the first file (OpenSlide finds the rest in the same folder). When two slides would get the
same id (`a.svs` and `a.ndpi`, or the same stem in two folders), both fall back to their path relative to
the input folder, so ids stay unique and readable.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from features.core.errors import InputError
from features.sources import SOURCES
from features.sources.base import SLIDE_SUFFIXES, SlideRef, check_mpp, is_hidden, not_data


def slide_files(root: Path) -> list[Path]:
    """Whole-slide files below `root` (hidden entries skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not not_data(d))
        found += [Path(dirpath) / f for f in filenames if Path(f).suffix.lower() in SLIDE_SUFFIXES]
    return sorted(p for p in found if not is_hidden(p, root))


def _dicom_groups(files: list[Path]) -> list[list[Path]]:
    """Group one folder's .dcm files by series; a file OpenSlide cannot open stays alone (it fails later)."""
    from features.sources.openslide_reader import dicom_series_uid

    series: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        uid = dicom_series_uid(f)
        series[uid if uid is not None else f"unopenable:{f}"].append(f)
    return sorted((sorted(g) for g in series.values()), key=lambda g: g[0])


def _dicom_id(group: list[Path], folder_slides: int) -> str:
    # One series alone in its folder (the usual export: one folder per slide) is named after the folder;
    # otherwise after the common prefix of its file stems ("boxes_0", "boxes_1" -> "boxes").
    if folder_slides == 1:
        return group[0].parent.name
    prefix = os.path.commonprefix([p.stem for p in group]).rstrip("_-. ")
    return prefix or group[0].stem


@SOURCES.register("slides")
class SlideSource:
    """Whole-slide files read through OpenSlide (svs, ndpi, mrxs, scn, tiled tiff, DICOM series, ...)."""

    def discover(self, input: Path, mpp: float | None = None) -> list[SlideRef]:
        input = Path(input)
        mpp = check_mpp(mpp, "--mpp")
        if input.is_file():
            if input.suffix.lower() not in SLIDE_SUFFIXES:
                raise InputError(f"{input}: not a whole-slide file (expected one of {_suffixes()})")
            return [self._ref(input.stem, input, mpp)]
        if not input.is_dir():
            raise InputError(f"{input}: no such file or folder (expected a folder of whole-slide files)")
        by_folder: dict[Path, list[Path]] = defaultdict(list)
        singles: list[Path] = []
        for f in slide_files(input):
            (by_folder[f.parent] if f.suffix.lower() == ".dcm" else singles).append(f)
        named: list[tuple[str, Path]] = [(f.stem, f) for f in singles]
        for folder, files in by_folder.items():
            groups = _dicom_groups(files)
            others = sum(1 for f in singles if f.parent == folder)
            named += [(_dicom_id(g, len(groups) + others), g[0]) for g in groups]
        if not named:
            raise InputError(f"{input}: no whole-slide files found (expected files ending in {_suffixes()})")
        counts = defaultdict(int)
        for slide_id, _ in named:
            counts[slide_id] += 1
        refs = [
            self._ref(slide_id if counts[slide_id] == 1 else path.relative_to(input).as_posix(), path, mpp)
            for slide_id, path in named
        ]
        return sorted(refs, key=lambda r: r.path)

    @staticmethod
    def _ref(slide_id: str, path: Path, mpp: float | None) -> SlideRef:
        return SlideRef(slide_id, slide_id, path, "slide", mpp, "user" if mpp is not None else None)


def _suffixes() -> str:
    return ", ".join(sorted(SLIDE_SUFFIXES))
