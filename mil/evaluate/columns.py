"""Cell parsing shared by the predictions reader and the labels reader: one rule each for ids, classes, numbers.

Kept apart from `predictions.py` and free of torch, so training's label reader and the task kinds
(`mil.tasks`) can use the same rules.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.core.errors import InputError


def text_column(values: pd.Series) -> pd.Series:
    """Strings with surrounding blanks removed; missing stays missing (never the text 'nan')."""
    return values.map(lambda v: v if pd.isna(v) else str(v).strip()).replace("", np.nan).astype(object)


def numeric_column(values: pd.Series, source: str, col: str) -> pd.Series:
    if values.dtype == bool:
        return values.astype(float)
    lowered = values.map(
        lambda v: {"true": 1.0, "false": 0.0}.get(v.strip().lower(), v) if isinstance(v, str) else v
    )
    converted = pd.to_numeric(lowered, errors="coerce")
    bad = converted.isna() & values.notna()
    if bad.any():
        raise InputError(f"{source}: column {col} must be numeric, found {values[bad].iloc[0]!r}")
    return converted.astype(float)


def label_text(values: pd.Series) -> pd.Series:
    """Class names and folds as stripped text; integer codes as "0"/"1" whether a CSV said 1, 1.0 or " 1 ".

    Training's label reader (`mil.tasks.classification`, `mil.cohort.labels`) uses this function too, so a 0/1 label
    column round-trips to the spec's classes "0"/"1".
    Empty stays missing (an external cohort has no fold).
    """

    def one(v: object) -> object:
        if pd.isna(v):
            return np.nan
        text = str(v).strip()
        if not text:
            return np.nan
        try:
            number = float(text)
        except ValueError:
            return text
        return str(int(number)) if number.is_integer() else text

    return values.map(one).astype(object)


def conflicting_patient(patient_ids: pd.Series, values: pd.DataFrame) -> str | None:
    """The first patient (in row order) whose rows disagree on `values`, or None when every patient's rows
    agree. An empty cell is a value like any other: a labelled row and an empty row of one patient disagree.

    The one-label-per-patient rule of training's label reader (`mil.cohort.labels`) and of `mil evaluate --labels`:
    a labels table may hold one row per slide, so a patient can have several rows, which must then agree.
    """
    frame = values.reset_index(drop=True).set_axis(range(values.shape[1]), axis=1)
    frame.insert(0, -1, patient_ids.to_numpy())  # column -1: cannot clash with the value columns 0..k-1
    distinct = frame.drop_duplicates()  # NaN equals NaN here, unlike ==
    repeated = distinct[-1].duplicated()
    return str(distinct[-1][repeated].iloc[0]) if repeated.any() else None


def refuse_conflicting(
    patient_ids: pd.Series, values: pd.DataFrame, source: object, names: list[str]
) -> None:
    """One line naming the first patient whose rows disagree on `values` (the columns `names` in the file)."""
    pid = conflicting_patient(patient_ids, values)
    if pid is None:
        return
    seen = values[(patient_ids == pid).to_numpy()].drop_duplicates().to_numpy().tolist()
    shown = " vs ".join(str(v[0] if len(v) == 1 else v) for v in seen)
    raise InputError(
        f"{source}: patient {pid!r} has rows with different {', '.join(names)} ({shown}); one label per patient"
    )


def check_binary(table: pd.DataFrame, cols: list[str], source: str) -> None:
    """Numeric columns that may only hold 0, 1 or empty (multi-label truth, survival events)."""
    for col in cols:
        bad = table[col].notna() & ~table[col].isin([0, 1])
        if bad.any():
            raise InputError(f"{source}: column {col} must be 0/1, found {table[col][bad].iloc[0]!r}")


def check_classes(values: pd.Series, classes: list[str], source: str, col: str, allow_na: bool) -> None:
    """Class-name columns of a predictions table: only the spec's classes (and empty where allowed)."""
    if not allow_na and values.isna().any():
        raise InputError(f"{source}: column {col} has empty values")
    unknown = sorted(set(values.dropna()) - set(classes))
    if unknown:
        raise InputError(
            f"{source}: column {col} has class(es) {', '.join(map(repr, unknown[:5]))} not in the spec's "
            f"classes {classes}"
        )
