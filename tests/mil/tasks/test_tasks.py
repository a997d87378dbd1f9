"""Tasks: losses against slow reference twins, label parsing, and predictions-table rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from features.core.errors import InputError
from mil.evaluate.columns import label_text
from mil.evaluate.predictions import validate_predictions
from mil.tasks import TASKS, TaskSpec, create_task
from mil.tasks.classification import infer_classes
from mil.tasks.survival import cox_ph_loss


def naive_cox(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """O(n^2) Breslow partial likelihood, written from the formula."""
    total, n_events = 0.0, 0
    for i in range(len(time)):
        if event[i]:
            at_risk = time >= time[i]
            total += risk[i] - math.log(np.exp(risk[at_risk]).sum())
            n_events += 1
    return -total / n_events


def test_registry_names():
    assert TASKS.names() == ["classification", "multilabel", "survival"]


@pytest.mark.parametrize("ties", [False, True])
def test_cox_loss_matches_naive_twin(ties):
    rng = np.random.default_rng(0)
    n = 40
    time = rng.integers(1, 8, n).astype(float) if ties else rng.exponential(10, n)
    event = (rng.random(n) < 0.6).astype(float)
    risk = rng.normal(size=n)
    got = cox_ph_loss(torch.tensor(risk), torch.tensor(time), torch.tensor(event)).item()
    assert got == pytest.approx(naive_cox(risk, time, event), rel=1e-5)


def test_cox_loss_without_events_is_zero_and_keeps_graph():
    risk = torch.randn(5, requires_grad=True)
    loss = cox_ph_loss(risk, torch.arange(5.0), torch.zeros(5))
    loss.backward()
    assert loss.item() == 0 and risk.grad is not None and torch.all(risk.grad == 0)


def test_cox_loss_recovers_lifelines_coefficient():
    """Minimising our loss for a linear risk gives lifelines' CoxPH coefficient (no ties: Breslow = Efron)."""
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(1)
    n = 300
    x = rng.normal(size=n)
    time = rng.exponential(np.exp(-0.8 * x)) * 10
    event = (rng.random(n) < 0.7).astype(float)
    beta = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    xt, tt, et = (torch.tensor(a, dtype=torch.float64) for a in (x, time, event))
    opt = torch.optim.LBFGS([beta], lr=1, max_iter=100, tolerance_grad=1e-10)

    def closure():
        opt.zero_grad()
        loss = cox_ph_loss(xt * beta, tt, et)
        loss.backward()
        return loss

    opt.step(closure)
    fitted = CoxPHFitter().fit(pd.DataFrame({"x": x, "T": time, "E": event}), "T", "E")
    assert beta.item() == pytest.approx(float(fitted.params_["x"]), abs=1e-3)


def test_classification_weights_and_loss():
    task = create_task(TaskSpec("classification", "dx", ["a", "b", "c"]))
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2], dtype=np.float32)
    task.fit_weights(y, enabled=True)
    assert task.weights.tolist() == pytest.approx([8 / (3 * 4), 8 / (3 * 2), 8 / (3 * 2)])
    logits = torch.randn(8, 3)
    expected = F.cross_entropy(logits, torch.tensor(y).long(), weight=task.weights)
    assert task.loss(logits, torch.tensor(y)).item() == pytest.approx(expected.item())
    task.fit_weights(y, enabled=False)
    assert task.weights is None


def test_classification_parse_and_unknown_class():
    task = create_task(TaskSpec("classification", "npm1", ["0", "1"]))
    table = pd.DataFrame({"npm1": ["1", "0.0", None, " 1 "]})
    y, has = task.parse(table, "labels.csv")
    assert has.tolist() == [True, True, False, True] and y[has].tolist() == [1, 0, 1]
    with pytest.raises(InputError, match=r"labels.csv: column 'npm1' has value\(s\) '2'"):
        task.parse(pd.DataFrame({"npm1": ["1", "2"]}), "labels.csv")


def test_infer_classes():
    assert infer_classes(pd.Series(["AML", "APL", None, "healthy", "AML"])) == ["AML", "APL", "healthy"]
    assert infer_classes(pd.Series(["10", "2", "1.0"])) == ["1", "2", "10"]
    assert infer_classes(pd.Series(["1.5", "2.25"])) is None
    assert label_text(pd.Series(["1.0", " x ", ""])).tolist()[:2] == ["1", "x"]


def test_binary_metric_is_positive_class_auc():
    task = create_task(TaskSpec("classification", "npm1", ["0", "1"]))
    y = np.array([0, 0, 1, 1], dtype=np.float32)
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.2, 0.8]])
    assert task.metric(y, probs) == pytest.approx(0.75)
    assert math.isnan(task.metric(np.zeros(4, np.float32), probs))


def test_multilabel_parse_weights_and_metric():
    task = create_task(TaskSpec("multilabel", ["npm1", "cbfb"], ["npm1", "cbfb"]))
    table = pd.DataFrame({"npm1": ["1", "0", "1", None], "cbfb": ["0", "0", "1", "1"]})
    y, has = task.parse(table, "l.csv")
    assert has.tolist() == [True, True, True, False]
    task.fit_weights(y[has], enabled=True)
    assert task.weights.tolist() == pytest.approx([1 / 2, 2 / 1])
    with pytest.raises(InputError, match="must be 0/1"):
        task.parse(pd.DataFrame({"npm1": ["2"], "cbfb": ["0"]}), "l.csv")


def test_survival_parse_rejects_negative_time():
    task = create_task(TaskSpec("survival", ["os_months", "os_event"], []))
    y, has = task.parse(pd.DataFrame({"os_months": ["3", "", "5.5"], "os_event": ["1", "0", None]}), "l.csv")
    assert has.tolist() == [True, False, False] and y[0].tolist() == [3, 1]
    with pytest.raises(InputError, match="time >= 0"):
        task.parse(pd.DataFrame({"os_months": ["-1"], "os_event": ["1"]}), "l.csv")


@pytest.mark.parametrize(
    "spec",
    [
        TaskSpec("classification", "dx", ["APL", "AML", "healthy"]),
        TaskSpec("multilabel", ["npm1", "cbfb"], ["npm1", "cbfb"]),
        TaskSpec("survival", ["os_months", "os_event"], []),
    ],
)
def test_frames_follow_the_predictions_contract(spec):
    task = create_task(spec)
    rng = np.random.default_rng(0)
    n = 6
    if spec.kind == "classification":
        y = np.array([0, 1, 2, 0, 1, 2], np.float32)
        out = torch.softmax(torch.randn(n, 3), 1).numpy()
    elif spec.kind == "multilabel":
        y = rng.integers(0, 2, (n, 2)).astype(np.float32)
        out = rng.random((n, 2))
    else:
        y = np.stack([rng.exponential(10, n), rng.integers(0, 2, n)], 1).astype(np.float32)
        out = rng.normal(size=(n, 1))
    frame = task.frame([f"p{i}" for i in range(n)], 2, y, out)
    checked = validate_predictions(frame, spec, "test")
    assert list(checked.columns) == task.columns() and (checked["fold"] == "2").all()
    unknown = task.frame([f"p{i}" for i in range(n)], None, None, out)  # external cohort: no truth, no fold
    assert validate_predictions(unknown, spec, "test")[task.truth_columns()].isna().all().all()
