"""The schema's sections, the files in configs/, and the generated template."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from features.core.errors import ConfigError
from mil.config import MilConfig, load_config, named_configs
from mil.config.template import config_template, sections
from mil.evaluate.predictions import read_predictions
from mil.training.train import train_cv
from tests.paths import REPO
from tests.train_helpers import make_cohort, single_thread  # noqa: F401

CONFIGS = [REPO / "configs" / f"{name}.yaml" for name in named_configs()]
SEED_TASKS = {"apl_aml_healthy", "mds_aa_aml", "npm1", "cbfb_myh11", "genetics", "survival"}


def test_every_seed_task_has_a_config():
    assert SEED_TASKS <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates(path: Path):
    cfg = load_config(path)
    assert cfg.train.task in ("classification", "multilabel", "survival")
    assert load_config(path.stem) == cfg  # a name resolves to the shipped file, which is configs/<name>.yaml


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("configs"), n_patients=60, n_instances=(10, 30))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_on_a_small_store(path: Path, cohort, tmp_path):
    fast = [
        "train.epochs=2",
        "train.folds=3",
        "evaluate.n_bootstrap=20",
        "train.batch_size=8",
        "train.device=cpu",
    ]
    cfg = load_config(path, fast)
    summary = train_cv(*cohort, cfg.train, tmp_path / "run", evaluate=cfg.evaluate)
    preds, spec = read_predictions(tmp_path / "run" / "predictions.csv")
    assert spec.kind == cfg.train.task and len(preds) == summary.n_patients > 0
    assert summary.pooled.get("estimate") is not None


def test_precedence_and_types():
    cfg = load_config("npm1", ["train.lr=0.001", "train.model_params.dropout=0.1"], {"train": {"seed": 7}})
    assert cfg.train.lr == 0.001 and cfg.train.model_params == {"dropout": 0.1} and cfg.train.seed == 7
    assert cfg.train.head == "gated_abmil"  # from the file, not the default


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.head=abmill"], "Did you mean 'abmil'"),
        (["train.model_params.dropuot=0.1"], "model_params for head 'abmil'"),
        (["train.folds=1"], "train.folds"),
        (["train.task=regression"], "Unknown task 'regression'"),
        (["train.task=survival"], "needs time_col and event_col"),
        (["train.epochs_max=3"], "train.epochs_max"),
        (["train.target=[a, a]"], "without repeats"),
        (["train.n_bootstrap=20"], "moved to the evaluate section"),
        (["evaluate.n_bootstrap=-1"], "evaluate.n_bootstrap"),
        (["explain.top_k=0"], "explain.top_k"),
        (["report.clusters=0"], "report.clusters"),
        (["report.seed=-1"], "report.seed"),
        (["cells.classifier=svm"], "cells.classifier"),
        (["cells.folds=1"], "cells.folds"),
        (["cells.typo=1"], "cells.typo"),
    ],
)
def test_bad_values_fail_at_load(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_template_is_valid_and_documents_every_field():
    text = config_template()
    assert load_config_text(text) == MilConfig()
    assert {"extract", "train", "evaluate", "explain", "report", "cells"} <= set(sections())
    for section, model in sections().items():
        assert f"\n{section}:\n" in text
        for name, info in model.model_fields.items():
            assert f"  {name}: " in config_template(section)
            assert info.description and info.description.split()[0] in text
    assert "Choices: loss, metric." in text
    with pytest.raises(ConfigError, match="no config section"):
        config_template("nope")


def load_config_text(text: str) -> MilConfig:
    return MilConfig.model_validate(yaml.safe_load(text))
