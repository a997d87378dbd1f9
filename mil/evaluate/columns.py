"""Cell parsing shared by the predictions reader and the labels reader: one rule each for ids, classes, numbers.

Kept apart from `predictions.py` and free of torch, so training's label reader can use the same rules.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.errors import InputError


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

    Same rule as training's label reader, so a 0/1 label column round-trips to the spec's classes "0"/"1".
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
