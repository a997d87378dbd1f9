"""`mil predict`: the fold ensemble on a store, per-model outputs for explanations, encoder guard."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from features.bagstore import BagStore, EncoderIdentity
from features.core.errors import InputError
from mil.config import EvaluateConfig, TrainConfig
from mil.evaluate.metrics import compute_metrics
from mil.evaluate.predictions import attach_labels, read_predictions
from mil.explain.cohort import Explainer
from mil.tasks import create_task
from mil.training.data import read_patient_bag
from mil.training.predict import ensemble_outputs, load_run, predict
from mil.training.train import train_cv
from tests.train_helpers import make_cohort, single_thread  # noqa: F401


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    bags, labels = make_cohort(root, n_patients=30)
    cfg = TrainConfig(
        target="apl_aml_healthy", folds=3, epochs=4, batch_size=8, lr=2e-3, device="cpu", selection="crossfit",
        prior="pooled_stats", calibration="temperature",
    )  # fmt: skip
    train_cv(bags, labels, cfg, root / "run", evaluate=EvaluateConfig(n_bootstrap=20))
    return root / "run", bags, labels


def test_load_run_and_per_model_outputs(trained):
    run, bags, _ = trained
    config, models, spec = load_run(run)
    # cross-fitting: 5 member models per fold, in fold then member order
    assert config.target == "apl_aml_healthy" and len(models) == 15
    assert [(m.fold, m.member) for m in models] == [(k, j) for k in range(3) for j in range(5)]
    assert all(m.calibration is not None for m in models)
    assert spec.classes == ["AML", "APL", "healthy"] and not any(m.head.training for m in models)
    store = BagStore(bags)
    slides = [m.slide_id for m in store.metas() if m.patient_id == "P003"]
    bag = read_patient_bag(store, "P003", slides)
    assert len(bag.slides) == 2
    outs = ensemble_outputs(models, bag.features)
    assert len(outs) == 15
    for out in outs:
        assert out.logits.shape == (1, 3) and out.attention.shape == (1, 1, len(bag.features))
        assert out.attention.sum().item() == pytest.approx(1, abs=1e-5)


def test_predict_is_the_mean_of_fold_ensembles(trained, tmp_path):
    run, bags, _ = trained
    path = predict(run, bags, tmp_path / "preds.csv", device="cpu")
    preds, spec = read_predictions(path)
    store = BagStore(bags)
    assert sorted(preds["patient_id"]) == sorted({m.patient_id for m in store.metas()})
    assert preds["fold"].isna().all() and preds["y_true"].isna().all()
    _, models, _ = load_run(run)
    for pid in ("P003", "P010"):
        slides = [m.slide_id for m in store.metas() if m.patient_id == pid]
        outs = ensemble_outputs(models, read_patient_bag(store, pid, slides).features)
        # calibrated members: each fold's members by their mean logit (what the run reported for its test
        # patients), then the mean over the folds' probabilities
        logits = torch.stack([o.logits[0] for o in outs]).reshape(3, 5, 3)
        mean = torch.softmax(logits.mean(1), 1).mean(0).numpy()
        assert not np.allclose(mean, torch.softmax(logits, 2).mean((0, 1)).numpy(), atol=1e-5)
        row = preds.set_index("patient_id").loc[pid, create_task(spec).prob_columns()].to_numpy(float)
        np.testing.assert_allclose(row, mean, atol=1e-5)


def test_predict_with_labels_fills_truth_and_is_scorable(trained, tmp_path):
    run, bags, labels = trained
    path = predict(run, bags, tmp_path / "preds.csv", labels=labels, device="cpu")
    preds, spec = read_predictions(path)
    table = pd.read_csv(labels, dtype=str).drop_duplicates("patient_id").set_index("patient_id")
    truth = table.loc[preds["patient_id"], "apl_aml_healthy"].to_numpy()
    assert (preds["y_true"].fillna("").to_numpy() == np.where(pd.isna(truth), "", truth)).all()
    per_patient = tmp_path / "per_patient.csv"  # attach_labels takes one row per patient
    table.reset_index().to_csv(per_patient, index=False)
    scored = attach_labels(preds, spec, per_patient)  # what `mil evaluate preds.csv --labels CSV` does
    metrics = compute_metrics(scored, spec, EvaluateConfig(n_bootstrap=20))
    assert metrics["n_patients"] == int(pd.notna(truth).sum()) and metrics["folds"] == {}


def test_predict_refuses_another_encoder(trained, tmp_path):
    run, _, _ = trained
    other = EncoderIdentity(name="other-encoder", weights_sha256="1" * 64, dim=16, unit="cells")
    bags, _ = make_cohort(tmp_path, n_patients=5, encoder=other)
    with pytest.raises(
        InputError, match=r"bags are other-encoder.*trained on test-encoder.*run's encoder"
    ) as err:
        predict(run, bags, tmp_path / "p.csv")
    assert "\n" not in str(err.value) and not (tmp_path / "p.csv").exists()


def test_labels_must_list_every_stored_slide(trained, tmp_path):
    run, bags, labels = trained
    table = pd.read_csv(labels, dtype=str)
    table.iloc[1:].to_csv(tmp_path / "fewer.csv", index=False)
    with pytest.raises(InputError, match="1 stored slides are not listed"):
        predict(run, bags, tmp_path / "p.csv", labels=tmp_path / "fewer.csv")


def test_survival_ensemble_is_the_mean_risk(tmp_path):
    bags, labels = make_cohort(tmp_path, n_patients=20, n_instances=(5, 15))
    cfg = TrainConfig(
        task="survival",
        time_col="os_months",
        event_col="os_event",
        folds=2,
        epochs=2,
        device="cpu",
    )
    train_cv(bags, labels, cfg, tmp_path / "run", evaluate=EvaluateConfig(n_bootstrap=10))
    preds, spec = read_predictions(predict(tmp_path / "run", bags, tmp_path / "p.csv", labels=labels))
    assert spec.kind == "survival" and preds["time"].notna().all() and preds["event"].isin([0, 1]).all()
    _, models, _ = load_run(tmp_path / "run")
    store = BagStore(bags)
    slides = [m.slide_id for m in store.metas() if m.patient_id == "P005"]
    outs = ensemble_outputs(models, read_patient_bag(store, "P005", slides).features)
    risk = preds.set_index("patient_id").loc["P005", "risk"]
    assert risk == pytest.approx(float(np.mean([o.logits[0, 0] for o in outs])), abs=1e-5)


def test_labels_whose_rows_disagree_or_list_a_slide_twice_are_refused(trained, tmp_path):
    """Two rows of one patient with different targets, or one slide under two patients, would silently pick
    one of them (truth) or merge two patients' bags: refused before any bag is read, as in training."""
    run, bags, labels = trained
    table = pd.read_csv(labels, dtype=str)
    rows = table.index[table["patient_id"] == "P003"]  # P003 has two slides: two rows
    other = next(c for c in ("AML", "APL", "healthy") if c != table.loc[rows[0], "apl_aml_healthy"])
    conflict = table.copy()
    conflict.loc[rows[1], "apl_aml_healthy"] = other
    conflict.to_csv(tmp_path / "conflict.csv", index=False)
    with pytest.raises(
        InputError, match=r"conflict.csv: patient 'P003' has rows with different apl_aml_healthy"
    ):
        predict(run, bags, tmp_path / "a.csv", labels=tmp_path / "conflict.csv", device="cpu")
    twice = pd.concat([table, table.iloc[[0]].assign(patient_id="P999")])
    twice.to_csv(tmp_path / "twice.csv", index=False)
    slide = table.loc[0, "slide_id"]
    with pytest.raises(InputError, match=rf"twice.csv: duplicate slide_id {slide}; keep one row per slide"):
        predict(run, bags, tmp_path / "b.csv", labels=tmp_path / "twice.csv", device="cpu")
    with pytest.raises(InputError, match="duplicate slide_id"):
        Explainer.open(run, bags, tmp_path / "twice.csv")
    assert not list(tmp_path.glob("[ab].csv"))


def test_a_run_missing_a_fold_or_a_member_is_refused(trained, tmp_path):
    """A run copied in part would predict with part of its ensemble; a stray file is not a member."""
    run, _, _ = trained
    lost_fold = shutil.copytree(run, tmp_path / "lost_fold")
    shutil.rmtree(lost_fold / "folds" / "2")
    with pytest.raises(InputError, match=r"splits.json has 3 folds, but folds/2 has no model.pt"):
        load_run(lost_fold)
    lost_member = shutil.copytree(run, tmp_path / "lost_member")
    (lost_member / "folds" / "1" / "model.3.pt").unlink()
    with pytest.raises(InputError, match=r"folds/1 holds 4 of the 5 member models"):
        load_run(lost_member)
    stray = shutil.copytree(run, tmp_path / "stray")
    shutil.copy(stray / "folds" / "0" / "model.pt", stray / "folds" / "0" / "model.bak.pt")
    assert len(load_run(stray).models) == 15


def test_a_run_config_emptied_or_foreign_is_refused(trained, tmp_path):
    """Defaults standing in for an emptied config.yaml would silently change how the run is read."""
    run, _, _ = trained
    for text in ("", "train: {head: abmil}\n", ":::: not yaml\n"):
        copy = tmp_path / f"run{len(text)}"
        shutil.copytree(run, copy)
        (copy / "config.yaml").write_text(text)
        with pytest.raises(InputError, match="not a run config|not a valid run config"):
            load_run(copy)


def test_predicting_the_training_store_warns_that_it_is_in_sample(trained, tmp_path):
    run, bags, labels = trained
    said: list[str] = []
    predict(run, bags, tmp_path / "own.csv", labels=labels, device="cpu", warn=said.append)
    assert len(said) == 1 and "in-sample" in said[0] and str(run / "predictions.csv") in said[0]
    assert "18 of the 30 patients here are the run's own" in said[0]  # 12 have no apl_aml_healthy label
    other = shutil.copytree(bags, tmp_path / "other.zarr")  # another store: not the run's own
    said.clear()
    predict(run, other, tmp_path / "other.csv", device="cpu", warn=said.append)
    assert said == []


def test_predict_reports_progress_per_model(trained, tmp_path):
    """A cohort is often one chunk: progress per fold model, so minutes of inference are never silent."""
    run, bags, _ = trained
    events: list[tuple[str, dict]] = []
    predict(run, bags, tmp_path / "p.csv", device="cpu", progress=lambda e, **i: events.append((e, i)),
            warn=lambda line: None)  # fmt: skip
    steps = [i for e, i in events if e == "predict"]
    assert [s["done"] for s in steps] == list(range(1, 16)) and {s["total"] for s in steps} == {15}
    assert any(e == "load" for e, _ in events)
