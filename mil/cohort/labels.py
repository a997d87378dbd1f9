"""The label table: read it, resolve the task, match it to the bag store, and stop on anything wrong.

Everything here runs before training, so a typo in a class name costs seconds, not a night of GPU time.

The CSV has `patient_id`, optionally `slide_id`, and target columns. Without `slide_id`, one row per patient
and slides are matched through the store's `BagMeta.patient_id`. With `slide_id`, each row maps one slide to a
patient (the CSV wins over the store's patient id); a patient's rows must agree on the target.

A patient with several slides is ONE sample: the instances of all its bags are concatenated into one bag (in
slide-id order). Labels are per patient, so the MIL assumption ("the patient is positive if some of its cells
are") holds over the union of its cells; attention is normalised over all of them, so the cells that decide
the diagnosis can come from any slide; and splits and metrics stay per patient (no patient counted twice).

Rows whose target is empty are not errors: the patient is outside this task (e.g. `mds_aa_aml` is empty for
APL patients). They are left out and counted in the run summary, config and metrics.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.bagstore import BagMeta
from features.core.errors import InputError
from mil.config import TrainConfig
from mil.evaluate.columns import conflicting_patient, label_text
from mil.tasks import TaskSpec, create_task, infer_kind, task_kind

_FIRST = 5  # ids quoted in an error message
ID_COLUMNS = ("patient_id", "slide_id")
# pandas' default missing markers (`read_csv`'s na_values): clinical tables use them in target columns;
# ids never pass through them.
NA_MARKERS = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
     "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)  # fmt: skip


@dataclass(frozen=True)
class Cohort:
    """The patients a run trains on, with their targets and slides, and what was left out and why."""

    labels_path: Path
    spec: TaskSpec
    patients: list[str]  # sorted, unique
    y: np.ndarray  # one row per patient (see mil.tasks.base)
    slides: dict[str, list[str]]  # patient -> its slide ids in the store, sorted (concatenation order)
    groups: list[str] | None = None  # group_by value per patient
    left_out_empty: list[str] = field(default_factory=list)  # labelled rows with an empty target
    missing_bags: list[str] = field(default_factory=list)  # labelled but not in the store (--allow-missing)
    # labelled slide rows without a bag whose patient has other bags in the store (trained on those)
    slides_without_bag: list[str] = field(default_factory=list)
    unlabelled_slides: list[str] = field(default_factory=list)  # in the store, no label row (--allow-missing)

    def left_out(self) -> dict[str, int]:
        return {
            "empty_target": len(self.left_out_empty),
            "missing_bag": len(self.missing_bags),
            "slide_without_bag": len(self.slides_without_bag),
            "unlabelled_slide": len(self.unlabelled_slides),
        }


def read_table(path: Path, ids: tuple[str, ...] = ID_COLUMNS) -> pd.DataFrame:
    """A labels CSV as text columns: UTF-8 (a BOM is fine; another encoding is one line naming the byte and
    the fix, never decoded by a guess), a patient_id column, no header name twice, ids kept verbatim (a
    patient called "NA" or "nan" is a patient), other columns with pandas' usual missing markers as missing."""
    path = Path(path)
    text = _decode(path)
    try:
        header = next(csv.reader(io.StringIO(text, newline=None)), [])
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.EmptyDataError, pd.errors.ParserError, csv.Error, ValueError) as exc:
        raise InputError(
            f"{path}: not a readable CSV ({str(exc).splitlines()[0]}); save it as comma-separated UTF-8"
        ) from None
    names = [str(c).strip() for c in header]
    if "patient_id" not in names:
        sep = next((s for s in (";", "\t") if s in "".join(names)), None)
        hint = f" (the header looks {'tab' if sep == chr(9) else sep!r}-separated; save as comma-separated)"
        raise InputError(
            f"{path}: no patient_id column{hint if sep else ''}; columns: {', '.join(names[:8])[:200]}"
        )
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InputError(f"{path}: the header names {', '.join(map(repr, dups))} twice; rename or delete one")
    if table.empty:
        raise InputError(f"{path}: a header and no rows; add one row per patient (or slide)")
    table.columns = [str(c).strip() for c in table.columns]
    for col in table.columns:
        if col not in ids:
            table[col] = table[col].mask(table[col].str.strip().isin(NA_MARKERS))
    return table


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise InputError(f"{path}: the file is empty; write a header (patient_id + target columns) and rows")
    head = data[:4096]
    controls = sum(b < 32 and b not in b"\t\n\r" for b in head)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or controls > len(head) // 100:
        raise InputError(
            f"{path}: binary data or UTF-16/32 text, not a CSV; save it as 'CSV UTF-8 (comma delimited)'"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{path}: not UTF-8 (byte 0x{data[exc.start]:02x} on line {line}; Latin-1 / Windows-1252, as Excel "
            f"saves 'CSV' on Windows?); save it as 'CSV UTF-8', or convert it: iconv -f cp1252 -t utf-8"
        ) from None


def read_labels(path: Path) -> pd.DataFrame:
    """The labels CSV as text columns (ids stay "007", not 7; see `read_table`); every row has its ids."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"labels file {path} not found; pass --labels with a CSV of patient_id + target columns"
        )
    table = read_table(path)
    for col in ID_COLUMNS:
        if col in table.columns:
            table[col] = table[col].str.strip()
            if table[col].isna().any() or (table[col] == "").any():
                raise InputError(
                    f"{path}: {int((table[col].isna() | (table[col] == '')).sum())} row(s) without {col}; "
                    "fill or delete them"
                )
    return table


def resolve_spec(table: pd.DataFrame, config: TrainConfig, source: str) -> TaskSpec:
    """Task kind, columns and class order from the config, inferring what it leaves open (see TrainConfig):
    the kind named by `train.task`, or the one kind that claims the config (`mil.tasks.infer_kind`)."""
    spec = task_kind(infer_kind(config)).resolve(table, config, source)
    if spec.kind == "classification" and config.classes is None:
        _check_case_variants(table[spec.target], spec.classes, source, spec.target)
    return spec


def _check_case_variants(values: pd.Series, classes: list[str], source: str, col: str) -> None:
    """Classes read from the column that differ only in case ('aml' and 'AML') are one class typed two
    ways far more often than two classes: stop, name both with their row counts, and say how to keep them
    apart on purpose (listing them in train.classes)."""
    by_fold: dict[str, list[str]] = defaultdict(list)
    for c in classes:
        by_fold[c.casefold()].append(c)
    variants = next((v for v in by_fold.values() if len(v) > 1), None)
    if variants is None:
        return
    counts = label_text(values).value_counts()
    named = " and ".join(f"{v!r} ({int(counts.get(v, 0))} rows)" for v in variants)
    raise InputError(
        f"{source}: column {col!r} has classes that differ only in case: {named}; write them one way, or "
        "list both in train.classes to keep them apart"
    )


def build_cohort(
    labels: Path, metas: list[BagMeta], config: TrainConfig, store: str | Path = "the store"
) -> Cohort:
    """Read and validate the labels against the store's bags; one InputError per problem, before training."""
    labels = Path(labels)
    source = str(labels)
    table = read_labels(labels)
    spec = resolve_spec(table, config, source)
    y_rows, has_rows = create_task(spec).parse(table, source)
    _check_rows(table, config, source)
    first_row, labelled = _patient_rows(table, y_rows, has_rows, config, source)
    match = _match_store(table, metas, labelled, first_row)
    if match.missing and not config.allow_missing:
        raise InputError(
            f"{source}: {len(match.missing)} labelled {match.what} have no bag in {store} "
            f"({first_ids(match.missing)}); extract them, fix the ids, or pass --allow-missing to leave them out"
        )
    if match.unlabelled and not config.allow_missing:
        raise InputError(
            f"{store}: {len(match.unlabelled)} slides have no row in {source} ({first_ids(match.unlabelled)}); add "
            "them (an empty target leaves a patient out on purpose) or pass --allow-missing"
        )
    patients = sorted(p for p in labelled if match.slides.get(p))
    if not patients:
        raise InputError(f"{source}: no labelled patient has a bag in {store}; check that the ids match")
    rows = [first_row[p] for p in patients]
    return Cohort(
        labels_path=labels,
        spec=spec,
        patients=patients,
        y=y_rows[rows],
        slides={p: sorted(match.slides[p]) for p in patients},
        groups=_groups(table, rows, patients, config, source),
        left_out_empty=sorted(set(first_row) - labelled),
        missing_bags=match.missing,
        slides_without_bag=match.partial,
        unlabelled_slides=match.unlabelled,
    )


def _check_rows(table: pd.DataFrame, config: TrainConfig, source: str) -> None:
    """The --group-by column exists, and no patient (or, with slide rows, no slide) has two rows."""
    if config.group_by is not None and config.group_by not in table.columns:
        raise InputError(
            f"{source}: no column {config.group_by!r} for --group-by; columns: {', '.join(table.columns[:12])}"
        )
    dup_key = "slide_id" if "slide_id" in table.columns else "patient_id"
    dups = table[dup_key][table[dup_key].duplicated()].unique()
    if len(dups):
        raise InputError(
            f"{source}: duplicate {dup_key} {first_ids(dups)}; keep one row per {dup_key.split('_')[0]}"
        )


def _patient_rows(
    table: pd.DataFrame, y_rows: np.ndarray, has_rows: np.ndarray, config: TrainConfig, source: str
) -> tuple[dict[str, int], set[str]]:
    """Each patient's first row, and the patients with a target. One target (and group) per patient: with
    slide rows, a patient's rows must agree."""
    targets = pd.DataFrame(y_rows.reshape(len(table), -1)).assign(has=has_rows)
    pid = conflicting_patient(table["patient_id"], targets)
    if pid is not None:
        raise InputError(
            f"{source}: patient {pid!r} has slides with different targets; one label per patient"
        )
    pid = conflicting_patient(table["patient_id"], table[[config.group_by]]) if config.group_by else None
    if pid is not None:
        raise InputError(f"{source}: patient {pid!r} has slides in different {config.group_by!r} groups")
    first = ~table["patient_id"].duplicated()
    first_row: dict[str, int] = dict(zip(table["patient_id"][first], np.flatnonzero(first), strict=True))
    return first_row, {pid for pid, i in first_row.items() if has_rows[i]}


@dataclass
class _StoreMatch:
    """Labelled patients matched to the store's slides; what is labelled but absent, stored but unlabelled."""

    slides: dict[str, list[str]]  # labelled patient -> its stored slides
    missing: list[str]  # labelled patients (or slide rows) with no bag at all
    partial: list[str]  # slide rows without a bag whose patient has other bags
    unlabelled: list[str]  # stored slides without a label row
    what: str  # what `missing` lists: "slides" or "patients"


def _match_store(
    table: pd.DataFrame, metas: list[BagMeta], labelled: set[str], first_row: dict[str, int]
) -> _StoreMatch:
    """Store slides -> patients, through the CSV's slide_id column if it has one, else the bags' patient ids."""
    stored = {m.slide_id: m for m in metas}
    slides: dict[str, list[str]] = defaultdict(list)
    if "slide_id" not in table.columns:
        unlabelled = sorted(s for s, m in stored.items() if m.patient_id not in first_row)
        for s, m in stored.items():
            if m.patient_id in labelled:
                slides[m.patient_id].append(s)
        missing = sorted(p for p in labelled if p not in slides)
        return _StoreMatch(slides, missing, [], unlabelled, "patients")
    slide_patient = dict(zip(table["slide_id"], table["patient_id"], strict=True))
    unlabelled = sorted(s for s in stored if s not in slide_patient)
    for s, p in slide_patient.items():
        if s in stored and p in labelled:
            slides[p].append(s)
    absent = sorted(s for s, p in slide_patient.items() if p in labelled and s not in stored)
    # A slide row without a bag blocks only when its patient has no bag at all. A patient whose other
    # slides are stored trains on those, and the absent rows are reported (summary, left_out.csv): e.g.
    # a `mil synth --layout both` table lists each patient's cell folder and smear, one store holds one.
    partial = [s for s in absent if slides.get(slide_patient[s])]
    missing = [s for s in absent if not slides.get(slide_patient[s])]
    return _StoreMatch(slides, missing, partial, unlabelled, "slides")


def _groups(
    table: pd.DataFrame, rows: list[int], patients: list[str], config: TrainConfig, source: str
) -> list[str] | None:
    """The --group-by value of each patient (its first row); every patient needs one."""
    if not config.group_by:
        return None
    values = table[config.group_by].iloc[rows]
    if values.isna().any():
        bad = [p for p, v in zip(patients, values, strict=True) if pd.isna(v)]
        raise InputError(
            f"{source}: {len(bad)} patients have no {config.group_by!r} ({first_ids(bad)}); fill it"
        )
    return [str(v).strip() for v in values]


def check_counts(cohort: Cohort, n_folds: int) -> None:
    """Every class (label, event) must reach every test fold, or its per-fold metrics are undefined."""
    counts, what, fix = create_task(cohort.spec).fold_counts(cohort.y)
    few = {c: n for c, n in counts.items() if n < n_folds}
    if few:
        c, n = next(iter(few.items()))
        raise InputError(
            f"{cohort.labels_path}: class {c!r} has {n} {what}, fewer than the {n_folds} folds; use fewer folds "
            f"(--folds), {fix}, or add patients"
        )


def first_ids(ids) -> str:
    ids = [str(i) for i in ids]
    more = f", ... {len(ids) - _FIRST} more" if len(ids) > _FIRST else ""
    return "first: " + ", ".join(ids[:_FIRST]) + more if len(ids) > 1 else ids[0]


def slide_patients(table: pd.DataFrame, source: object) -> dict[str, str]:
    """slide -> patient from a labels table with a slide_id column; a slide listed twice is refused, as in
    training, since one of its patients would silently lose it (or two patients merge into one bag)."""
    slides = table["slide_id"].astype(str)
    dups = slides[slides.duplicated()].unique()
    if len(dups):
        raise InputError(f"{source}: duplicate slide_id {first_ids(dups)}; keep one row per slide")
    return dict(zip(slides, table["patient_id"].astype(str), strict=True))
