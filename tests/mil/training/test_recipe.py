"""The #11 recipe through `train_cv`: inner folds without leakage, the auto choice recorded honestly, the
pooled-statistics prior, calibration stored in the checkpoints and reproduced by `mil predict`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from features.core.errors import InputError
from mil.cohort.splits import Fold, Splits, check_leakage, make_splits, with_inner
from mil.config import EvaluateConfig, TrainConfig
from mil.evaluate.predictions import read_predictions
from mil.training.train import train_cv
from tests.train_helpers import assert_predict_reproduces, make_cohort, single_thread  # noqa: F401

FAST = dict(folds=3, epochs=3, patience=2, batch_size=8, lr=2e-3, device="cpu", inner_folds=3)
EVAL = EvaluateConfig(n_bootstrap=20)
RECIPE = dict(
    selection="crossfit", prior="pooled_stats", calibration="temperature"
)  # opt-in, not the defaults


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("recipe"), n_patients=36)


@pytest.fixture(scope="module")
def auto_run(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("auto") / "run"
    summary = train_cv(
        *cohort, TrainConfig(target="apl_aml_healthy", head="auto", **RECIPE, **FAST), out, evaluate=EVAL
    )
    return out, summary


def assert_no_patient_in_two_parts(splits: dict) -> None:
    """Independently of check_leakage: test / train disjoint, inner parts disjoint and covering train."""
    tested = [p for f in splits["folds"] for p in f["test"]]
    assert len(tested) == len(set(tested))
    for f in splits["folds"]:
        train, test, inner = set(f["train"]), set(f["test"]), [set(p) for p in f["inner"]]
        assert not f["val"] and not (train & test) and len(inner) == 3
        assert set().union(*inner) == train and sum(len(p) for p in inner) == len(train)
        assert all(not (part & test) for part in inner)


def test_inner_folds_never_share_a_patient(auto_run):
    out, _ = auto_run
    assert_no_patient_in_two_parts(json.loads((out / "splits.json").read_text()))


def test_inner_parts_are_checked_and_refitted_from_validation_splits():
    patients = [f"p{i:02d}" for i in range(30)]
    y = np.arange(30) % 3
    made = make_splits(patients, y, 3, seed=1, inner_folds=4)
    check_leakage(made, patients)
    assert all(len(f.inner) == 4 and not f.val for f in made.folds)
    old = make_splits(patients, y, 3, seed=1, val_fraction=0.2)  # a run written before cross-fitting
    refit = with_inner(old, dict(zip(patients, y, strict=True)), 4)
    for before, after in zip(old.folds, refit.folds, strict=True):
        assert sorted(after.train) == sorted(before.train + before.val) and after.test == before.test
    bad = made.folds[0]
    twice = Fold(
        0, bad.train, [], bad.test, "", [bad.inner[0], bad.inner[0] + bad.inner[1][:1], *bad.inner[1:]]
    )
    with pytest.raises(InputError, match="two inner parts"):
        check_leakage(Splits([twice, *made.folds[1:]], 1), patients)
    short = Fold(0, bad.train, [], bad.test, "", bad.inner[1:])
    with pytest.raises(InputError, match="not a partition"):
        check_leakage(Splits([short, *made.folds[1:]], 1), patients)


def test_auto_records_the_choice_per_fold_and_every_candidate(auto_run):
    from mil.training.auto import AUTO_GRID

    out, summary = auto_run
    metrics = json.loads((out / "metrics.json").read_text())
    sel = metrics["selection"]
    names = [c.name for c in AUTO_GRID]
    assert sel["head"] == "auto" and set(sel["folds"]) == {"0", "1", "2"}
    for rec in sel["folds"].values():
        assert rec["chosen"] in names and set(rec["candidates"]) == set(names)
        inner = rec["candidates"][rec["chosen"]]["inner_metric"]  # the choice is the best on inner patients
        assert inner == max(c["inner_metric"] for c in rec["candidates"].values())
    assert set(sel["candidates"]) == set(names) and sel["best_single"] in names
    for name in names:
        table, _ = read_predictions(out / "candidates" / name / "predictions.csv")
        assert len(table) == metrics["n_patients"]
    # the chosen candidate's rows of each fold are the run's own predictions
    preds, _ = read_predictions(out / "predictions.csv")
    for fold, rec in sel["folds"].items():
        mine = preds[preds["fold"] == int(fold)].set_index("patient_id")
        theirs, _ = read_predictions(out / "candidates" / rec["chosen"] / "predictions.csv")
        theirs = theirs[theirs["fold"] == int(fold)].set_index("patient_id")
        np.testing.assert_allclose(
            mine.filter(like="prob_").to_numpy(), theirs.filter(like="prob_").to_numpy()
        )
    assert summary.candidates and [f.chosen for f in summary.folds] == [
        r["chosen"] for r in sel["folds"].values()
    ]


def test_calibration_is_fitted_inside_and_predict_reproduces_the_run(auto_run, cohort, tmp_path):
    """Each fold's checkpoints carry its calibration; the reloaded fold models give the run's own out-of-fold
    probabilities for their test patients (prior, standardisation and calibration all restored)."""
    out, _ = auto_run
    metrics = json.loads((out / "metrics.json").read_text())
    cal = metrics["calibration"]
    assert cal["method"] == "temperature" and set(cal["folds"]) == {"0", "1", "2"}
    assert {"ece", "brier", "series"} <= set(cal["calibrated"]) and (
        out / "plots" / "reliability.png"
    ).is_file()
    ckpt = torch.load(out / "folds/1/model.2.pt", weights_only=True)
    assert ckpt["calibration"] == cal["folds"]["1"] and ckpt["member"] == 2 and ckpt["prior"]
    preds, _ = read_predictions(out / "predictions.csv")
    assert_predict_reproduces(out, preds, cohort, tmp_path)


def test_no_prior_no_calibration_validation_selection(cohort, tmp_path):
    """The pre-#11 recipe stays available: one model per fold on a validation part, raw outputs."""
    cfg = TrainConfig(
        target="apl_aml_healthy", selection="validation", prior="none", calibration="none", **FAST
    )
    summary = train_cv(*cohort, cfg, tmp_path / "old", evaluate=EVAL)
    assert all(f.n_models == 1 and f.n_val > 0 for f in summary.folds) and summary.calibration is None
    names = {p.name for p in (tmp_path / "old" / "folds" / "0").iterdir()}
    assert names == {"model.pt", "history.csv"}
    assert not (tmp_path / "old" / "predictions_uncalibrated.csv").exists()


def test_auto_takes_only_model_params_every_candidate_takes():
    """With head auto the run's model_params apply to every candidate (see tests/mil/config/test_config.py)."""
    assert TrainConfig(target="x", head="auto", model_params={"dropout": 0.1}).model_params == {
        "dropout": 0.1
    }
    with pytest.raises(ValueError, match="has no 'attention_dim'"):
        TrainConfig(target="x", head="auto", model_params={"attention_dim": 8})


def test_validation_seed_ensemble_draws_its_own_validation_parts():
    """`seeds` with `selection: validation`: the first model keeps the fold's parts; each further one holds out
    its own stratified part of the same share, drawn from the fold's non-test patients; no test patient in any."""
    from types import SimpleNamespace

    from mil.tasks import TaskSpec, create_task
    from mil.training.recipe import FoldParts, validation_plan

    task = create_task(TaskSpec("classification", "label", ["a", "b", "c"]))
    y = np.arange(60) % 3
    bags = SimpleNamespace(y=torch.as_tensor(y))
    test = np.arange(0, 60, 5)
    rest = np.setdiff1d(np.arange(60), test)
    parts = FoldParts(rest[10:], rest[:10], test)
    one = validation_plan(task, bags, parts, TrainConfig(target="x", seeds=1), seed=7)
    assert len(one) == 1 and one[0][0] is parts.train and one[0][1] is parts.val and one[0][2] == 7
    plan = validation_plan(task, bags, parts, TrainConfig(target="x", seeds=3), seed=7)
    assert len(plan) == 3 and plan[0] == one[0] and len({s for *_, s in plan}) == 3
    for train, val, _ in plan:
        assert not set(train) & set(val) and set(train) | set(val) == set(rest)
        assert not (set(train) | set(val)) & set(test)
    for _, val, _ in plan[1:]:
        assert len(val) == int(np.ceil(0.2 * len(rest))) and set(np.bincount(y[val], minlength=3)) <= {
            3,
            4,
        }  # stratified
    vals = [frozenset(v) for _, v, _ in plan]
    assert len(set(vals)) == 3  # three different validation parts
    again = validation_plan(task, bags, parts, TrainConfig(target="x", seeds=3), seed=7)
    assert all((a[1] == b[1]).all() for a, b in zip(plan, again, strict=True))  # seeded


def test_validation_seed_ensemble_is_saved_and_predict_reproduces_it(cohort, tmp_path):
    """Three single models per fold, saved as the fold's members; `mil predict` reloads a fold's members and
    gives the run's out-of-fold probabilities (the members' mean logit); the same seed repeats the run exactly."""
    cfg = TrainConfig(target="apl_aml_healthy", selection="validation", seeds=3, **FAST)
    out = tmp_path / "seeds"
    summary = train_cv(*cohort, cfg, out, evaluate=EVAL)
    assert all(f.n_models == 3 for f in summary.folds)
    assert {p.name for p in (out / "folds" / "0").iterdir()} >= {"model.pt", "model.1.pt", "model.2.pt"}
    preds, _ = read_predictions(out / "predictions.csv")
    assert_predict_reproduces(out, preds, cohort, tmp_path)
    train_cv(*cohort, cfg, tmp_path / "rerun", evaluate=EVAL)
    rerun, _ = read_predictions(tmp_path / "rerun" / "predictions.csv")
    from pandas.testing import assert_frame_equal

    assert_frame_equal(rerun, preds)
