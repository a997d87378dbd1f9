"""The one splitter: patient-level folds, each with disjoint train / val / test patients.

- k-fold (default): `StratifiedKFold` over patients gives the test folds (every patient is tested exactly
  once); inside each fold, a stratified `train_test_split` holds out `val_fraction` of the remaining
  patients for early stopping. The test patients never influence training or model selection.
- `group_by` (e.g. site): `LeaveOneGroupOut`, one fold per group tested on that group alone, i.e. external
  validation on a site the model never saw; validation patients come from the other sites.
- `inner_folds` (cross-fitting, `train.selection: crossfit`): no validation part; each fold's non-test patients
  are all training patients, partitioned into `inner_folds` stratified inner parts (`Fold.inner`). One member
  model is fitted per inner part on the others, and the held-out parts together decide the epoch, calibrate
  and (with `--model auto`) choose the head, so the outer test patients never take part in any choice.

Patients are the unit everywhere (a patient's slides were merged into one bag before this), so no patient's
cells can sit on both sides of a split. `check_leakage` proves it for any splits, built or loaded, and runs at
the start of every training run. Randomness comes only from `seed`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from features.core.errors import InputError

SCHEMA = "mil.cohort.splits/1"


@dataclass(frozen=True)
class Fold:
    index: int
    train: list[str]
    val: list[str]
    test: list[str]
    name: str = ""  # the held-out group (site) for leave-one-group-out folds
    inner: list[list[str]] = field(
        default_factory=list
    )  # cross-fitting: a partition of `train` (may be empty)


@dataclass(frozen=True)
class Splits:
    folds: list[Fold]
    seed: int
    group_by: str | None = None
    val_fraction: float = 0.2
    dropped: list[str] = field(default_factory=list)  # loaded patients not in this cohort (left unused)

    def patients(self) -> set[str]:
        return {p for f in self.folds for p in (*f.train, *f.val, *f.test)}


def merge_rare(strata: np.ndarray, n_splits: int) -> np.ndarray:
    """Merge strata smaller than `n_splits` (StratifiedKFold cannot spread them) into one, then into the
    largest stratum if the merged one is still too small."""
    strata = np.asarray([str(s) for s in strata], dtype=object)
    counts = Counter(strata)
    rare = {s for s, n in counts.items() if n < n_splits}
    if not rare:
        return strata
    merged = np.where(np.isin(strata, list(rare)), "__rare__", strata)
    if (merged == "__rare__").sum() < n_splits:
        largest = max((s for s in counts if s not in rare), key=lambda s: counts[s], default="__rare__")
        merged = np.where(merged == "__rare__", largest, merged)
    return merged


def make_splits(
    patients: list[str],
    strata: np.ndarray,
    n_folds: int,
    seed: int,
    val_fraction: float = 0.2,
    groups: list[str] | None = None,
    group_by: str | None = None,
    inner_folds: int | None = None,
) -> Splits:
    """Stratified patient folds (or one fold per group); with `inner_folds`, no validation part and the
    training patients of each fold partitioned into that many inner parts; see the module docstring."""
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold

    patients = list(patients)
    ids = np.asarray(patients, dtype=object)
    if len(set(patients)) != len(patients):
        raise InputError("splits: patient ids are not unique")
    if groups is not None:
        names = sorted(set(groups))
        if len(names) < 2:
            raise InputError(f"--group-by {group_by}: all patients are in one group {names}; need 2 or more")
        outer = LeaveOneGroupOut().split(ids, groups=np.asarray(groups, dtype=object))
    else:
        if len(patients) < n_folds:
            raise InputError(
                f"splits: {len(patients)} patients cannot make {n_folds} folds; use --folds {len(patients)}"
            )
        outer = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(
            ids, merge_rare(strata, n_folds)
        )
    folds = []
    strata = np.asarray(strata)
    for k, (rest, test) in enumerate(outer):
        name = str(np.asarray(groups, dtype=object)[test[0]]) if groups is not None else ""
        if inner_folds:
            inner = inner_parts(list(ids[rest]), strata[rest], inner_folds, seed + k)
            folds.append(Fold(k, sorted(ids[rest]), [], sorted(ids[test]), name, inner))
            continue
        train, val = hold_out(rest, strata[rest], val_fraction, seed + k)
        folds.append(Fold(k, sorted(ids[train]), sorted(ids[val]), sorted(ids[test]), name))
    splits = Splits(folds, seed, group_by, 0.0 if inner_folds else val_fraction)
    check_leakage(splits, patients)
    return splits


def inner_parts(patients: list[str], strata: np.ndarray, n_parts: int, seed: int) -> list[list[str]]:
    """`patients` (one fold's training patients) in `n_parts` stratified, seeded, disjoint parts that cover
    them all; fewer parts when there are too few patients (at least 2 are needed)."""
    from sklearn.model_selection import StratifiedKFold

    n_parts = min(n_parts, len(patients))
    if n_parts < 2:
        raise InputError(
            f"splits: a fold has {len(patients)} training patient(s); cross-fitting needs 2 or more"
        )
    ids = np.asarray(patients, dtype=object)
    split = StratifiedKFold(n_splits=n_parts, shuffle=True, random_state=seed)
    return [sorted(ids[held]) for _, held in split.split(ids, merge_rare(strata, n_parts))]


def with_inner(splits: Splits, strata: dict[str, object], n_parts: int) -> Splits:
    """Splits made (or saved) with a validation part, refitted for cross-fitting: train + val become the
    training patients and are partitioned into inner parts (seeded by the splits' seed and the fold).
    Folds that already have inner parts are kept as they are."""
    folds = []
    for f in splits.folds:
        if f.inner:
            folds.append(f)
            continue
        train = sorted([*f.train, *f.val])
        labels = np.asarray([str(strata[p]) for p in train], dtype=object)
        folds.append(
            Fold(
                f.index, train, [], f.test, f.name, inner_parts(train, labels, n_parts, splits.seed + f.index)
            )
        )
    return Splits(folds, splits.seed, splits.group_by, 0.0, splits.dropped)


def without_inner(splits: Splits, strata: dict[str, object], val_fraction: float) -> Splits:
    """Cross-fitting splits refitted for a validation hold-out (`train.selection: validation`)."""
    folds = []
    for f in splits.folds:
        if f.val:
            folds.append(f)
            continue
        rest = np.asarray(f.train, dtype=object)
        labels = np.asarray([str(strata[p]) for p in f.train], dtype=object)
        train, val = hold_out(rest, labels, val_fraction, splits.seed + f.index)
        folds.append(Fold(f.index, sorted(rest[train]), sorted(rest[val]), f.test, f.name))
    return Splits(folds, splits.seed, splits.group_by, val_fraction, splits.dropped)


def hold_out(
    rest: np.ndarray, strata: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's non-test patients into train and val, stratified where every stratum can give one."""
    from sklearn.model_selection import train_test_split

    if len(rest) < 2:
        raise InputError(
            f"splits: a fold has {len(rest)} training patient(s); add patients or use fewer folds"
        )
    n_val = max(1, math.ceil(fraction * len(rest)))
    labels = merge_rare(strata, 2)
    n_strata = len(set(labels))
    stratify = (
        labels if len(set(labels)) > 1 and n_val >= n_strata and len(rest) - n_val >= n_strata else None
    )
    train, val = train_test_split(rest, test_size=n_val, random_state=seed, shuffle=True, stratify=stratify)
    return np.sort(train), np.sort(val)


def check_leakage(splits: Splits, patients: list[str] | None = None) -> None:
    """Train, val and test of each fold are disjoint, every patient is tested exactly once (k-fold and
    leave-one-group-out both test each patient once), inner parts (if any) partition the training patients
    without a patient in two of them, and, if given, the splits cover exactly `patients`."""
    tested: Counter[str] = Counter()
    for f in splits.folds:
        parts = {"train": set(f.train), "val": set(f.val), "test": set(f.test)}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = parts[a] & parts[b]
            if both:
                raise InputError(
                    f"splits: fold {f.index} has {len(both)} patient(s) in both {a} and {b} ({sorted(both)[0]})"
                )
        _check_inner(f)
        empty = [name for name, part in parts.items() if not part and not (name == "val" and f.inner)]
        if empty:
            raise InputError(
                f"splits: fold {f.index} has no {empty[0]} patients; use fewer folds or more patients"
            )
        tested.update(f.test)
    twice = [p for p, n in tested.items() if n > 1]
    if twice:
        raise InputError(f"splits: {len(twice)} patient(s) are tested in more than one fold ({twice[0]})")
    if patients is not None:
        known = set(patients)
        untested = sorted(known - set(tested))
        if untested:
            raise InputError(
                f"splits: {len(untested)} patient(s) of the cohort are in no test fold ({untested[0]}); "
                "the splits were made for other patients: drop --splits to make new ones"
            )
        extra = sorted(splits.patients() - known)
        if extra:
            raise InputError(f"splits: {len(extra)} patient(s) are not in the cohort ({extra[0]})")


def _check_inner(f: Fold) -> None:
    """Inner parts: pairwise disjoint, each non-empty, together exactly the fold's training patients."""
    if not f.inner:
        return
    seen: Counter[str] = Counter(p for part in f.inner for p in part)
    twice = sorted(p for p, n in seen.items() if n > 1)
    if twice:
        raise InputError(f"splits: fold {f.index} has patient {twice[0]} in two inner parts")
    if any(not part for part in f.inner) or set(seen) != set(f.train):
        stray = sorted(set(seen) ^ set(f.train))
        raise InputError(
            f"splits: fold {f.index}: the inner parts are not a partition of its training patients"
            + (f" ({stray[0]})" if stray else " (an empty part)")
        )


def save_splits(splits: Splits, path: Path) -> None:
    data = {"schema": SCHEMA, **asdict(splits)}
    path.write_text(json.dumps(data, indent=1) + "\n")


def load_splits(path: Path, patients: list[str]) -> Splits:
    """Read splits.json and fit it to this cohort: patients it names that the cohort lacks are removed (and
    listed in `dropped`); a cohort patient it does not test is an error (those folds were made without it)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"splits file {path} not found; pass a RUN/splits.json written by `mil train`")
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != SCHEMA:
            raise ValueError(f"schema {data.get('schema')!r}, expected {SCHEMA}")
        folds = [
            Fold(int(f["index"]), list(f["train"]), list(f["val"]), list(f["test"]), f.get("name", ""),
                 [list(part) for part in f.get("inner", [])])
            for f in data["folds"]
        ]  # fmt: skip
        splits = Splits(folds, int(data["seed"]), data.get("group_by"), float(data.get("val_fraction", 0.2)))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path}: not a mil splits file ({exc}); use a RUN/splits.json written by `mil train`"
        ) from exc
    known = set(patients)
    dropped = sorted(splits.patients() - known)
    keep = [
        Fold(
            f.index,
            [p for p in f.train if p in known],
            [p for p in f.val if p in known],
            [p for p in f.test if p in known],
            f.name,
            [kept for part in f.inner if (kept := [p for p in part if p in known])],
        )
        for f in splits.folds
    ]
    fitted = Splits(keep, splits.seed, splits.group_by, splits.val_fraction, dropped)
    try:
        check_leakage(fitted, patients)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    return fitted
