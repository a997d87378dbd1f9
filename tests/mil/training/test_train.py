"""`train_cv`: the run folder, exact repeatability, leakage checks, overwrite safety, and actual learning."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from features.core.errors import InputError
from mil.config import EvaluateConfig, TrainConfig, load_config
from mil.evaluate.predictions import read_predictions
from mil.training import jobs as jobs_module
from mil.training.train import train_cv
from tests.train_helpers import SINGLE_MODEL, make_cohort, single_thread  # noqa: F401

FAST = dict(folds=3, epochs=6, patience=4, batch_size=8, lr=2e-3, device="cpu", **SINGLE_MODEL)
EVAL = EvaluateConfig(n_bootstrap=50)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("train"), n_patients=60)


@pytest.fixture(scope="module")
def run(cohort, tmp_path_factory):
    bags, labels = cohort
    out = tmp_path_factory.mktemp("runs") / "run"
    events = []
    summary = train_cv(
        bags,
        labels,
        TrainConfig(target="apl_aml_healthy", **FAST),
        out,
        progress=lambda e, **i: events.append((e, i)),
        evaluate=EVAL,
    )
    return out, summary, events


def test_run_folder(run, cohort):
    out, summary, events = run
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for k in range(3):
        assert {f"folds/{k}/model.pt", f"folds/{k}/history.csv"} <= names
    assert {
        "config.yaml",
        "splits.json",
        "predictions.csv",
        "predictions.csv.spec.json",
        "metrics.json",
        "left_out.csv",
        "plots/roc.png",
        "plots/confusion.png",
    } <= names
    assert not list(out.parent.glob(".run.*")), "temp folder left behind"

    table = pd.read_csv(cohort[1], dtype=str).drop_duplicates("patient_id")
    in_task = sorted(table.loc[table["apl_aml_healthy"].notna(), "patient_id"])
    preds, spec = read_predictions(out / "predictions.csv")
    assert sorted(preds["patient_id"]) == in_task and spec.classes == ["AML", "APL", "healthy"]
    splits = json.loads((out / "splits.json").read_text())
    fold_of = {p: str(f["index"]) for f in splits["folds"] for p in f["test"]}
    assert all(fold_of[p] == f for p, f in zip(preds["patient_id"], preds["fold"], strict=True))

    ckpt = torch.load(out / "folds/0/model.pt", weights_only=True)
    assert ckpt["head"] == "abmil" and ckpt["in_dim"] == 16 and ckpt["task"]["classes"] == spec.classes
    assert ckpt["encoder"]["name"] == "test-encoder"

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["folds"]) == {"0", "1", "2"} and metrics["pooled"]["macro_auc"]["n_boot"] == 50
    left = len(table) - len(in_task)
    assert metrics["cohort"]["left_out"]["empty_target"] == left == summary.left_out["empty_target"]
    assert (pd.read_csv(out / "left_out.csv")["reason"] == "empty target").sum() == left

    record = yaml.safe_load((out / "config.yaml").read_text())
    prov = record["provenance"]
    assert prov["seed"] == 0 and prov["versions"]["torch"] and prov["encoder"]["dim"] == 16
    assert prov["features"]["crop_um"] == 24.0 and prov["features"]["mpp"] == 0.25 and "command" in prov
    assert "git_commit" in prov and prov["cohort"]["left_out"]["empty_target"] == left
    assert load_config(out / "config.yaml").train == TrainConfig(target="apl_aml_healthy", **FAST)
    assert load_config(out / "config.yaml").evaluate == EVAL  # the bootstrap of metrics.json is recorded too

    kinds = [e for e, _ in events]
    assert kinds.count("fold_start") == 3 and kinds[-1] == "done" and "epoch" in kinds
    assert summary.pooled == metrics["pooled"]["macro_auc"]
    assert [f.test for f in summary.folds] == [metrics["folds"][str(k)]["macro_auc"] for k in range(3)]


def test_same_seed_repeats_exactly(run, cohort, tmp_path):
    out, _, _ = run
    again = tmp_path / "again"
    train_cv(*cohort, TrainConfig(target="apl_aml_healthy", **FAST), again, evaluate=EVAL)
    for name in ("metrics.json", "predictions.csv", "splits.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    other = tmp_path / "other"
    train_cv(*cohort, TrainConfig(target="apl_aml_healthy", seed=1, **{**FAST, "epochs": 1}), other)
    assert (other / "predictions.csv").read_bytes() != (out / "predictions.csv").read_bytes()


def test_learns_informative_features(cohort, tmp_path):
    """The cohort's features carry the diagnosis; a working trainer must find it (this test can fail)."""
    cfg = TrainConfig(target="diagnosis", **{**FAST, "epochs": 25, "patience": 10})
    summary = train_cv(*cohort, cfg, tmp_path / "run")
    assert summary.pooled["estimate"] > 0.85, summary.pooled
    preds, _ = read_predictions(tmp_path / "run" / "predictions.csv")
    assert (preds["y_true"] == preds["y_pred"]).mean() > 0.6


def test_splits_reuse_and_leaky_splits_refused(run, cohort, tmp_path):
    out, _, _ = run
    cfg = TrainConfig(target="apl_aml_healthy", **{**FAST, "epochs": 1, "folds": 5})
    train_cv(*cohort, cfg, tmp_path / "reuse", splits=out / "splits.json")
    assert (tmp_path / "reuse" / "splits.json").read_bytes() == (out / "splits.json").read_bytes()
    # config.yaml says how many folds the run used (the file's 3), not the 5 the config asked for
    assert yaml.safe_load((tmp_path / "reuse" / "config.yaml").read_text())["train"]["folds"] == 3
    leaky = json.loads((out / "splits.json").read_text())
    leaky["folds"][0]["train"].append(leaky["folds"][0]["test"][0])
    (tmp_path / "leaky.json").write_text(json.dumps(leaky))
    with pytest.raises(InputError, match="both train and test"):
        train_cv(*cohort, cfg, tmp_path / "leaky", splits=tmp_path / "leaky.json")
    assert not (tmp_path / "leaky").exists()


def test_leave_one_site_out(cohort, tmp_path):
    cfg = TrainConfig(target="diagnosis", group_by="site", **{**FAST, "epochs": 2})
    summary = train_cv(*cohort, cfg, tmp_path / "sites")
    assert [f.name for f in summary.folds] == ["site_a", "site_b", "site_c"]
    sites = pd.read_csv(cohort[1], dtype=str).drop_duplicates("patient_id").set_index("patient_id")["site"]
    for fold in json.loads((tmp_path / "sites" / "splits.json").read_text())["folds"]:
        assert set(sites[fold["test"]]) == {fold["name"]}


def test_existing_run_is_never_half_overwritten(run, cohort, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = TrainConfig(target="apl_aml_healthy", **{**FAST, "epochs": 1})
    train_cv(*cohort, cfg, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="not empty.*--overwrite"):
        train_cv(*cohort, cfg, out)

    real_fit = jobs_module.train_fold

    def crash_on_fold_1(*args, **kwargs):
        if kwargs.get("setup", args[4] if len(args) > 4 else None).fold == 1:
            raise RuntimeError("simulated crash")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(jobs_module, "train_fold", crash_on_fold_1)
    with pytest.raises(RuntimeError, match="simulated"):
        train_cv(
            *cohort,
            TrainConfig(target="apl_aml_healthy", seed=5, **{**FAST, "epochs": 1}),
            out,
            overwrite=True,
        )
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "temp folder left behind"
    monkeypatch.setattr(jobs_module, "train_fold", real_fit)
    train_cv(
        *cohort, TrainConfig(target="apl_aml_healthy", seed=5, **{**FAST, "epochs": 1}), out, overwrite=True
    )
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["seed"] == 5


def test_float16_storage_and_instance_options(cohort, tmp_path):
    cfg = TrainConfig(
        target="diagnosis",
        feature_dtype="float16",
        max_instances=16,
        instance_dropout=0.2,
        balanced_sampling=True,
        monitor="metric",
        **{**FAST, "epochs": 3},
    )
    summary = train_cv(*cohort, cfg, tmp_path / "run")
    assert np.isfinite(summary.pooled["estimate"])
