"""Every registered kind describes itself completely, and a config names at most one kind."""

from __future__ import annotations

import pytest

from features.core.errors import ConfigError, InputError
from mil.config import TrainConfig
from mil.tasks import TASKS, TaskSpec, infer_kind, task_kind


@pytest.mark.parametrize("name", TASKS.names())
def test_kind_describes_itself(name):
    kind = task_kind(name)
    assert kind.kind == name and kind.metric_name in kind.headline and kind.metric_label
    assert kind.plots and all(f.endswith(".png") for f in kind.plots)


@pytest.mark.parametrize(
    "fields, kind",
    [
        ({"target": "dx"}, "classification"),
        ({"target": ["npm1", "cbfb"]}, "multilabel"),
        ({"time_col": "os", "event_col": "dead"}, "survival"),
        ({"target": ["npm1", "cbfb"], "time_col": "os", "event_col": "dead"}, "multilabel"),
        ({"target": "npm1", "task": "multilabel"}, "multilabel"),
    ],
)
def test_infer_kind(fields, kind):
    assert infer_kind(TrainConfig(**fields)) == kind


def test_no_target_names_the_fix():
    with pytest.raises(ConfigError, match="no target: pass --target"):
        infer_kind(TrainConfig())


def test_spec_of_an_unknown_kind_lists_the_kinds():
    with pytest.raises(InputError, match="kind 'ordinal' is not one of classification, multilabel, survival"):
        TaskSpec("ordinal", "grade", ["1", "2"])
