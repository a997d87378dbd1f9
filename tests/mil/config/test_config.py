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


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.epoch=3"], "--set train.epoch: no setting 'train.epoch'; did you mean train.epochs?"),
        (["train.folds=abc"], "--set train.folds=abc: Input should be a valid integer"),
        (["tran.folds=3"], "--set tran.folds: no setting 'tran'; did you mean train?"),
        (["train.model_params.dropuot=0.1"], "--set train.model_params.dropuot=0.1: model_params for head"),
        (["train.head=abmill"], "--set train.head=abmill: Unknown head 'abmill'. Did you mean 'abmil'?"),
    ],
)
def test_a_bad_set_names_the_set_item_not_the_yaml(overrides, message):
    """#QA 4: the value came from --set, so the line names --set (and the closest key), not the YAML file."""
    with pytest.raises(ConfigError) as raised:
        load_config("apl_aml_healthy", overrides)
    assert str(raised.value).startswith(message) and "apl_aml_healthy.yaml" not in str(raised.value)


def test_a_typo_in_the_yaml_names_the_file_and_the_closest_key(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("train:\n  epocs: 3\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: train.epocs: .*did you mean train.epochs\?"):
        load_config(path)


def test_invalid_yaml_is_one_line_with_its_position(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  target: [apl\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    line = str(raised.value)
    assert "\n" not in line and line.startswith(f"{path}: not valid YAML at line 2, column 11 (")
    assert "while parsing a flow sequence" in line


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS))
def test_head_auto_takes_every_shipped_config_and_shares_its_params(name):
    """#QA 2: the shipped configs set model_params.dropout; with head auto it applies to every candidate, each
    candidate's own grid params on top."""
    from mil.training.auto import AUTO_GRID
    from mil.training.recipe import candidates

    cfg = load_config(name, ["train.head=auto", "train.model_params.dropout=0.3"])
    grid = candidates(cfg.train)
    assert [c.name for c in grid] == [c.name for c in AUTO_GRID]
    assert all(c.model_params["dropout"] == 0.3 for c in grid)
    assert dict(grid[2].model_params) == {"dropout": 0.3, "pool_stats": True}


@pytest.mark.parametrize(
    "params, message",
    [
        ("{attention_dim: 8}", "mean_pool .* has no 'attention_dim'"),  # mean_pool takes no attention
        ("{pool_stats: true}", "head auto chooses it"),  # the grid varies it
        ("{dropout: 2}", "model_params.dropout: Input should be less than 1"),
    ],
)
def test_head_auto_refuses_params_that_cannot_apply_to_every_candidate(params, message):
    with pytest.raises(ConfigError, match=message):
        load_config("apl_aml_healthy", ["train.head=auto", f"train.model_params={params}"])


def test_survival_refuses_calibration_and_runs_without_it():
    """#QA 6: survival risks are not calibrated, so asking for it is an error, never a silent no-op."""
    with pytest.raises(ConfigError, match=r"^--set train.calibration=temperature: .*survival risks are not"):
        load_config("survival", ["train.calibration=temperature"])
    assert load_config("survival").train.calibration == "none"
