"""Temperature scaling: recovers a known temperature, lowers the calibration error, never changes a call."""

from __future__ import annotations

import numpy as np
import pytest

from mil.cells.calibration import apply_temperature, expected_calibration_error, fit_temperature, nll
from mil.cells.classifiers.base import log_softmax


def overconfident(n: int = 4000, c: int = 5, true_t: float = 2.5, seed: int = 0):
    """Labels drawn from softmax(z / true_t) while the classifier reports softmax(z): over-confident by true_t."""
    rng = np.random.default_rng(seed)
    z = 3 * rng.normal(size=(n, c))
    p_true = np.exp(log_softmax(z / true_t))
    y = (p_true.cumsum(1) > rng.random((n, 1))).argmax(1)
    return log_softmax(z), y


def test_recovers_the_temperature_and_improves_calibration():
    logp, y = overconfident()
    t = fit_temperature(logp, y)
    assert abs(t - 2.5) < 0.25
    assert nll(logp, y, t) < nll(logp, y)
    calibrated = apply_temperature(logp, t)
    assert expected_calibration_error(calibrated, y) < 0.5 * expected_calibration_error(np.exp(logp), y)
    assert (calibrated.argmax(1) == logp.argmax(1)).all()


def test_ece_twin_on_a_tiny_case():
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.2, 0.8]])
    y = np.array([0, 1, 0, 1])
    # 15 bins: confidences 0.9, 0.6, 0.55, 0.8 fall in bins 13, 9, 8, 12, one cell each:
    # |1-0.9| + |0-0.6| + |1-0.55| + |1-0.8| over 4 cells
    assert np.isclose(expected_calibration_error(proba, y), (0.1 + 0.6 + 0.45 + 0.2) / 4)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_balanced_accuracy_twin_of_sklearn():
    from sklearn.metrics import balanced_accuracy_score

    from mil.cells.cv import balanced_accuracy

    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 6, 300))  # class 5 only ever predicted
    assert np.isclose(balanced_accuracy(y, pred), balanced_accuracy_score(y, pred))


def test_cells_of_a_class_missing_from_a_folds_training_do_not_flatten_the_temperature():
    from mil.cells.cv import cross_validate
    from mil.config import CellsConfig

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 60)
    x = rng.normal(size=(len(y), 6)).astype(np.float32) + 4 * np.eye(6, dtype=np.float32)[y]
    patients = np.array([f"p{i % 4}" for i in range(len(y))], dtype=object)
    patients[y == 3] = "only"  # class 3 lives in one patient: when that patient is held out, it is unseen
    cv = cross_validate(x, y, patients, ["a", "b", "c", "d"], CellsConfig(folds=5))
    assert cv.metrics["cells_of_unseen_classes"] == 60
    assert cv.temperature < 3  # fitted on the learnable cells, not pushed to the bound by the unseen ones
    confident = cv.proba[y != 3].max(1)
    assert np.median(confident) > 0.9
