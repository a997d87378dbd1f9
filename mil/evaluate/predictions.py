"""The predictions table: the ONLY interface between training and evaluation.

`mil train` writes out-of-fold predictions and `mil predict` writes predictions on an external cohort; `mil
evaluate` reads nothing else (no model, no bag), so any tool that writes this table can be evaluated.

Columns (one row per patient; `patient_id` unique, because a patient predicted twice would be counted twice
in every pooled metric): patient_id, fold, then the truth and prediction columns of the task kind (each kind's
module in `mil.tasks` lists them; e.g. classification: y_true, y_pred, prob_<class> per class).

`fold` is the cross-validation fold the patient was held out in; it is empty for an external cohort scored by an
ensemble. Truth columns may be empty too (a cohort predicted before its labels were known); `attach_labels`
fills them from a labels CSV. The `TaskSpec` (kind, target columns, classes in logit order) sits in a JSON sidecar
`<path>.spec.json`, so the class order never has to be guessed from column names.

Only empty cells count as missing when reading a predictions table (a class may be called "NA"); the labels CSV
uses pandas' usual missing markers (NA, NaN, null, ...) in its target columns, as clinical tables do, never in
its ids (`mil.cohort.labels.read_table`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from features.core.errors import InputError
from features.core.io import atomic_write, atomic_write_text
from mil.evaluate.columns import label_text, numeric_column, refuse_conflicting, text_column
from mil.tasks import Task, TaskSpec, create_task

SPEC_SCHEMA = "mil.predictions/1"


def spec_path(path: Path) -> Path:
    return Path(f"{path}.spec.json")


def write_predictions(df: pd.DataFrame, spec: TaskSpec, path: Path) -> None:
    """Validate and write the table plus its `<path>.spec.json` sidecar, each atomically.

    The sidecar is renamed into place before the CSV, so a crash in between leaves the old CSV with a spec
    that still validates it or no CSV at all, never a new CSV without its spec.
    """
    path = Path(path)
    table = validate_predictions(df, spec, source=str(path))
    sidecar = {"schema": SPEC_SCHEMA, **spec.to_dict()}
    atomic_write_text(spec_path(path), json.dumps(sidecar, indent=2) + "\n")
    atomic_write(path, lambda tmp: table[create_task(spec).columns()].to_csv(tmp, index=False))


def read_predictions(path: Path) -> tuple[pd.DataFrame, TaskSpec]:
    """Read a predictions table and its spec; every problem is a one-line `InputError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"predictions file {path} not found")
    sidecar = spec_path(path)
    if not sidecar.is_file():
        raise InputError(
            f"{path}: spec sidecar {sidecar.name} not found; write predictions with `mil train`/`mil predict` "
            'or add it: {"kind": ..., "target": ..., "classes": [...]}'
        )
    try:
        spec = TaskSpec.from_dict(json.loads(sidecar.read_text()), source=str(sidecar))
    except json.JSONDecodeError as exc:
        raise InputError(f"{sidecar}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    text_cols = dict.fromkeys(["patient_id", "fold", *create_task(spec).text_columns()], str)
    try:
        df = pd.read_csv(path, dtype=text_cols, keep_default_na=False, na_values=[""])
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from exc
    return validate_predictions(df, spec, source=str(path)), spec


def validate_predictions(df: pd.DataFrame, spec: TaskSpec, source: str) -> pd.DataFrame:
    """Check columns and values; return a normalised copy (string ids, folds and names, numeric scores)."""
    task = create_task(spec)
    missing = [c for c in task.columns() if c not in df.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)} for {spec.kind} predictions")
    out = df[task.columns()].copy()
    out["patient_id"] = text_column(out["patient_id"])
    if out["patient_id"].isna().any():
        raise InputError(f"{source}: {int(out['patient_id'].isna().sum())} row(s) without patient_id")
    dup = out["patient_id"][out["patient_id"].duplicated()].unique()
    if len(dup):
        raise InputError(
            f"{source}: patient_id not unique (e.g. {', '.join(map(str, dup[:3]))}); one row per patient"
        )
    out["fold"] = label_text(out["fold"])
    text = task.text_columns()
    for col in task.prediction_columns():
        if col in text:
            continue
        out[col] = numeric_column(out[col], source, col)
        if not np.isfinite(out[col].to_numpy(float)).all():
            raise InputError(
                f"{source}: column {col} has empty or non-finite values; every patient needs a score"
            )
    for col in [*task.truth_columns(), *task.prediction_columns()]:
        if col in text:
            out[col] = label_text(out[col])
        elif col in task.truth_columns():
            out[col] = numeric_column(out[col], source, col)
    task.check_table(out, source)
    return out


def attach_labels(df: pd.DataFrame, spec: TaskSpec, labels_csv: Path) -> pd.DataFrame:
    """Fill the truth columns from a labels CSV (`patient_id` + the spec's target columns).

    The CSV may hold several rows per patient (one per slide, as `mil train` accepts) when they agree on the
    target; rows that disagree are an error naming the patient.

    Patients without a label (absent from the CSV, or an empty target cell) are dropped; their ids are kept in
    `result.attrs["unlabelled_patients"]` so the caller can report the count. A label the predictions already
    carry must agree with the CSV: two sources of truth that disagree are an error, not a silent overwrite.
    Unknown classes are checked only for the patients being evaluated, so a clinical table with extra
    categories for other patients is fine.
    """
    labels_csv = Path(labels_csv)
    if not labels_csv.is_file():
        raise InputError(f"labels file {labels_csv} not found")
    task = create_task(spec)
    text, truth = task.text_columns(), task.truth_columns()
    labels = _one_per_patient(_read_truth(labels_csv, task), truth, list(task.target_map()), labels_csv)
    merged = df.drop(columns=truth).merge(labels, on="patient_id", how="inner")
    if merged.empty:
        raise InputError(
            f"{labels_csv}: no patient_id in common with the predictions ({len(df)} predicted, "
            f"{len(labels)} labelled; e.g. {df['patient_id'].iloc[0]!r} vs "
            f"{labels['patient_id'].iloc[0] if len(labels) else 'none'!r})"
        )
    merged = merged[df.columns]
    task.check_new_truth(merged, str(labels_csv))
    merged = validate_predictions(merged, spec, source=str(labels_csv))
    _check_agreement(df, merged, truth, all(col in text for col in truth), labels_csv)
    unlabelled = sorted(set(df["patient_id"]) - set(merged["patient_id"]))
    merged.attrs["unlabelled_patients"] = unlabelled
    return merged.reset_index(drop=True)


def _read_truth(labels_csv: Path, task: Task) -> pd.DataFrame:
    """patient_id and the truth columns (renamed from the spec's targets) of every row with a patient id."""
    target_map, text = task.target_map(), task.text_columns()
    targets = list(target_map)
    from mil.cohort.labels import read_table  # training's reader: encodings, headers, ids kept verbatim

    labels = read_table(labels_csv)
    if "patient_id" not in labels.columns:
        raise InputError(
            f"{labels_csv}: no patient_id column (columns: {', '.join(map(str, labels.columns[:8]))})"
        )
    missing = [t for t in targets if t not in labels.columns]
    if missing:
        raise InputError(
            f"{labels_csv}: missing target column(s) {', '.join(missing)} named in the prediction spec"
        )
    labels = labels[["patient_id", *targets]].rename(columns=target_map)
    labels["patient_id"] = text_column(labels["patient_id"])
    labels = labels.dropna(subset=["patient_id"])
    for col in task.truth_columns():
        labels[col] = (
            label_text(labels[col]) if col in text else numeric_column(labels[col], str(labels_csv), col)
        )
    return labels


def _one_per_patient(
    labels: pd.DataFrame, truth: list[str], targets: list[str], source: Path
) -> pd.DataFrame:
    """One row per labelled patient. A table with one row per slide repeats patients: fine while their rows
    agree (training's rule); patients with an empty truth cell are dropped."""
    refuse_conflicting(labels["patient_id"], labels[truth], source, targets)
    return labels.drop_duplicates(subset="patient_id").dropna(subset=truth)


def require_truth(df: pd.DataFrame, spec: TaskSpec, source: str) -> None:
    """Metrics need every truth cell; an external cohort without labels must go through `attach_labels`."""
    truth = create_task(spec).truth_columns()
    empty = df[truth].isna().any(axis=1)
    if empty.any():
        raise InputError(
            f"{source}: {int(empty.sum())} of {len(df)} patients have no truth ({', '.join(truth)} "
            "empty); pass --labels CSV with patient_id and the target column(s)"
        )


def _check_agreement(
    before: pd.DataFrame, after: pd.DataFrame, truth: list[str], names: bool, source: Path
) -> None:
    """Truth already in the predictions must equal the labels' (names exactly, numbers to rounding)."""
    old = before.set_index("patient_id").loc[after["patient_id"], truth].reset_index(drop=True)
    new = after[truth].reset_index(drop=True)
    known = old.notna().all(axis=1)
    if not known.any():
        return
    if names:
        differ = known & (old != new).any(axis=1)
    else:
        close = np.isclose(old[known].to_numpy(float), new[known].to_numpy(float), rtol=1e-6, atol=1e-9)
        differ = pd.Series(False, index=new.index)
        differ[known[known].index] = ~close.all(axis=1)
    if differ.any():
        i = int(np.flatnonzero(differ.to_numpy())[0])
        raise InputError(
            f"{source}: labels disagree with the truth already in the predictions for {int(differ.sum())} "
            f"patient(s) (e.g. {after['patient_id'].iloc[i]}: {old.iloc[i].tolist()} vs {new.iloc[i].tolist()}); "
            "fix the labels or drop the truth columns from the predictions"
        )
