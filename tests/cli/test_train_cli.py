"""`mil train`, `mil predict`, `mil config` through the CLI (typer's CliRunner and `main` for exit codes)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from mil.cli import app, main
from mil.config import load_config
from mil.evaluate.predictions import read_predictions
from tests.train_helpers import SINGLE_MODEL_FLAGS, make_cohort, single_thread  # noqa: F401

runner = CliRunner()
FAST = [
    "--folds",
    "3",
    "--epochs",
    "2",
    "--device",
    "cpu",
    "--set",
    "evaluate.n_bootstrap=20",
    "--set",
    "train.batch_size=8",
    *SINGLE_MODEL_FLAGS,
]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cli"), n_patients=45, n_instances=(10, 20))


def test_train_then_predict(cohort, tmp_path):
    bags, labels = cohort
    run = tmp_path / "run"
    args = [
        "train",
        "--bags",
        str(bags),
        "--labels",
        str(labels),
        "--target",
        "apl_aml_healthy",
        "-o",
        str(run),
    ]
    result = runner.invoke(app, [*args, *FAST, "--model", "mean_pool", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "pooled" in result.output and "macro_auc" in result.output and "empty target" in result.output
    record = yaml.safe_load((run / "config.yaml").read_text())
    assert (
        record["train"]["head"] == "mean_pool"
        and record["train"]["seed"] == 3
        and record["train"]["folds"] == 3
    )
    assert json.loads((run / "metrics.json").read_text())["pooled"]["macro_auc"]["n_boot"] == 20

    again = runner.invoke(app, [*args, *FAST])
    assert again.exit_code != 0 and "--overwrite" in str(again.exception)

    preds = tmp_path / "preds.csv"
    result = runner.invoke(
        app, ["predict", str(run), "--bags", str(bags), "-o", str(preds), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    df, spec = read_predictions(preds)
    assert len(df) == 45 and spec.classes == ["AML", "APL", "healthy"]


def test_multilabel_and_survival_flags(cohort, tmp_path):
    bags, labels = cohort
    base = ["train", "--bags", str(bags), "--labels", str(labels)]
    ml = runner.invoke(
        app, [*base, "--target", "npm1", "--target", "cbfb_myh11", "-o", str(tmp_path / "g"), *FAST]
    )
    assert ml.exit_code == 0, ml.output
    assert read_predictions(tmp_path / "g" / "predictions.csv")[1].kind == "multilabel"
    surv = runner.invoke(
        app,
        [
            *base,
            "--task",
            "survival",
            "--time-col",
            "os_months",
            "--event-col",
            "os_event",
            "-o",
            str(tmp_path / "s"),
            *FAST,
        ],
    )
    assert surv.exit_code == 0, surv.output
    assert "c_index" in surv.output and (tmp_path / "s" / "plots" / "km.png").exists()


def test_bad_labels_are_one_line_with_exit_code_2(cohort, tmp_path, capsys):
    bags, labels = cohort
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "train",
                "--bags",
                str(bags),
                "--labels",
                str(labels),
                "--target",
                "flt3",
                "-o",
                str(tmp_path / "r"),
            ]
        )
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "no column 'flt3'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_config_show_and_template(tmp_path):
    shown = runner.invoke(app, ["config", "show", "--config", "npm1", "--set", "train.lr=0.001"])
    assert shown.exit_code == 0, shown.output
    assert yaml.safe_load(shown.output)["train"]["lr"] == 0.001
    out = tmp_path / "template.yaml"
    made = runner.invoke(app, ["config", "template", "-o", str(out)])
    assert made.exit_code == 0 and load_config(out) == load_config()


def test_auto_trains_with_a_shipped_config_and_records_the_shared_params(cohort, tmp_path):
    """#QA 2: every shipped config sets model_params.dropout, which `--model auto` refused; the run's params
    now apply to every candidate and the run records them (config.yaml, metrics.json, checkpoints)."""
    from mil.training.checkpoint import load_checkpoint

    run = tmp_path / "auto"
    args = ["train", "--bags", str(cohort[0]), "--labels", str(cohort[1]), "--config", "apl_aml_healthy",
            "--model", "auto", "-o", str(run), "--folds", "2", "--epochs", "1", "--device", "cpu",
            "--set", "evaluate.n_bootstrap=0", "--set", "train.batch_size=8",
            "--set", "train.model_params.dropout=0.3", *SINGLE_MODEL_FLAGS]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    record = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert record["head"] == "auto" and record["model_params"] == {"dropout": 0.3}
    selection = json.loads((run / "metrics.json").read_text())["selection"]
    assert set(selection["candidates"]) == {"abmil", "gated_abmil", "abmil_pool_stats", "mean_pool"}
    for k, fold in selection["folds"].items():
        assert fold["model_params"]["dropout"] == 0.3, (k, fold)
        assert load_checkpoint(run / "folds" / k / "model.pt").model_params == fold["model_params"]


def test_survival_times_are_written_as_the_labels_gave_them(cohort, tmp_path):
    """#QA 7: times went through float32 (9.3 -> 9.300000190734863) into predictions.csv, the baselines'
    predictions and `mil predict`; they are the labels' float64 values."""
    import pandas as pd

    bags, labels = cohort
    run = tmp_path / "s"
    surv = runner.invoke(app, ["train", "--bags", str(bags), "--labels", str(labels), "--config", "survival",
                               "--model", "mean_pool", "-o", str(run), *FAST])  # fmt: skip
    assert surv.exit_code == 0, surv.output
    given = pd.read_csv(labels).drop_duplicates("patient_id").set_index("patient_id")["os_months"]
    assert (given * 10 % 1 != 0).sum() == 0 and (given.astype("float32") != given).any()  # noise to lose
    preds = tmp_path / "p.csv"
    done = runner.invoke(app, ["predict", str(run), "--bags", str(bags), "--labels", str(labels), "-o",
                               str(preds), "--device", "cpu"])  # fmt: skip
    assert done.exit_code == 0, done.output
    for table in (run / "predictions.csv", run / "baselines" / "pooled_stats" / "predictions.csv", preds):
        times = pd.read_csv(table).set_index("patient_id")["time"].dropna()
        assert len(times) and (times == given.loc[times.index]).all(), table


def test_rerunning_a_config_that_reused_splits_says_how_to_repeat_it(cohort, tmp_path):
    bags, labels = cohort
    base = ["train", "--bags", str(bags), "--labels", str(labels), "--target", "apl_aml_healthy", *FAST]
    first = runner.invoke(app, [*base, "-o", str(tmp_path / "a"), "--model", "mean_pool"])
    assert first.exit_code == 0, first.output
    splits = tmp_path / "a" / "splits.json"
    reuse = runner.invoke(
        app, [*base, "-o", str(tmp_path / "b"), "--model", "mean_pool", "--splits", str(splits)]
    )
    assert reuse.exit_code == 0, reuse.output
    again = runner.invoke(
        app, [*base, "-o", str(tmp_path / "c"), "--config", str(tmp_path / "b" / "config.yaml")]
    )
    assert again.exit_code == 0, again.output
    assert "reused the folds of" in again.output and "pass --splits" in again.output
    assert "reused the folds" not in reuse.output
