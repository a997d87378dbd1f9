"""Sources: from an input path to the list of slides (or patient cell folders) to extract, as `SlideRef`s.

Registered in `SOURCES` (see `mil list sources`): `slides` (whole-slide files via OpenSlide), `cells`
(per-patient folders of single-cell images), `fields` (per-patient folders of microscope field images),
`manifest` (a CSV of slide_id, path[, patient_id][, mpp]) and `h5` (CLAM / TRIDENT / STAMP feature files,
imported without re-encoding).
`--source auto` picks one by what the input holds, refusing a folder that mixes kinds
(`features.sources.detect`). Every source class has `discover(input, mpp=None) -> list[SlideRef]`
(`features.sources.base.Source`);
`open_instances(meta, bag)` reopens a finished bag's source to show its cells (`features.sources.instances`).
"""

from __future__ import annotations

from pathlib import Path

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
    """The source `auto` picks for `input`, or `InputError` naming what was found and the fix (a folder mixing
    kinds, images outside patient sub-folders, nothing readable): `features.sources.detect`."""
    from features.sources.detect import detect_source as detect

    return detect(input, mpp)


def discover(input: Path, source: str = "auto", mpp: float | None = None) -> list[SlideRef]:
    """The slides (or patient folders) under `input`, via the named source or the one `auto` detects."""
    name = detect_source(Path(input), mpp) if source == "auto" else source
    if name not in SOURCES:
        SOURCES.get(name)  # raises ConfigError listing the registered sources
    return SOURCES.create(name).discover(Path(input), mpp=mpp)
