"""A CSV manifest: `slide_id, path[, patient_id][, mpp]`, one row per slide (or per patient folder of cells).

Why a manifest: slide file names are rarely the ids the label table uses, several slides can belong to one
patient, and old scans often lack a pixel size. Paths are relative to the manifest's folder (absolute paths
work too). A path may be a whole-slide file, any file of a DICOM series (or the folder holding it), a folder
of single-cell images (`kind="cells"`) or of microscope fields (`kind="fields"`, told apart by
`features.sources.fields.recognise_images`), an `.h5` feature file, or one microscope field image (jpg, png,
bmp, or an untiled single-page TIFF). Field rows of one patient (`patient_id`, else `slide_id`) form one bag
named after the patient, each field keeping its row's mpp.

mpp precedence: a row's own `mpp` value > `--mpp` (fills the rows that have none) > the slide's metadata. The
row wins because it is the more specific statement about that one scan.

Two kinds of bad row, told apart because they ask for different things. A malformed manifest (a bad header,
a row with too many or too few fields, an empty or duplicate slide_id, an mpp that is not a plausible number)
is misuse: the whole file is refused before any work, in one `InputError` line that names every bad row (row
numbers as a spreadsheet shows them, header = row 1). A well-formed row whose file is missing or of no usable
kind is a bad input like an unreadable slide in a folder: it becomes an `UnusableRow`, which the extractor
fails alone (one line naming the row and the file) while the other rows are extracted.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from features.core.errors import InputError
from features.sources import SOURCES
from features.sources.base import IMAGE_SUFFIXES, SLIDE_SUFFIXES, SlideRef, check_mpp, implausible_mpp
from features.sources.cells import list_images
from features.sources.fields import FieldsRef, common_root, is_field_tiff, recognise_images

REQUIRED = ("slide_id", "path")
OPTIONAL = ("patient_id", "mpp")
UNUSABLE = "unusable"  # the kind of an `UnusableRow`


@dataclass(frozen=True)
class UnusableRow(SlideRef):
    """A well-formed manifest row whose file is missing or of no usable kind (kind `UNUSABLE`): the extractor
    records it as failed with `problem` (one line: slide id, manifest row, file, the fix) and opens nothing."""

    problem: str = ""


def _resolve(path: Path, mpp: float | None) -> tuple[str, Path, tuple[str, ...]] | str:
    """(kind, path, images) for a usable path, else the reason it is not usable. kind "field" is one field
    image (grouped into a patient's "fields" bag by the caller)."""
    try:
        return _resolve_path(path, mpp)
    except OSError as exc:  # a folder this user may not list: that row's problem, not the manifest's
        return f"cannot be read ({exc.strerror or exc})"


def _resolve_path(path: Path, mpp: float | None) -> tuple[str, Path, tuple[str, ...]] | str:
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in SLIDE_SUFFIXES and not (suffix in IMAGE_SUFFIXES and is_field_tiff(path)):
            return "slide", path, ()
        if suffix in IMAGE_SUFFIXES:
            return "field", path, ()
        if suffix == ".h5":
            return "h5", path, ()
        return f"{path.name} is not a whole-slide file, a field image, a cell-image folder or an .h5 file"
    if path.is_dir():
        dicom = sorted(p for p in path.iterdir() if p.suffix.lower() == ".dcm" and not p.name.startswith("."))
        if dicom:
            return "slide", dicom[0], ()
        images = list_images(path)
        if images:
            try:
                kind = recognise_images([path / i for i in images], mpp, str(path))
            except InputError as exc:
                return str(exc).removeprefix(f"{path}: ")
            return kind, path, images
        return "folder holds no DICOM series and no cell or field images"
    if path.exists() or path.is_symlink():
        return "not a regular file or folder (a broken link, FIFO or device is never opened)"
    return "file not found"


@SOURCES.register("manifest")
class ManifestSource:
    """A CSV of slide_id, path[, patient_id][, mpp]; paths relative to the manifest's folder."""

    def discover(self, input: Path, mpp: float | None = None) -> list[SlideRef]:
        input = Path(input)
        default_mpp = check_mpp(mpp, "--mpp")
        header, rows = _read_manifest(input)
        manifest = _Rows(input, header, default_mpp)
        for number, row in enumerate(rows, start=2):
            problem = manifest.add(number, row)
            if problem:
                manifest.problems.append(f"row {number}: {problem}")
        if manifest.problems:
            n = len(manifest.problems)
            raise InputError(
                f"{input}: {n} bad row{'s' if n > 1 else ''}, fix or remove them: "
                + "; ".join(manifest.problems)
            )
        refs = manifest.refs + [_patient_fields(patient, rows) for patient, rows in manifest.fields.items()]
        if not refs:
            raise InputError(f"{input}: no rows (expected one row per slide: slide_id, path)")
        return refs


def _read_manifest(input: Path) -> tuple[list[str], list[list[str]]]:
    """The manifest's header (as written) and its rows; a missing file, bad encoding or bad header is an error."""
    if not input.is_file():
        raise InputError(f"{input}: manifest not found (expected a CSV with columns slide_id, path)")
    try:
        with input.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{input}: not a readable UTF-8 CSV ({exc}); save it as CSV UTF-8") from None
    if not rows:
        raise InputError(f"{input}: empty manifest (expected a header slide_id, path[, patient_id][, mpp])")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [h for h in header if h not in REQUIRED + OPTIONAL]
    if missing or unknown:
        raise InputError(
            f"{input}: header {rows[0]} must have columns slide_id, path and optionally patient_id, mpp"
            + (f" (missing: {', '.join(missing)})" if missing else "")
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    return header, rows[1:]


class _Rows:
    """The manifest's rows read so far: the inputs they name (unusable files included), field rows by patient,
    and what makes the manifest malformed."""

    def __init__(self, input: Path, header: list[str], default_mpp: float | None):
        self.input, self.header, self.default_mpp = input, header, default_mpp
        self.col = {name: header.index(name) for name in header}
        self.refs: list[SlideRef] = []
        self.fields: dict[str, list[tuple[Path, float | None, str | None]]] = {}  # patient -> field rows
        self.problems: list[str] = []
        self.seen: dict[str, int] = {}  # slide_id -> its row number

    def add(self, number: int, row: list[str]) -> str | None:
        """Take one row; what makes it malformed, if anything (the caller adds the row number). A well-formed
        row whose file cannot be used is taken as an `UnusableRow`: it fails alone, the manifest stands."""
        if not any(cell.strip() for cell in row):
            return None  # blank lines are harmless
        if len(row) != len(self.header):
            return f"{len(row)} fields, header has {len(self.header)}"
        value = {name: row[i].strip() for name, i in self.col.items()}
        slide_id, raw_path = value["slide_id"], value["path"]
        if not slide_id or not raw_path:
            return "empty slide_id or path"
        if slide_id in self.seen:
            return f"slide_id {slide_id!r} already on row {self.seen[slide_id]}"
        self.seen[slide_id] = number
        path = Path(raw_path) if Path(raw_path).is_absolute() else self.input.parent / raw_path
        row_mpp = value.get("mpp", "")
        given = _number(row_mpp)
        if row_mpp and given is None:
            problem = implausible_mpp(_float(row_mpp))
            return f"{raw_path}: {problem or f'mpp {row_mpp!r} is not a number (µm/px)'}"
        if row_mpp:
            ref_mpp, source = given, "manifest"
        else:
            ref_mpp, source = self.default_mpp, ("user" if self.default_mpp is not None else None)
        patient = value.get("patient_id") or slide_id
        resolved = _resolve(path, given or self.default_mpp)
        if isinstance(resolved, str):  # the row is fine, its file is not: that row fails alone
            problem = f"{slide_id}: {self.input} row {number}: {raw_path}: {resolved}; fix the path or remove the row"
            self.refs.append(UnusableRow(slide_id, patient, path, UNUSABLE, ref_mpp, source, problem=problem))
            return None
        kind, path, images = resolved
        if kind == "field":
            self.fields.setdefault(patient, []).append((path, ref_mpp, source))
        elif kind == "fields":
            self.refs.append(FieldsRef(slide_id, patient, path, kind, ref_mpp, source, images))
        else:
            self.refs.append(SlideRef(slide_id, patient, path, kind, ref_mpp, source, images))
        return None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _number(text: str) -> float | None:
    value = _float(text)
    return None if value is None or implausible_mpp(value) else value


def _patient_fields(patient: str, rows: list[tuple[Path, float | None, str | None]]) -> FieldsRef:
    """One bag of a patient's field rows: paths relative to the folder holding them all, sorted, each with
    its own mpp (None where neither the row nor --mpp gave one: estimated from red cells)."""
    root = common_root([path for path, _, _ in rows])
    entries = sorted((path.resolve().relative_to(root).as_posix(), mpp) for path, mpp, _ in rows)
    sources = {source for _, mpp, source in rows if mpp is not None}
    return FieldsRef(
        patient,
        patient,
        root,
        "fields",
        None,
        sources.pop() if len(sources) == 1 else ("manifest" if sources else None),
        tuple(name for name, _ in entries),
        image_mpp=tuple(mpp for _, mpp in entries),
    )
