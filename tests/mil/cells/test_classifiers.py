"""Every registered cell classifier: learns separable classes, gives normalised log-probabilities, saves as
arrays that predict identically, and handles a class absent from its training cells."""

from __future__ import annotations

import numpy as np
import pytest

from mil.cells.classifiers import CLASSIFIERS, FLOOR, create_classifier, load_classifier

PARAMS = {"linear": {}, "mlp": {"hidden": 32, "seed": 0}, "knn": {"neighbours": 5}}


def blobs(n_per: int = 40, n_classes: int = 4, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per)
    x = rng.normal(size=(len(y), dim)).astype(np.float32) + 5 * np.eye(dim, dtype=np.float32)[y]
    return x, y


def test_every_kind_is_registered():
    assert CLASSIFIERS.names() == sorted(PARAMS)


@pytest.mark.parametrize("kind", sorted(PARAMS))
def test_fits_predicts_and_round_trips(kind):
    x, y = blobs()
    model = create_classifier(kind, **PARAMS[kind]).fit(x, y, 4)
    x_new, y_new = blobs(seed=1)
    logp = model.log_proba(x_new)
    assert logp.shape == (len(x_new), 4)
    np.testing.assert_allclose(np.exp(logp).sum(1), 1.0, atol=1e-5)
    assert (logp.argmax(1) == y_new).mean() > 0.95
    again = load_classifier(kind, model.arrays(), {**PARAMS[kind], "n_classes": 4})
    np.testing.assert_allclose(again.log_proba(x_new), logp, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(PARAMS))
def test_a_class_missing_from_training_is_never_predicted(kind):
    x, y = blobs()
    keep = y != 2
    model = create_classifier(kind, **PARAMS[kind]).fit(x[keep], y[keep], 4)
    logp = model.log_proba(x)
    assert (logp[:, 2] == FLOOR).all() and (logp.argmax(1) != 2).all()


@pytest.mark.parametrize("kind", sorted(PARAMS))
def test_two_classes(kind):
    x, y = blobs(n_classes=2)
    model = create_classifier(kind, **PARAMS[kind]).fit(x, y, 2)
    assert (model.log_proba(x).argmax(1) == y).mean() > 0.95
