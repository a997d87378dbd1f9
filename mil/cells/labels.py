"""Cell labels from the three places they come from, as one table: `slide_id, file | instance | x, y, cell_type`.

- A folder of per-patient cell images whose class is a folder in the path (CellaVision and similar exports):
  `ROOT/<patient>/<any folders>/<class>/<image>`. The class is the image's parent folder, kept as written
  (spaces, commas, "Lymphocyte, variant", unicode); the patient folder is the slide id, as `mil extract`
  names it, and `file` the path below it, as the bag stores it. An image directly in the patient folder has
  no class folder and stays unlabelled.
- A CSV with `slide_id`, `cell_type` and a way to find the cell: `file` (cell images, field images with x, y),
  `instance` (the bag row) or `x, y` (level-0 px).
- A `mil synth` cohort folder (or its `truth/` folder): every truth table it wrote (slides by position, cell
  crops by file, fields by file and position). Red cells and platelets come along with `nucleated` 0.

`read_cell_labels` recognises which one a path is; `mil.cells.join` places the table on a bag store.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from features.core.errors import InputError

LOCATORS = ("file", "instance", "x", "y")


def read_cell_labels(path: str | Path) -> tuple[pd.DataFrame, str]:
    """(table, kind) with kind "folders", "csv" or "synth"; the table has `slide_id`, `cell_type` (str) and
    the locator columns it has."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in (".csv", ".tsv", ".txt"):
            raise InputError(
                f"{path}: cell labels are a CSV, a folder of class folders or a `mil synth` cohort"
            )
        return read_label_csv(path), "csv"
    if not path.is_dir():
        raise InputError(f"{path}: no such file or folder (cell labels: a CSV, image folders or synth truth)")
    truth = _synth_truth_folder(path)
    if truth is not None:
        return read_synth_truth(truth), "synth"
    return read_label_folders(path), "folders"


def read_label_csv(path: Path) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        table = pd.read_csv(path, sep=sep, dtype={"slide_id": str, "file": str, "cell_type": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable CSV ({' '.join(str(exc).split())})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("slide_id", "cell_type") if c not in table.columns]
    if missing:
        raise InputError(
            f"{path}: missing column {missing[0]!r} (need slide_id, cell_type and file | instance | x,y)"
        )
    has_xy = {"x", "y"} <= set(table.columns)
    if not ({"file", "instance"} & set(table.columns) or has_xy):
        raise InputError(f"{path}: no column to find the cells by: add file, instance or x and y")
    if "instance" in table.columns and not pd.api.types.is_integer_dtype(table["instance"]):
        raise InputError(f"{path}: column instance must hold whole numbers (the bag row, from 0)")
    table["cell_type"] = table["cell_type"].fillna("").astype(str).str.strip()
    return table


def read_label_folders(root: Path) -> pd.DataFrame:
    """One row per image below ROOT/<patient>/: its parent folder is its class (none directly in the patient
    folder)."""
    from features.sources.cells import list_images, patient_folders

    rows = []
    for folder in patient_folders(root):
        for rel in list_images(folder):
            parent = PurePosixPath(rel).parent
            rows.append((folder.name, rel, parent.name if parent.parts else ""))
    if not rows:
        raise InputError(f"{root}: no cell images found (expected <patient>/<any folders>/<class>/<image>)")
    if not any(cls for _, _, cls in rows):
        raise InputError(
            f"{root}: every image sits directly in its patient folder, so none has a class folder "
            "(expected <patient>/<any folders>/<class>/<image>)"
        )
    return pd.DataFrame(rows, columns=["slide_id", "file", "cell_type"])


def _synth_truth_folder(path: Path) -> Path | None:
    for candidate in (path / "truth", path):
        if any((candidate / kind).is_dir() for kind in ("slides", "cells", "fields")) and (
            candidate.name == "truth" or (candidate.parent / "cohort.json").is_file()
        ):
            return candidate
    return None


def read_synth_truth(truth: Path) -> pd.DataFrame:
    """Every table under truth/: slides/<slide_id>.csv (x, y), cells/<patient>.csv (file) and
    fields/<patient>.csv (file, x, y). `layout` says which, so a cells bag never takes a slide's rows."""
    frames = []
    for layout in ("slides", "cells", "fields"):
        for csv in sorted((truth / layout).glob("*.csv")):
            frame = pd.read_csv(csv, dtype={"file": str, "cell_type": str})
            frame.insert(0, "slide_id", csv.stem)
            frame["layout"] = layout
            frames.append(frame)
    if not frames:
        raise InputError(f"{truth}: no truth tables (expected slides/, cells/ or fields/ with CSV files)")
    table = pd.concat(frames, ignore_index=True)
    keep = ["slide_id", "layout", "cell_type", "nucleated", *[c for c in LOCATORS if c in table.columns]]
    return table[keep]
