"""Clinical covariates: patient-level columns (blood counts, age, sex) read, checked, and encoded per fold.

Where they come from: columns of the labels CSV, or of a separate `--clinical` CSV (patient_id + columns; it
wins when given). A column is numeric when every filled cell parses as a number, categorical when none does;
a column with some numbers and some words is a typo, and the error names its rows. An empty cell (or a pandas
missing marker: NA, n/a, ...) is missing. Everything is checked before a bag is loaded.

Encoding (`CovariateEncoder`): fitted on ONE fold's training patients only, applied to everyone:

    numeric      missing -> the training median; then z-scored with the training mean and SD (an SD of 0:
                 centred only); plus a 0/1 `<col>_missing` column where a training patient lacked it
    categorical  missing -> the training mode (+ `<col>_missing` likewise); one 0/1 column per category seen
                 in training; a category never seen there encodes as all zeros, with a warning line

The encoder is plain numbers and strings (`to_dict` / `from_dict`), saved in each fold's checkpoint and in
`folds/<k>/covariates.json`, so `mil predict` encodes a new cohort exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.core.errors import InputError

MIN_SD = 1e-6
_FIRST = 5  # rows or ids quoted in a message


@dataclass(frozen=True)
class CovariateTable:
    """One row per patient (index: patient_id), numeric columns as float (NaN = missing), categorical as str."""

    source: str
    columns: list[str]
    kinds: dict[str, str]  # column -> "numeric" | "categorical"
    values: pd.DataFrame


def parse_columns(value: str | list[str] | None) -> list[str]:
    """`--covariates wbc,age --covariates sex` -> ["wbc", "age", "sex"] (commas and repeats both work)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [c.strip() for item in items for c in str(item).split(",") if c.strip()]


def read_covariates(
    columns: list[str],
    table: pd.DataFrame,
    source: str,
    patients: list[str],
    kinds: dict[str, str] | None = None,
    fix: str = "fix --covariates / train.covariates or pass --clinical with a CSV that has it",
) -> CovariateTable:
    """The covariates of `patients` from `table` (a labels or clinical CSV as read by `read_table`).

    `kinds`: the kinds a trained run expects (prediction); a column that changed kind is an error. Training
    passes None and the kinds are read from the data."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        have = ", ".join(c for c in table.columns if c not in ("patient_id", "slide_id"))[:200]
        raise InputError(f"{source}: covariate column {missing[0]!r} not found (columns: {have}); {fix}")
    rows = table.drop_duplicates("patient_id").set_index("patient_id")
    absent = [p for p in patients if p not in rows.index]
    if absent:
        raise InputError(
            f"{source}: {len(absent)} patient(s) have no row ({', '.join(absent[:_FIRST])}); add them (empty "
            "covariate cells are imputed)"
        )
    _check_patients_agree(table, columns, source)
    picked = rows.loc[list(patients), list(columns)]
    values, found = {}, {}
    for col in columns:
        text = picked[col].astype("string").str.strip()
        filled = text.notna() & (text != "")
        if not filled.any() and kinds is not None:  # prediction: imputed like any missing cell
            empty = np.nan if kinds[col] == "numeric" else None
            values[col] = pd.Series(empty, index=picked.index, dtype=float if empty is np.nan else object)
            found[col] = kinds[col]
            continue
        if not filled.any():
            raise InputError(
                f"{source}: covariate column {col!r} is empty for all {len(patients)} patients; fill it or "
                "drop it from --covariates"
            )
        numbers = pd.to_numeric(text.where(filled), errors="coerce")
        parsed = numbers.notna() & filled
        expected = (kinds or {}).get(col)
        if parsed[filled].all() and expected != "categorical":
            values[col], found[col] = numbers.astype(float), "numeric"
        elif not parsed[filled].any() or expected == "categorical":
            words = [str(v) if f else None for v, f in zip(text, filled, strict=True)]
            values[col], found[col] = pd.Series(words, index=picked.index, dtype=object), "categorical"
        else:
            bad = [
                (i, v) for i, (v, ok, f) in enumerate(zip(text, parsed, filled, strict=True)) if f and not ok
            ]
            rows_text = ", ".join(f"{picked.index[i]} ({v!r})" for i, v in bad[:_FIRST])
            raise InputError(
                f"{source}: covariate column {col!r} is numeric but {len(bad)} patient(s) hold non-numbers: "
                f"{rows_text}; fix those cells or leave them empty (imputed)"
            )
        if expected == "numeric" and found[col] != "numeric":
            raise InputError(
                f"{source}: covariate column {col!r} was numeric in training but holds no numbers here; "
                "fix the column"
            )
    return CovariateTable(source, list(columns), found, pd.DataFrame(values, index=list(patients)))


def _check_patients_agree(table: pd.DataFrame, columns: list[str], source: str) -> None:
    """With one row per slide, a patient's rows must agree on its covariates (they are the patient's)."""
    if not table["patient_id"].duplicated().any():
        return
    for col in columns:
        counts = table.groupby("patient_id")[col].nunique(dropna=True)
        if (counts > 1).any():
            p = counts.index[counts > 1][0]
            raise InputError(
                f"{source}: patient {p} has different {col!r} values on its rows; covariates are per patient"
            )


@dataclass
class CovariateEncoder:
    """Per-column statistics of one fold's training patients, and the design matrix they define."""

    columns: list[dict[str, Any]]  # name, kind, and kind's statistics (see the module docstring)

    @classmethod
    def fit(cls, table: CovariateTable, patients: list[str]) -> CovariateEncoder:
        """Statistics of the covariates of `patients` (a fold's training patients) only."""
        train = table.values.loc[list(patients)]
        columns = []
        for col in table.columns:
            values = train[col]
            missing = values.isna()
            record: dict[str, Any] = {"name": col, "kind": table.kinds[col], "indicator": bool(missing.any())}
            if table.kinds[col] == "numeric":
                known = values[~missing].to_numpy(float)
                median = float(np.median(known)) if len(known) else 0.0
                filled = values.fillna(median).to_numpy(float)
                record.update(median=median, mean=float(filled.mean()), sd=float(filled.std()))
            else:
                known = values[~missing]
                counts = known.value_counts()
                # the mode, ties to the first category in sorted order (repeatable)
                mode = sorted(counts.index[counts == counts.max()])[0] if len(counts) else None
                record.update(mode=mode, categories=sorted(known.unique().tolist()))
            columns.append(record)
        return cls(columns)

    @property
    def names(self) -> list[str]:
        out = []
        for c in self.columns:
            if c["kind"] == "numeric":
                out.append(c["name"])
            else:
                out.extend(f"{c['name']}={v}" for v in c["categories"])
            if c["indicator"]:
                out.append(f"{c['name']}_missing")
        return out

    @property
    def required(self) -> list[str]:
        return [c["name"] for c in self.columns]

    @property
    def kinds(self) -> dict[str, str]:
        return {c["name"]: c["kind"] for c in self.columns}

    def transform(self, table: CovariateTable, patients: list[str]) -> tuple[np.ndarray, list[str]]:
        """(P x K float32 design matrix in `names` order, warning lines) for `patients`."""
        values = table.values.loc[list(patients)]
        blocks, warnings = [], []
        for c in self.columns:
            column = values[c["name"]]
            missing = column.isna().to_numpy()
            if c["kind"] == "numeric":
                x = column.fillna(c["median"]).to_numpy(float)
                sd = c["sd"] if c["sd"] > MIN_SD else 1.0
                blocks.append(((x - c["mean"]) / sd)[:, None])
            else:
                x = np.array([c["mode"] if m else v for v, m in zip(column, missing, strict=True)], object)
                onehot = np.zeros((len(x), len(c["categories"])))
                for j, v in enumerate(c["categories"]):
                    onehot[:, j] = x == v
                unseen = ~onehot.any(axis=1) & ~missing
                if unseen.any():
                    ids = [patients[i] for i in np.flatnonzero(unseen)]
                    cats = sorted({str(v) for v in x[unseen]})
                    warnings.append(
                        f"{table.source}: covariate {c['name']!r}: category {', '.join(map(repr, cats))} "
                        f"not seen in training ({len(ids)} patient(s), e.g. {ids[0]}); encoded as all zeros"
                    )
                blocks.append(onehot)
            if c["indicator"]:
                blocks.append(missing.astype(float)[:, None])
        design = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(patients), 0))
        return design.astype(np.float32), warnings

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "names": self.names}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> CovariateEncoder:
        return cls([dict(c) for c in record["columns"]])


def covariate_source(labels: Path | None, clinical: Path | None) -> tuple[pd.DataFrame, str]:
    """The table the covariates come from: `clinical` when given, else the labels CSV."""
    from mil.cohort.labels import read_labels

    path = clinical if clinical is not None else labels
    if path is None:
        raise InputError(
            "no table to read covariates from; pass --clinical CSV (patient_id + covariate columns)"
        )
    path = Path(path)
    if clinical is not None and not path.is_file():
        raise InputError(
            f"clinical file {path} not found; pass --clinical with a CSV of patient_id + columns"
        )
    return read_labels(path), str(path)
