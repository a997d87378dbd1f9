"""The regularised linear models: they learn, they z-score inside the fit, and degenerate training data give
the model's limit with a note instead of an exception."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import check_grad

from mil.baselines.linear import LogisticModel, OneVsRestLogistic, RidgeCox, penalised_cox
from mil.tasks.base import binary_auc


def _signal(n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, d))
    x[np.arange(n), y] += 2.0
    return x, y.astype(np.float32)


def test_logistic_learns_multinomial_probabilities():
    x, y = _signal()
    out = LogisticModel(1.0, 3).fit(x[:90], y[:90]).predict(x[90:])
    assert out.shape == (30, 3) and np.allclose(out.sum(axis=1), 1)
    assert (out.argmax(axis=1) == y[90:]).mean() > 0.8


def test_standardisation_is_fitted_on_the_training_rows_and_a_constant_feature_is_harmless():
    x, y = _signal()
    x = np.column_stack([x * 1000 + 5, np.full(len(x), 7.0)])  # scale and offset, and a constant feature
    model = LogisticModel(1.0, 3).fit(x[:90], y[:90])
    assert np.allclose(model.mean, x[:90].mean(axis=0)) and model.sd[-1] == 1.0
    assert model.model.coef_[:, -1].tolist() == [0.0, 0.0, 0.0]  # a constant carries nothing
    assert (model.predict(x[90:]).argmax(axis=1) == y[90:]).mean() > 0.8 and model.notes == []


def test_an_absent_class_gets_probability_0_and_one_class_is_a_constant_with_a_note():
    x, y = _signal()
    two = LogisticModel(1.0, 3).fit(x[y != 1], y[y != 1])
    assert (two.predict(x)[:, 1] == 0).all()
    one = LogisticModel(1.0, 3).fit(x[y == 2], y[y == 2])
    assert one.predict(x[:4]).tolist() == [[0, 0, 1]] * 4 and "one class only" in one.notes[0]


def test_one_vs_rest_per_label_with_a_label_that_never_occurs():
    x, y = _signal()
    labels = np.column_stack([(y == 0), np.zeros(len(y))]).astype(np.float32)
    model = OneVsRestLogistic(1.0).fit(x[:90], labels[:90])
    out = model.predict(x[90:])
    assert out.shape == (30, 2) and (out[:, 1] == 0).all() and "label 1" in model.notes[0]
    assert binary_auc(labels[90:, 0], out[:, 0]) > 0.9


def _survival(n=150, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    time = rng.exponential(np.exp(-1.0 * x[:, 0]))
    event = (rng.random(n) < 0.8).astype(float)
    return x, np.column_stack([np.round(time, 1) + 0.1, event])  # rounded: ties exist


def test_ridge_cox_gradient_is_the_derivative_of_its_objective():
    x, y = _survival()
    objective = penalised_cox(x, y[:, 0], y[:, 1], 0.3)
    beta = np.array([0.4, -0.2, 0.1])
    value, grad = objective(beta)
    assert np.isfinite(value) and check_grad(
        lambda b: objective(b)[0], lambda b: objective(b)[1], beta
    ) < 1e-4 * np.linalg.norm(grad)


def test_ridge_cox_objective_stays_finite_when_the_optimiser_tries_huge_steps():
    x, y = _survival()
    objective = penalised_cox(x, y[:, 0], y[:, 1], 1.0)
    value, grad = objective(
        np.array([800.0, -900.0, 500.0])
    )  # etas span thousands: exp() alone over/underflows
    assert np.isfinite(value) and np.isfinite(grad).all()


def test_ridge_cox_recovers_the_direction_and_matches_lifelines_without_penalty():
    from lifelines import CoxPHFitter

    x, y = _survival(n=300)
    y[:, 0] += np.arange(len(y)) * 1e-6  # no ties: Breslow (ours) and Efron (lifelines) agree exactly
    ours = RidgeCox(1e6).fit(x, y)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    frame = pd.DataFrame(z, columns=["a", "b", "c"]).assign(time=y[:, 0], event=y[:, 1])
    theirs = CoxPHFitter().fit(frame, "time", "event").params_.to_numpy()
    np.testing.assert_allclose(ours.beta, theirs, atol=2e-3)
    assert ours.beta[0] > 0.5 and abs(ours.beta[1]) < 0.3
    shrunk = RidgeCox(1e-4).fit(x, y)
    assert np.linalg.norm(shrunk.beta) < 0.1 * np.linalg.norm(ours.beta)  # the penalty shrinks


def test_ridge_cox_without_events_predicts_zero_risk_with_a_note():
    x, y = _survival()
    y[:, 1] = 0
    model = RidgeCox(1.0).fit(x, y)
    assert (model.predict(x) == 0).all() and "no event" in model.notes[0]


def test_a_penalty_factor_below_1_frees_that_weight_alone_for_logistic_and_cox():
    """factor f on a column = the ridge with f x w^2 for its weight: at a strong C the freed column gets the
    weight of an unpenalised fit on it alone (the other columns are shrunk to near 0), and they shrink as
    without the factor."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] + x[:, 1] + rng.normal(0, 1, 200) > 0).astype(np.float32)
    time = rng.exponential(np.exp(-(x[:, 0] + x[:, 1])))
    surv = np.c_[time, np.ones(200)]
    for model, target in [(lambda c: LogisticModel(c, 2), y), (RidgeCox, surv)]:

        def weights(c, columns, factor=None, model=model, target=target):
            fitted = model(c)
            fitted.penalty_factor = factor
            _, sd, weight, _ = fitted.fit(x[:, columns], target).logit_weights()
            return weight[-1] / sd  # per raw unit

        free = weights(1e-3, [0, 1, 2], np.array([1e-3, 1.0, 1.0]))
        strong, alone = weights(1e-3, [0, 1, 2]), weights(1e3, [0])
        assert abs(strong[0]) < 0.3 * abs(alone[0]) and free[0] == pytest.approx(alone[0], rel=0.2)
        assert free[1] == pytest.approx(strong[1], rel=0.5) and abs(free[1]) < 0.3 * abs(alone[0])
