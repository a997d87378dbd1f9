"""Cross-validation of a baseline: no patient ever on both sides of a fit, outer or inner; the same seed gives
the same outputs; C is chosen by the inner folds alone; degenerate folds end in notes, not exceptions."""

from __future__ import annotations

import numpy as np
import pytest

from mil.baselines import cv as cv_module
from mil.baselines.cv import C_GRID, INNER_FOLDS, cross_validate, inner_splits, select_c
from mil.baselines.linear import LinearBaselineModel
from mil.cohort.splits import make_splits
from mil.tasks import TaskSpec, create_task

CLASSIFICATION = create_task(TaskSpec("classification", "dx", ["AML", "APL", "healthy"]))


def _cohort(n=60, seed=0):
    """Column 0 is the patient's own position, so a spy can read which patients a fit saw."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3).astype(np.float32)
    x = rng.normal(size=(n, 4))
    x[np.arange(n), 1 + y.astype(int)] += 1.5
    return np.column_stack([np.arange(n), x]), y


@pytest.fixture
def spy(monkeypatch):
    """Every fit and predict of any baseline model: the patient positions it saw, in call order."""
    calls: list[tuple[str, set[int]]] = []
    fit, predict = LinearBaselineModel.fit, LinearBaselineModel.predict

    def spy_fit(self, x, y, start=None):
        calls.append(("fit", set(x[:, 0].astype(int).tolist())))
        return fit(self, x, y, start)

    def spy_predict(self, x):
        calls.append(("predict", set(x[:, 0].astype(int).tolist())))
        return predict(self, x)

    monkeypatch.setattr(LinearBaselineModel, "fit", spy_fit)
    monkeypatch.setattr(LinearBaselineModel, "predict", spy_predict)
    return calls


def test_no_patient_is_ever_on_both_sides_of_a_fit_inner_folds_included(spy):
    x, y = _cohort()
    patients = [f"P{i:02d}" for i in range(len(y))]
    split = make_splits(patients, CLASSIFICATION.strata(y), 5, seed=3)
    for fold in split.folds:
        train = np.array(sorted(int(p[1:]) for p in (*fold.train, *fold.val)))
        test = np.array([int(p[1:]) for p in fold.test])
        spy.clear()
        cross_validate(x, y, CLASSIFICATION, [(fold.index, train, test)], seed=3)
        pairs = list(zip(spy[::2], spy[1::2], strict=True))  # (fit, predict) of each model
        assert all(a[0] == "fit" and b[0] == "predict" for a, b in pairs)
        *inner, (final_fit, final_predict) = pairs
        assert len(inner) == len(C_GRID) * INNER_FOLDS
        for (_, fitted), (_, predicted) in inner:
            assert not fitted & predicted  # an inner test patient is never in its inner fit
            assert fitted | predicted <= set(train.tolist())  # outer test patients never reach the inner CV
        for c in range(len(C_GRID)):  # for each C the inner test parts partition the training patients
            parts = [predicted for (_, _), (_, predicted) in inner[c :: len(C_GRID)]]
            assert len(parts) == INNER_FOLDS and sorted(i for part in parts for i in part) == train.tolist()
        assert final_fit[1] == set(train.tolist()) and final_predict[1] == set(test.tolist())


def test_the_same_seed_gives_identical_outputs_and_another_seed_other_inner_folds():
    x, y = _cohort()
    folds = [(0, np.arange(0, 45), np.arange(45, 60)), (1, np.arange(15, 60), np.arange(0, 15))]
    a = cross_validate(x[:, 1:], y, CLASSIFICATION, folds, seed=7)
    b = cross_validate(x[:, 1:], y, CLASSIFICATION, folds, seed=7)
    assert np.array_equal(a.outputs, b.outputs, equal_nan=True) and [f.c for f in a.folds] == [
        f.c for f in b.folds
    ]
    assert np.isnan(a.outputs[:15]).all() == False  # noqa: E712  both folds predicted their test patients
    strata = CLASSIFICATION.strata(y[:45])
    assert [t.tolist() for _, t in inner_splits(strata, 5, 1)] != [
        t.tolist() for _, t in inner_splits(strata, 5, 2)
    ]


def test_inner_folds_are_stratified_and_shrink_with_few_patients():
    strata = np.array([0] * 10 + [1] * 5)
    splits = inner_splits(strata, 5, seed=0)
    assert len(splits) == 5 and all(sorted(strata[test].tolist()) == [0, 0, 1] for _, test in splits)
    assert (
        len(inner_splits(np.array([0, 1, 1]), 5, seed=0)) == 3 and inner_splits(np.array([1]), 5, 0) is None
    )


def test_c_is_the_best_inner_score_and_ties_go_to_the_stronger_penalty(monkeypatch):
    x, y = _cohort()
    scores = iter([0.6, 0.9, 0.9, 0.7])
    monkeypatch.setattr(CLASSIFICATION, "metric", lambda yy, out: next(scores))
    c, score, notes = select_c(x, y, CLASSIFICATION, seed=0, grid=(0.01, 0.1, 1.0, 10.0))
    assert (c, score, notes) == (0.1, 0.9, [])


def test_a_tolerance_gives_near_ties_to_the_stronger_penalty(monkeypatch):
    x, y = _cohort()
    scores = [0.600, 0.897, 0.900, 0.899]
    monkeypatch.setattr(CLASSIFICATION, "metric", lambda yy, out, s=iter(scores * 2): next(s))
    grid = (0.01, 0.1, 1.0, 10.0)
    assert select_c(x, y, CLASSIFICATION, seed=0, grid=grid)[:2] == (1.0, 0.9)
    assert select_c(x, y, CLASSIFICATION, seed=0, grid=grid, tolerance=0.005)[:2] == (0.1, 0.897)


def test_unscorable_inner_folds_and_tiny_training_parts_fall_back_to_c_1_with_a_note(monkeypatch):
    x, y = _cohort()
    c, score, notes = select_c(x[:1], y[:1], CLASSIFICATION, seed=0)
    assert (c, score) == (cv_module.DEFAULT_C, None) and "no inner CV" in notes[0]
    monkeypatch.setattr(CLASSIFICATION, "metric", lambda yy, out: float("nan"))
    c, score, notes = select_c(x, y, CLASSIFICATION, seed=0, grid=(0.1, 1.0))
    assert (c, score) == (1.0, None) and "could not score" in notes[0]


def test_a_fold_whose_training_patients_hold_one_class_is_a_note_not_an_exception():
    x, y = _cohort()
    only_aml = np.flatnonzero(y == 0)
    result = cross_validate(x, y, CLASSIFICATION, [(0, only_aml[:15], np.flatnonzero(y != 0))], seed=0)
    assert (result.outputs[y != 0] == [1, 0, 0]).all()
    assert any("one class only" in note for note in result.folds[0].notes)


@pytest.mark.parametrize(
    ("spec", "make_y"),
    [
        (TaskSpec("multilabel", ["npm1", "cbfb"], ["npm1", "cbfb"]),
         lambda y: np.column_stack([y == 0, y == 1]).astype(np.float32)),
        (TaskSpec("survival", ["os", "event"], []),
         lambda y: np.column_stack([10.0 - 3 * (y == 0) + np.arange(len(y)) * 0.01, np.arange(len(y)) % 4 != 0]).astype(np.float32)),
    ],
    ids=["multilabel", "survival"],
)  # fmt: skip
def test_multilabel_and_survival_baselines_learn_on_their_outer_folds(spec, make_y):
    # survival: only the class orders the times (within a class by position, i.e. noise), so ~0.72 is the best
    task = create_task(spec)
    x, y3 = _cohort(90)
    y = make_y(y3)
    parts = np.array_split(np.random.default_rng(0).permutation(90), 3)  # folds unrelated to the classes
    folds = [(k, np.setdiff1d(np.arange(90), test), np.sort(test)) for k, test in enumerate(parts)]
    result = cross_validate(x[:, 1:], y, task, folds, seed=0)
    assert result.outputs.shape == (90, task.n_outputs) and np.isfinite(result.outputs).all()
    assert task.metric(y, result.outputs) > 0.65 and all(f.c in C_GRID for f in result.folds)


def test_c_by_deviance_gives_noise_the_strongest_penalty_and_signal_a_weaker_one():
    """A model whose logits are added to another's (the fused head's start) chooses C by held-out deviance: on
    noise mostly the strongest penalty (logits near 0: nothing added), on a real signal a weaker one. The
    headline metric cannot see a logit's size, so on noise it often picks a weak penalty."""
    from mil.baselines.cv import fit_selected

    task = create_task(TaskSpec("classification", "y", ["0", "1"]))
    rng = np.random.default_rng(0)
    y = np.arange(120) % 2
    spread = {"metric": [], "deviance": []}
    for draw in range(12):
        z = rng.normal(size=(120, 3))
        for by in spread:
            logits = fit_selected(z, y, task, seed=draw, by=by).logits(z)[:, 1]
            spread[by].append(np.abs(logits - logits.mean()).mean())
    assert np.median(spread["deviance"]) < 0.01 < np.median(spread["metric"])
    z = rng.normal(size=(120, 3))
    z[:, 0] += y
    assert select_c(z, y, task, seed=1, by="deviance")[0] > min(C_GRID)
    survival = create_task(TaskSpec("survival", ["t", "e"], []))
    times = np.stack([rng.exponential(np.exp(-z[:, 1])), rng.random(120) < 0.75], axis=1)
    assert select_c(z, times, survival, seed=1, by="deviance")[0] > min(C_GRID)
