"""Sources: from an input path to the list of slides (or patient cell folders) to extract, as `SlideRef`s.

Registered in `SOURCES` (see `mil list sources`): `slides` (whole-slide files via OpenSlide), `cells`
(per-patient folders of single-cell images), `fields` (per-patient folders of microscope field images),
`manifest` (a CSV of slide_id, path[, patient_id][, mpp]) and `h5` (CLAM / TRIDENT / STAMP feature files,
imported without re-encoding).
Every source class has `discover(input, mpp=None) -> list[SlideRef]` (`features.sources.base.Source`);
`open_instances(meta, bag)` reopens a finished bag's source to show its cells (`features.sources.instances`).
"""

from __future__ import annotations

from pathlib import Path

from features.core.errors import InputError
from features.core.registry import Registry
from features.sources.base import SlideRef

SOURCES = Registry(
    "source",
    modules=(
        "features.sources.slides",
        "features.sources.cells",
        "features.sources.fields",
        "features.sources.manifest",
        "features.sources.h5",
    ),
)


from features.sources.instances import open_instances  # noqa: E402 - after SOURCES, which cells.py imports

__all__ = ["SOURCES", "SlideRef", "detect_source", "discover", "open_instances"]


def detect_source(input: Path, mpp: float | None = None) -> str:
    """The source `auto` picks: a .csv file -> manifest; a folder of .h5 files (or one .h5) -> h5; a folder
    with whole-slide files (or sub-folders of DICOM files) or one slide file -> slides; a folder of
    sub-folders with images -> cells or fields (`features.sources.fields.recognise`: a crop is one cell, a
    field many cells wide; refused with the fix when it cannot tell)."""
    from features.sources.base import SLIDE_SUFFIXES
    from features.sources.cells import list_images, patient_folders
    from features.sources.slides import has_slides

    input = Path(input)
    if input.is_file():
        suffix = input.suffix.lower()
        if suffix == ".csv":
            return "manifest"
        if suffix == ".h5":
            return "h5"
        if suffix in SLIDE_SUFFIXES:
            return "slides"
        raise InputError(f"{input}: cannot tell what this file is (expected a .csv manifest, a slide or .h5)")
    if not input.is_dir():
        raise InputError(f"{input}: no such file or folder")
    files = [p for p in input.iterdir() if p.is_file() and not p.name.startswith(".")]
    if any(p.suffix.lower() == ".h5" for p in files) and not any(
        p.suffix.lower() in SLIDE_SUFFIXES for p in files
    ):
        return "h5"
    if has_slides(input):
        return "slides"
    if any(list_images(p) for p in patient_folders(input)):
        from features.sources.fields import recognise

        return recognise(input, mpp)
    raise InputError(
        f"{input}: found no slides, cell-image folders or .h5 files (expected whole-slide files, "
        "one sub-folder of cell images per patient, .h5 feature files, or pass a .csv manifest)"
    )


def discover(input: Path, source: str = "auto", mpp: float | None = None) -> list[SlideRef]:
    """The slides (or patient folders) under `input`, via the named source or the one `auto` detects."""
    name = detect_source(Path(input), mpp) if source == "auto" else source
    if name not in SOURCES:
        SOURCES.get(name)  # raises ConfigError listing the registered sources
    return SOURCES.create(name).discover(Path(input), mpp=mpp)
