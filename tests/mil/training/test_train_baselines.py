"""Baselines inside every `mil train`: on the run's own folds, written as `mil evaluate` reads them, compared
with the head by a paired bootstrap, repeatable, switchable, and open to new featurisers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from features.core.errors import ConfigError
from mil.baselines import BASELINES, Baseline, PatientFeatures
from mil.baselines.run import BaselineData, fit_baselines
from mil.cli import app
from mil.cohort.splits import load_splits, make_splits
from mil.config import EvaluateConfig, TrainConfig
from mil.evaluate.predictions import read_predictions
from mil.evaluate.run import evaluate_files
from mil.tasks import TaskSpec, create_task
from mil.training.train import train_cv
from tests.train_helpers import SINGLE_MODEL, make_cohort, single_thread  # noqa: F401

FAST = dict(folds=3, epochs=2, batch_size=8, device="cpu", head="mean_pool", **SINGLE_MODEL)
EVAL = EvaluateConfig(n_bootstrap=50, seed=2)
TARGETS = {
    "classification": dict(target="apl_aml_healthy"),
    "multilabel": dict(target=["npm1", "cbfb_myh11"]),
    "survival": dict(time_col="os_months", event_col="os_event"),
}
runner = CliRunner()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("baselines"), n_patients=45, n_instances=(10, 20))


@pytest.fixture(scope="module")
def run(cohort, tmp_path_factory):
    bags, labels = cohort
    out = tmp_path_factory.mktemp("runs") / "run"
    summary = train_cv(bags, labels, TrainConfig(**TARGETS["classification"], **FAST), out, evaluate=EVAL)
    return out, summary


def test_the_baseline_predicts_every_patient_on_the_runs_own_folds(run):
    out, summary = run
    head, spec = read_predictions(out / "predictions.csv")
    base, base_spec = read_predictions(out / "baselines" / "pooled_stats" / "predictions.csv")
    assert base_spec == spec and list(base["patient_id"]) == list(head["patient_id"])
    split = load_splits(out / "splits.json", list(head["patient_id"]))
    tested_in = {p: str(f.index) for f in split.folds for p in f.test}
    assert list(base["fold"]) == [tested_in[p] for p in base["patient_id"]] == list(head["fold"])
    assert (out / "plots" / "head_vs_baselines.png").is_file()
    record = summary.baselines["pooled_stats"]
    assert (
        record["status"] == "ok"
        and record["n_features"] == 5 * 16
        and set(record["folds"]) == {"0", "1", "2"}
    )
    for f in split.folds:  # each fold's baseline trained on that fold's train + validation patients
        assert record["folds"][str(f.index)]["n_train"] == len(f.train) + len(f.val)


def test_metrics_json_holds_the_baselines_metrics_and_the_paired_comparison(run):
    out, summary = run
    metrics = json.loads((out / "metrics.json").read_text())
    compared = metrics["comparison"]["pooled_stats"]
    assert compared["metric"] == "macro_auc" and compared["n"] == metrics["n_patients"]
    assert compared["head"]["estimate"] == pytest.approx(metrics["pooled"]["macro_auc"]["estimate"])
    assert (compared["head"]["low"], compared["head"]["high"]) == (
        metrics["pooled"]["macro_auc"]["low"], metrics["pooled"]["macro_auc"]["high"])  # fmt: skip
    diff = compared["difference"]
    assert diff["estimate"] == pytest.approx(compared["head"]["estimate"] - compared["baseline"]["estimate"])
    assert diff["low"] <= diff["estimate"] <= diff["high"] and diff["n_boot"] == 50
    assert compared["verdict"].startswith("macro AUC: head − pooled_stats = ")
    # the baseline's pooled metrics are what `mil evaluate` computes from its table
    own = evaluate_files(out / "baselines" / "pooled_stats" / "predictions.csv", evaluate=EVAL).metrics[
        "pooled"
    ]
    assert metrics["baselines"]["pooled_stats"]["pooled"] == json.loads(json.dumps(own))
    # `mil evaluate` on the run's predictions finds the baselines beside them and compares alike
    again = evaluate_files(out / "predictions.csv", evaluate=EVAL).metrics
    assert again["comparison"] == metrics["comparison"]


def test_the_same_seed_repeats_the_baselines_exactly(run, cohort, tmp_path):
    out, summary = run
    bags, labels = cohort
    second = train_cv(
        bags, labels, TrainConfig(**TARGETS["classification"], **FAST), tmp_path / "again", evaluate=EVAL
    )
    strip = {k: {f: v for f, v in r.items() if f != "seconds"} for k, r in summary.baselines.items()}
    assert strip == {k: {f: v for f, v in r.items() if f != "seconds"} for k, r in second.baselines.items()}
    assert second.comparison == summary.comparison
    name = "baselines/pooled_stats/predictions.csv"
    assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


@pytest.mark.parametrize("kind", ["multilabel", "survival"])
def test_multilabel_and_survival_runs_compare_on_their_headline_metric(kind, cohort, tmp_path):
    bags, labels = cohort
    cfg = TrainConfig(**TARGETS[kind], **FAST, allow_missing=True)
    summary = train_cv(bags, labels, cfg, tmp_path / kind, evaluate=EVAL)
    compared = summary.comparison["pooled_stats"]
    assert compared["metric"] == create_task(summary.spec).metric_name == summary.metric
    assert summary.baselines["pooled_stats"]["status"] == "ok" and compared["difference"]["n_valid"] > 0
    table, spec = read_predictions(tmp_path / kind / "baselines" / "pooled_stats" / "predictions.csv")
    assert spec.kind == kind and len(table) == summary.n_patients
    assert (tmp_path / kind / "plots" / "head_vs_baselines.png").is_file()


def test_no_baselines_when_switched_off(cohort, tmp_path):
    bags, labels = cohort
    summary = train_cv(bags, labels, TrainConfig(**TARGETS["classification"], **FAST, baselines=[]), tmp_path / "r",
                       evaluate=EVAL)  # fmt: skip
    assert (
        summary.baselines == {} and summary.comparison == {} and not (tmp_path / "r" / "baselines").exists()
    )
    assert not (tmp_path / "r" / "plots" / "head_vs_baselines.png").exists()
    assert TrainConfig(baselines=["none"]).baselines == [] and TrainConfig().baselines == ["pooled_stats"]


class FakeComposition(Baseline):
    """A stand-in for a cell-type model: each cell's "type" is its largest of the first 4 features."""

    name = "fake_composition"
    describes = "the fake cell-type composition"

    def features(self, bags, dim):
        shares = [np.bincount(np.asarray(b)[:, :4].argmax(axis=1), minlength=4) / len(b) for b in bags]
        return PatientFeatures(np.stack(shares), [f"share[type {k}]" for k in range(4)])


@pytest.fixture
def composition(monkeypatch):
    """FakeComposition registered in a copy of the registry, as a `mil cells` module would register itself."""
    BASELINES.names()
    monkeypatch.setattr(BASELINES, "_entries", dict(BASELINES._entries))
    BASELINES.register("fake_composition")(FakeComposition)


def test_a_composition_featuriser_is_one_more_registered_baseline(composition, cohort, tmp_path):
    bags, labels = cohort
    cfg = TrainConfig(**TARGETS["classification"], **FAST, baselines=["pooled_stats", "fake_composition"])
    summary = train_cv(bags, labels, cfg, tmp_path / "run", evaluate=EVAL)
    assert list(summary.comparison) == ["pooled_stats", "fake_composition"]
    record = summary.baselines["fake_composition"]
    assert record["status"] == "ok" and record["n_features"] == 4
    assert "the fake cell-type composition" in summary.comparison["fake_composition"]["verdict"]
    assert (tmp_path / "run" / "baselines" / "fake_composition" / "predictions.csv").is_file()


def test_non_finite_features_and_a_kind_without_a_model_are_skipped_with_the_reason():
    spec = TaskSpec("classification", "dx", ["a", "b"])
    task = create_task(spec)
    bags = [np.ones((3, 2), np.float32) * i for i in range(6)]
    bags[4][1, 0] = np.nan
    patients = [f"P{i}" for i in range(6)]
    y = np.array([0, 1] * 3, np.float32)
    split = make_splits(patients, y.astype(int), 2, seed=0, val_fraction=0.3)
    data = BaselineData(lambda: iter(bags), 2, patients, y, split, seed=0)
    (nan_run,) = fit_baselines(["pooled_stats"], data, task)
    assert nan_run.table is None and nan_run.record["status"] == "skipped"
    assert "patient P4 has non-finite features" in nan_run.record["reason"]

    class NoModel(type(task)):
        def baseline_model(self, c):
            return None

    (skipped,) = fit_baselines(["pooled_stats"], data, NoModel(spec))
    assert skipped.table is None and "has no baseline model" in skipped.record["reason"]


def test_cli_shows_head_vs_baseline_and_takes_baselines_from_the_schema(cohort, tmp_path):
    bags, labels = cohort
    args = ["train", "--bags", str(bags), "--labels", str(labels), "--target", "apl_aml_healthy", "--folds", "3",
            "--epochs", "2", "--device", "cpu", "--model", "mean_pool", "--set", "evaluate.n_bootstrap=30"]  # fmt: skip
    shown = runner.invoke(app, [*args, "-o", str(tmp_path / "a")])
    assert shown.exit_code == 0, shown.output
    assert "head vs baselines" in shown.output and "mean_pool (head)" in shown.output
    assert "macro AUC: head − pooled_stats = " in shown.output
    evaluated = runner.invoke(
        app, ["evaluate", str(tmp_path / "a" / "predictions.csv"), "-o", str(tmp_path / "m.json")]
    )
    assert evaluated.exit_code == 0 and "head − pooled_stats" in evaluated.output
    assert "comparison" in json.loads((tmp_path / "m.json").read_text())
    off = runner.invoke(app, [*args, "-o", str(tmp_path / "b"), "--baselines", "none"])
    assert off.exit_code == 0 and "head vs baselines" not in off.output
    bad = runner.invoke(app, [*args, "-o", str(tmp_path / "c"), "--baselines", "pooled_stat"])
    assert isinstance(bad.exception, ConfigError) and "Did you mean 'pooled_stats'" in str(bad.exception)
