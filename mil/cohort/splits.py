"""The one splitter: patient-level folds, each with disjoint train / val / test patients.

- k-fold (default): `StratifiedKFold` over patients gives the test folds (every patient is tested exactly
  once); inside each fold, a stratified `train_test_split` holds out `val_fraction` of the remaining
  patients for early stopping. The test patients never influence training or model selection.
- `group_by` (e.g. site): `LeaveOneGroupOut`, one fold per group tested on that group alone, i.e. external
  validation on a site the model never saw; validation patients come from the other sites.

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
) -> Splits:
    """Stratified patient folds (or one fold per group); see the module docstring."""
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
    for k, (rest, test) in enumerate(outer):
        train, val = _hold_out(rest, np.asarray(strata)[rest], val_fraction, seed + k)
        name = str(np.asarray(groups, dtype=object)[test[0]]) if groups is not None else ""
        folds.append(Fold(k, sorted(ids[train]), sorted(ids[val]), sorted(ids[test]), name))
    splits = Splits(folds, seed, group_by, val_fraction)
    check_leakage(splits, patients)
    return splits


def _hold_out(
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
    leave-one-group-out both test each patient once), and, if given, the splits cover exactly `patients`."""
    tested: Counter[str] = Counter()
    for f in splits.folds:
        parts = {"train": set(f.train), "val": set(f.val), "test": set(f.test)}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = parts[a] & parts[b]
            if both:
                raise InputError(
                    f"splits: fold {f.index} has {len(both)} patient(s) in both {a} and {b} ({sorted(both)[0]})"
                )
        empty = [name for name, part in parts.items() if not part]
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
            Fold(int(f["index"]), list(f["train"]), list(f["val"]), list(f["test"]), f.get("name", ""))
            for f in data["folds"]
        ]
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
        )
        for f in splits.folds
    ]
    fitted = Splits(keep, splits.seed, splits.group_by, splits.val_fraction, dropped)
    try:
        check_leakage(fitted, patients)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    return fitted
