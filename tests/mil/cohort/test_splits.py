"""The splitter: no patient in two parts of a fold, every patient tested exactly once, seeded, reusable."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from features.core.errors import InputError
from mil.cohort.splits import Fold, Splits, check_leakage, load_splits, make_splits, merge_rare, save_splits


def assert_sound(splits: Splits, patients: list[str]) -> None:
    """The two promises, checked here independently of `check_leakage`."""
    tested = Counter(p for f in splits.folds for p in f.test)
    assert set(tested) == set(patients) and set(tested.values()) == {1}
    for f in splits.folds:
        train, val, test = set(f.train), set(f.val), set(f.test)
        assert not (train & val) and not (train & test) and not (val & test)
        assert train | val | test == set(patients)
        assert train and val and test


@pytest.mark.parametrize(
    "n,folds,weights,seed",
    [
        (30, 5, [0.5, 0.3, 0.2], 0),
        (57, 3, [0.8, 0.2], 1),
        (120, 10, [0.4, 0.4, 0.1, 0.1], 2),
        (12, 2, [0.5, 0.5], 3),
    ],
)
def test_folds_are_disjoint_and_cover_every_patient_once(n, folds, weights, seed):
    rng = np.random.default_rng(seed)
    patients = [f"p{i}" for i in range(n)]
    y = rng.choice(len(weights), size=n, p=weights)
    splits = make_splits(patients, y, folds, seed=seed, val_fraction=0.2)
    assert len(splits.folds) == folds
    assert_sound(splits, patients)
    # stratified: each class's test count per fold is within one of its share
    for c in range(len(weights)):
        per_fold = [sum(y[patients.index(p)] == c for p in f.test) for f in splits.folds]
        assert max(per_fold) - min(per_fold) <= 1


def test_same_seed_same_splits_other_seed_other_splits():
    patients = [f"p{i}" for i in range(40)]
    y = np.arange(40) % 2
    a, b = make_splits(patients, y, 4, seed=3), make_splits(patients, y, 4, seed=3)
    c = make_splits(patients, y, 4, seed=4)
    assert a == b and a != c


def test_leave_one_group_out():
    patients = [f"p{i}" for i in range(30)]
    sites = [["north", "south", "east"][i % 3] for i in range(30)]
    splits = make_splits(patients, np.arange(30) % 2, 5, seed=0, groups=sites, group_by="site")
    assert [f.name for f in splits.folds] == ["east", "north", "south"]
    for f in splits.folds:
        assert {sites[patients.index(p)] for p in f.test} == {f.name}
        assert f.name not in {sites[patients.index(p)] for p in f.train + f.val}
    assert_sound(splits, patients)
    with pytest.raises(InputError, match="one group"):
        make_splits(patients, np.arange(30) % 2, 5, seed=0, groups=["x"] * 30, group_by="site")


def test_check_leakage_catches_overlap_and_double_testing():
    ok = Fold(0, ["a", "b"], ["c"], ["d"])
    with pytest.raises(InputError, match="both train and test"):
        check_leakage(Splits([Fold(0, ["a", "b"], ["c"], ["a"])], 0))
    with pytest.raises(InputError, match="more than one fold"):
        check_leakage(Splits([ok, Fold(1, ["a", "c"], ["b"], ["d"])], 0))
    with pytest.raises(InputError, match="no test fold"):
        check_leakage(Splits([ok], 0), ["a", "b", "c", "d", "e"])


def test_save_load_roundtrip_and_cohort_fit(tmp_path):
    patients = [f"p{i}" for i in range(20)]
    splits = make_splits(patients, np.arange(20) % 2, 4, seed=0)
    path = tmp_path / "splits.json"
    save_splits(splits, path)
    assert load_splits(path, patients) == splits
    fewer = load_splits(path, patients[:-2])  # patients gone from the cohort are dropped and listed
    assert fewer.dropped == patients[-2:] and fewer.patients() == set(patients[:-2])
    with pytest.raises(InputError, match="no test fold"):
        load_splits(path, [*patients, "new"])
    path.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(InputError, match="not a mil splits file"):
        load_splits(path, patients)


def test_rare_strata_are_merged():
    strata = np.array(["a"] * 10 + ["b"] * 10 + ["c"] * 2 + ["d"] * 2)
    merged = merge_rare(strata, 3)
    assert set(merged) == {"a", "b", "__rare__"} and (merged == "__rare__").sum() == 4
    assert set(merge_rare(np.array(["a"] * 10 + ["c"]), 3)) == {"a"}
