"""What every source yields: one `SlideRef` per slide (or per patient folder of cell images).

A source only finds inputs and names them; it opens nothing. Pixels are read later, once per slide, by
`features.sources.openslide_reader.SlideReader` (slides) or `features.sources.cells.read_cell_image` (cells).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

# Whole-slide formats OpenSlide 4 reads (generic tiled TIFF included). `.dcm` files are grouped into one slide
# per DICOM series by the slides source. A file with one of these suffixes may still fail to open (a plain,
# untiled TIFF): that is a `SlideError` at open time, never a silent skip.
SLIDE_SUFFIXES = frozenset(
    {".svs", ".ndpi", ".vms", ".vmu", ".mrxs", ".scn", ".tif", ".tiff", ".bif", ".svslide", ".dcm", ".czi"}
)
# Single-cell image exports (CellaVision, SCEMILA): one image per instance.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})


@dataclass(frozen=True)
class SlideRef:
    """One bag to build: a slide file, a patient's folder of cell images, or an h5 feature file.

    `slide_id` is kept as found (spaces, commas, unicode); the bag store sanitises it into a key.
    `kind="cells"` with `images=()` is a patient folder without any image: it is returned (not dropped) so the
    extractor reports that patient as failed instead of silently shrinking the cohort.
    """

    slide_id: str
    patient_id: str
    path: Path  # slide file (any file of a DICOM series), patient folder, or h5 file
    kind: str  # "slide" | "cells" | "h5"
    mpp: float | None = None  # override from --mpp or a manifest (None = read from the slide later)
    mpp_source: str | None = None  # "user" | "manifest" | None
    images: tuple[str, ...] = ()  # kind="cells": image paths relative to `path`, sorted, posix

    def __post_init__(self) -> None:
        # A file or folder name in another encoding (Latin-1 exports) reaches Python with lone surrogates,
        # which no message, key or JSON can carry: ids keep the bytes visible as \xNN instead.
        object.__setattr__(self, "slide_id", printable(self.slide_id))
        object.__setattr__(self, "patient_id", printable(self.patient_id))


class Source(Protocol):
    """A registered source (`SOURCES`): turns an input path into slide references.

    `discover` raises `InputError` (one line per problem, naming the path and what was expected) and returns
    refs in a stable order (sorted by path) so reruns and resumes see the same list.
    """

    def discover(self, input: Path, mpp: float | None = None) -> list[SlideRef]: ...


def printable(text: str) -> str:
    """`text` with the undecodable bytes of a non-UTF-8 file name (lone surrogates) shown as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def not_data(name: str) -> bool:
    """A file or folder name that is never data: dot entries (".DS_Store", macOS "._x.jpg" resource forks,
    ".tmp/") and the "__MACOSX" folder that unzipping a macOS archive leaves beside the patients."""
    return name.startswith(".") or name == "__MACOSX"


def is_hidden(path: Path, root: Path) -> bool:
    """Whether any part of `path` below `root` is not data (`not_data`)."""
    return any(not_data(part) for part in path.relative_to(root).parts)


# Micrometres per pixel a smear can have: slide scanners give 0.1-2 (x100 oil to x5), microscope cameras
# at x100 oil down to ~0.03. Outside this a value is a unit slip (500 for 0.5, nm for µm, a TIFF resolution
# read in the wrong unit) that would send QC and detection into minutes of work on nonsense scales.
MPP_PLAUSIBLE = (0.02, 2.0)


def implausible_mpp(mpp: float | None, source: str | None = None) -> str | None:
    """Why `mpp` cannot be a smear's pixel size (one line; `source` says where it came from), or None when it
    can (or is not given). The one bound for `--mpp`, manifest rows, slide metadata and the red-cell estimate
    of microscope fields; callers add the fix."""
    if mpp is None:
        return None
    lo, hi = MPP_PLAUSIBLE
    if not (lo <= mpp <= hi):  # also NaN
        where = f" (from {source})" if source else ""
        return f"mpp {mpp:g} µm/px{where} is implausible; smears are scanned at 0.1–2 (photographed down to {lo})"
    return None


def check_mpp(mpp: float | None, where: str) -> float | None:
    """An mpp override must be a number of micrometres per level-0 pixel within `MPP_PLAUSIBLE`."""
    from features.core.errors import InputError

    if mpp is None:
        return None
    try:
        value = float(mpp)
    except (TypeError, ValueError):
        raise InputError(f"{where}: mpp {mpp!r} is not a number (micrometres per pixel, e.g. 0.25)") from None
    problem = implausible_mpp(value)
    if problem:
        raise InputError(f"{where}: {problem}; give micrometres per pixel")
    return value


def regular_file(path: Path, what: str = "file") -> None:
    """Refuse, before anything opens it, a path that is not a regular file: opening a FIFO named `x.svs`
    blocks forever, a device reads without end. Raises `SlideError` naming the path."""
    import stat

    from features.core.errors import SlideError

    check_name(path)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise SlideError(str(path), f"cannot read this {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise SlideError(str(path), f"{kind}, not an image or slide file; skipped, never opened")


def check_name(path: Path) -> None:
    """Refuse a path whose name is not valid UTF-8 (bytes of another encoding): readers, keys and messages
    need text. Raises `SlideError` with the name as \\xNN and the fix."""
    from features.core.errors import SlideError

    text = str(path)
    if printable(text) != text:
        raise SlideError(
            printable(text), "the name is not valid UTF-8; rename it (e.g. `convmv -f latin1 -t utf8 -r DIR`)"
        )


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA (not premultiplied, as openslide-python returns it) -> RGB on white: pixels outside the scanned
    area (alpha 0) become glass-white, which is what a slide border looks like, not black. An opaque region
    comes back as a view (no copy: a contiguous copy costs more than OpenSlide's own decode)."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3:4]
    if alpha.min() == 255:
        return rgb
    a = alpha.astype(np.uint16)
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)
