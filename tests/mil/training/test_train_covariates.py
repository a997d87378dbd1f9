"""`mil train --covariates`: three models on the same folds (covariates only, image only, fused), compared with
paired CIs; fold statistics from the fold's training patients only, saved and applied by `mil predict`; bad
covariates are one line before training; survival gets its c-index for the three."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.core.errors import InputError
from mil.cli import app, main
from mil.cohort.covariates import CovariateEncoder, read_covariates
from mil.cohort.labels import read_labels
from mil.cohort.splits import load_splits
from mil.config import EvaluateConfig, TrainConfig
from mil.evaluate.predictions import read_predictions
from mil.training.predict import predict
from mil.training.train import train_cv
from tests.train_helpers import SINGLE_MODEL, assert_predict_reproduces, make_cohort, single_thread  # noqa: F401

FAST = dict(folds=3, epochs=3, batch_size=8, device="cpu", head="abmil", baselines=[], **SINGLE_MODEL)
EVAL = EvaluateConfig(n_bootstrap=50, seed=2)
runner = CliRunner()


def add_covariates(labels, seed: int = 0) -> None:
    """Age tied to the diagnosis (AML older), sex at random, one patient without an age: per patient."""
    table = pd.read_csv(labels, dtype=str)
    rng = np.random.default_rng(seed)
    first = table.drop_duplicates("patient_id").set_index("patient_id")
    age = {p: round(55 + 15 * (d == "AML") + rng.normal(0, 8)) for p, d in first["diagnosis"].items()}
    sex = {p: rng.choice(["M", "F"]) for p in first.index}
    age[first.index[4]] = None
    table["age"] = table["patient_id"].map(age)
    table["sex"] = table["patient_id"].map(sex)
    table.to_csv(labels, index=False)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    bags, labels = make_cohort(tmp_path_factory.mktemp("cov"), n_patients=45, n_instances=(10, 20))
    add_covariates(labels)
    return bags, labels


@pytest.fixture(scope="module")
def run(cohort, tmp_path_factory):
    bags, labels = cohort
    out = tmp_path_factory.mktemp("runs") / "run"
    config = TrainConfig(target="apl_aml_healthy", covariates=["age,sex"], **FAST)
    return out, train_cv(bags, labels, config, out, evaluate=EVAL)


def test_three_models_on_the_same_patients_and_folds(run):
    out, summary = run
    fused, _ = read_predictions(out / "predictions.csv")
    image, _ = read_predictions(out / "image_only" / "predictions.csv")
    covariates, _ = read_predictions(out / "baselines" / "covariates" / "predictions.csv")
    for other in (image, covariates):
        pd.testing.assert_series_equal(fused["patient_id"], other["patient_id"])
        np.testing.assert_array_equal(fused["fold"], other["fold"])
    prob = [c for c in fused.columns if c.startswith("prob_")]
    assert not np.allclose(fused[prob], image[prob])  # the fused model is not the image one renamed
    block = json.loads((out / "metrics.json").read_text())["covariates"]
    assert block == summary.covariates
    assert list(block["models"]) == ["covariates_only", "image_only", "fused"]
    assert set(block["differences"]) == {
        "fused - covariates_only",
        "fused - image_only",
        "image_only - covariates_only",
    }
    metrics = json.loads((out / "metrics.json").read_text())
    # each model's estimate is its own table's pooled metric; the difference is the difference of estimates
    assert block["models"]["fused"]["estimate"] == pytest.approx(metrics["pooled"]["macro_auc"]["estimate"])
    d = block["differences"]["fused - image_only"]
    assert d["difference"]["estimate"] == pytest.approx(d["fused"]["estimate"] - d["image_only"]["estimate"])
    assert d["difference"]["low"] <= d["difference"]["estimate"] <= d["difference"]["high"]
    assert block["kinds"] == {"age": "numeric", "sex": "categorical"}


def test_fold_statistics_come_from_the_folds_training_patients_only(run, cohort):
    out, _ = run
    _, labels = cohort
    table = read_labels(labels)
    patients = read_predictions(out / "predictions.csv")[0]["patient_id"].tolist()
    split = load_splits(out / "splits.json", patients)
    covariates = read_covariates(["age", "sex"], table, str(labels), patients)
    ages = covariates.values["age"]
    for fold in split.folds:
        saved = json.loads((out / "folds" / str(fold.index) / "covariates.json").read_text())
        training = [*fold.train, *fold.val]
        assert saved == CovariateEncoder.fit(covariates, training).to_dict()
        age = saved["columns"][0]
        assert age["median"] == float(np.median(ages[training].dropna()))
        # poisoning the test patients' ages changes nothing in this fold's statistics
        poisoned = table.copy()
        poisoned.loc[poisoned["patient_id"].isin(fold.test), "age"] = "999"
        again = read_covariates(["age", "sex"], poisoned, str(labels), patients)
        assert CovariateEncoder.fit(again, training).to_dict() == saved


def test_predict_applies_the_saved_encoding_and_refuses_a_missing_column(run, cohort, tmp_path):
    out, _ = run
    bags, labels = cohort
    first = predict(out, bags, tmp_path / "p.csv", labels=labels)
    table = pd.read_csv(labels, dtype=str)
    patient = table["patient_id"].iloc[0]
    table.loc[table["patient_id"] == patient, "age"] = "95"
    table.to_csv(tmp_path / "older.csv", index=False)
    second = predict(out, bags, tmp_path / "p2.csv", labels=tmp_path / "older.csv")
    a, b = pd.read_csv(first), pd.read_csv(second)
    prob = [c for c in a.columns if c.startswith("prob_")]
    changed = ~np.isclose(a[prob], b[prob]).all(axis=1)
    assert changed.tolist() == (a["patient_id"] == patient).tolist()  # that patient only
    clinical = table[["patient_id", "sex"]].drop_duplicates("patient_id")
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    with pytest.raises(
        InputError, match=r"clinical.csv: covariate column 'age' not found.*trained with covariates"
    ):
        predict(out, bags, tmp_path / "p3.csv", clinical=tmp_path / "clinical.csv")
    with pytest.raises(InputError, match="pass --clinical"):
        predict(out, bags, tmp_path / "p4.csv")
    clinical = table[["patient_id", "age", "sex"]].drop_duplicates("patient_id").copy()
    clinical.loc[clinical.index[0], "sex"] = "unknown"
    clinical.to_csv(tmp_path / "clinical2.csv", index=False)
    said: list[str] = []
    predict(out, bags, tmp_path / "p5.csv", clinical=tmp_path / "clinical2.csv", warn=said.append)
    unseen = [line for line in said if "not seen in training" in line]  # beside the in-sample warning
    assert len(unseen) == 1 and "category 'unknown' not seen in training" in unseen[0]


def test_the_cli_prints_the_three_models_and_bad_covariates_are_one_line(cohort, tmp_path, capsys):
    bags, labels = cohort
    args = ["train", "--bags", str(bags), "--labels", str(labels), "--target", "apl_aml_healthy", "--folds", "3",
            "--epochs", "2", "--device", "cpu", "--baselines", "none", "--set", "evaluate.n_bootstrap=20"]  # fmt: skip
    result = runner.invoke(
        app, [*args, "--covariates", "age,sex", "-o", str(tmp_path / "r")], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "covariates (age, sex)" in result.output and "fused - covariates only" in result.output
    assert "what the smear adds beyond the covariates" in result.output
    table = pd.read_csv(labels, dtype=str)
    used = table["patient_id"][table["apl_aml_healthy"].notna()].iloc[3]
    table.loc[table["patient_id"] == used, "age"] = "old"
    table["hb"] = ""
    table.to_csv(tmp_path / "bad.csv", index=False)
    for extra, says in (
        (["--covariates", "agee"], "covariate column 'agee' not found"),
        (["--labels", str(tmp_path / "bad.csv"), "--covariates", "age"], "is numeric but 1 patient(s) hold"),
        (["--labels", str(tmp_path / "bad.csv"), "--covariates", "hb"], "'hb' is empty for all 27 patients"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([*args, *extra, "-o", str(tmp_path / "bad")])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1
        assert not (tmp_path / "bad").exists()


def test_survival_runs_compare_the_three_on_the_c_index(cohort, tmp_path):
    bags, labels = cohort
    config = TrainConfig(time_col="os_months", event_col="os_event", covariates=["age", "sex"], **FAST)
    train_cv(bags, labels, config, tmp_path / "s", evaluate=EVAL)
    block = json.loads((tmp_path / "s" / "metrics.json").read_text())["covariates"]
    assert block["metric"] == "c_index"
    assert set(block["models"]) == {"covariates_only", "image_only", "fused"}
    assert all(0 <= m["estimate"] <= 1 for m in block["models"].values())


def test_the_report_shows_the_three_models_and_nothing_without_covariates(run):
    from mil.report.sections import covariates_section

    out, _ = run
    metrics = json.loads((out / "metrics.json").read_text())
    html = covariates_section(metrics)
    for text in ("covariates only", "image only", "fused - covariates only", "what the smear adds beyond"):
        assert text in html
    fused = metrics["covariates"]["models"]["fused"]["estimate"]
    assert f"{fused:.3f}" in html
    assert covariates_section({k: v for k, v in metrics.items() if k != "covariates"}) == ""


def test_predict_cli_reads_clinical_and_refuses_a_missing_column_in_one_line(run, cohort, tmp_path, capsys):
    out, _ = run
    bags, labels = cohort
    table = pd.read_csv(labels, dtype=str).drop_duplicates("patient_id")
    table[["patient_id", "age", "sex"]].to_csv(tmp_path / "clinical.csv", index=False)
    ok = runner.invoke(app, ["predict", str(out), "--bags", str(bags), "-o", str(tmp_path / "p.csv"),
                             "--clinical", str(tmp_path / "clinical.csv")])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(table)
    table[["patient_id", "sex"]].to_csv(tmp_path / "no_age.csv", index=False)
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(out), "--bags", str(bags), "-o", str(tmp_path / "q.csv"),
              "--clinical", str(tmp_path / "no_age.csv")])  # fmt: skip
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "covariate column 'age' not found" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "q.csv").exists()


def test_evaluate_on_a_run_with_covariates_shows_the_three_models_as_training_did(run, tmp_path):
    """`mil evaluate RUN/predictions.csv` (the fused model's) puts the run's image-only and covariates-only
    tables beside it: same models, same paired differences as train's metrics.json with the same bootstrap."""
    out, _ = run
    trained = json.loads((out / "metrics.json").read_text())["covariates"]
    result = runner.invoke(app, ["evaluate", str(out / "predictions.csv"), "-o", str(tmp_path / "m.json"),
                                 "--bootstrap", str(EVAL.n_bootstrap), "--seed", str(EVAL.seed)],
                           env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "covariates (age, sex)" in result.output
        and "what the smear adds beyond the covariates" in result.output
    )
    block = json.loads((tmp_path / "m.json").read_text())["covariates"]
    assert list(block["models"]) == ["covariates_only", "image_only", "fused"]
    for name, model in trained["models"].items():
        assert block["models"][name]["estimate"] == pytest.approx(model["estimate"])
    for name, diff in trained["differences"].items():
        assert block["differences"][name]["difference"] == pytest.approx(diff["difference"])
    plain = runner.invoke(app, ["evaluate", str(out / "image_only" / "predictions.csv"), "-o",
                                str(tmp_path / "i.json")])  # fmt: skip
    assert plain.exit_code == 0, plain.output  # a table with no image_only/ beside it: no three-model block
    assert "covariates" not in json.loads((tmp_path / "i.json").read_text())


def test_covariates_with_the_crossfit_recipe_stack_one_linear_model_and_predict_repeats_it(cohort, tmp_path):
    """Cross-fitted members are not trained again: one linear model on [held-out logits, covariates] per fold,
    the same in every member (embedding block at zero), and `mil predict` gives the run's fused predictions."""
    import torch

    from mil.training.checkpoint import load_checkpoint

    bags, labels = cohort
    config = TrainConfig(target="apl_aml_healthy", covariates=["age", "sex"], inner_folds=3, seeds=2,
                         calibration="temperature", **{**FAST, "selection": "crossfit"})  # fmt: skip
    out = tmp_path / "cf"
    train_cv(bags, labels, config, out, evaluate=EVAL)
    block = json.loads((out / "metrics.json").read_text())["covariates"]
    assert set(block["models"]) == {"covariates_only", "image_only", "fused"}
    first_fold = sorted((out / "folds").iterdir())[0]
    members = [load_checkpoint(f).head for f in sorted(first_fold.glob("model*.pt"))]
    assert len(members) == 6  # inner parts x seeds
    first = members[0]
    assert not torch.equal(first.image_map, torch.eye(3))  # the stacked model weighs the image logits
    n = first.n_covariates
    assert first.fusion.weight[:, n:].abs().sum() == 0  # the covariate embedding keeps zero weight
    for m in members[1:]:
        assert torch.equal(m.image_map, first.image_map) and torch.equal(m.fusion.weight, first.fusion.weight)
    preds, _ = read_predictions(out / "predictions.csv")
    assert_predict_reproduces(out, preds, cohort, tmp_path)


def _stacked(z: np.ndarray, covariates: np.ndarray, y: np.ndarray, held: np.ndarray):
    import torch

    from mil.heads import create_head
    from mil.tasks import TaskSpec, create_task
    from mil.training.data import BagSet
    from mil.training.fusion import stack

    task = create_task(TaskSpec("classification", "y", ["a", "b"]))
    n = len(y)
    data = BagSet(patients=[str(i) for i in range(n)], features=torch.zeros(n, 4), offsets=torch.arange(n + 1),
                  slides=[[(str(i), 1)] for i in range(n)],
                  y=torch.as_tensor(y, dtype=torch.float32), covariates=torch.as_tensor(covariates))  # fmt: skip
    logits = torch.as_tensor(np.stack([-z, z], axis=1) / 2, dtype=torch.float32)
    (member,) = stack([create_head("mean_pool", 4, 2)], task, data, held, logits[held], seed=0)
    weight = member.fusion.weight[1, : covariates.shape[1]] - member.fusion.weight[0, : covariates.shape[1]]
    image = member.image_map[:, 1] - member.image_map[:, 0]
    return float(image[1] - image[0]) / 2, weight.detach().numpy()


def test_stack_weighs_what_carries_signal_and_reads_only_the_held_out_patients():
    """On 80 held-out patients: an informative image logit gets a clear positive weight; a pure-noise covariate
    gets a small one next to it, an informative one a clear one; the covariates of patients outside
    `held_index` (the fold's test patients) change nothing."""
    rng = np.random.default_rng(0)
    n, held = 100, np.arange(80)
    y = (np.arange(n) % 2).astype(np.float64)
    z = 2.0 * (y - 0.5) + rng.normal(0, 1, n)
    noise = rng.normal(0, 1, (n, 1))
    a, w_noise = _stacked(z, noise, y, held)
    assert a > 0.3 and abs(w_noise[0]) < 0.3 * a
    count = (1.5 * (y - 0.5) + rng.normal(0, 1, n))[:, None]
    _, w_count = _stacked(z, count, y, held)
    assert w_count[0] > 0.3
    poisoned = noise.copy()
    poisoned[80:] = 999.0
    a_again, w_again = _stacked(z, poisoned, y, held)
    assert a_again == pytest.approx(a) and w_again == pytest.approx(w_noise)


def test_a_stacked_image_weight_is_never_negative():
    """Held-out image logits ranking the patients the wrong way round (a weak image signal seen by one member)
    would get a negative stacked weight, flipping the ensemble's ranking of the test patients: the image gets
    weight 0 and the covariates-only model is the fused model."""
    rng = np.random.default_rng(1)
    n, held = 100, np.arange(80)
    y = (np.arange(n) % 2).astype(np.float64)
    z = -1.0 * (y - 0.5) + rng.normal(0, 1, n)
    count = (1.5 * (y - 0.5) + rng.normal(0, 1, n))[:, None]
    a, w_count = _stacked(z, count, y, held)
    assert a == 0.0 and w_count[0] > 0.3
    a_right_way, _ = _stacked(-z, count, y, held)
    assert a_right_way > 0.1


def test_stacked_cox_members_share_one_origin():
    """Cox risks mean the same up to a constant per model: each stacked member's image part is taken from its
    own origin (mean risk on the fold's training patients), so all members, and every fold, share one origin."""
    import torch

    from mil.heads import create_head
    from mil.tasks import TaskSpec, create_task
    from mil.training.data import BagSet
    from mil.training.fit import infer
    from mil.training.fusion import stack

    rng = np.random.default_rng(1)
    n, sizes = 60, rng.integers(3, 8, 60)
    offsets = torch.as_tensor(np.r_[0, np.cumsum(sizes)])
    y = np.c_[rng.exponential(10, n), rng.random(n) < 0.8].astype(np.float32)
    task = create_task(TaskSpec("survival", ["time", "event"], []))
    data = BagSet([str(i) for i in range(n)], torch.as_tensor(rng.normal(size=(int(sizes.sum()), 4)),
                  dtype=torch.float32), offsets, torch.as_tensor(y), [[(str(i), int(k))] for i, k in enumerate(sizes)],
                  torch.as_tensor(rng.normal(size=(n, 2)), dtype=torch.float32))  # fmt: skip
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(create_head("mean_pool", 4, 1).eval())
    held = np.arange(50)
    logits = [infer(m, data, held, torch.device("cpu"), 10_000) for m in members]
    assert abs(float(logits[0].mean() - logits[1].mean())) > 1e-3  # two different origins
    risk = sum(infer(m, data, np.arange(n), torch.device("cpu"), 10_000)[:, 0] for m in members).numpy()
    # the image carries risk
    data.y[:, 0] = torch.as_tensor(rng.exponential(np.exp(-20 * (risk - risk.mean()))))
    centred = torch.cat([x - x.mean(0) for x in logits]).reshape(2, 50, 1).mean(0)
    fused = stack(members, task, data, held, centred, seed=0,
                  infer_logits=lambda m, index: infer(m, data, index, torch.device("cpu"), 10_000))  # fmt: skip
    means = [float(infer(f, data, held, torch.device("cpu"), 10_000).mean()) for f in fused]
    assert float(fused[0].image_map.abs().sum()) > 1e-3  # the image part is in the stacked model
    assert means[0] == pytest.approx(means[1], abs=1e-4)


def test_a_fused_checkpoint_written_before_image_map_loads_as_the_identity():
    """Fused checkpoints from before the stacked fusion have no `image_map`: they load as they were trained."""
    import torch

    from mil.heads import create_head
    from mil.heads.fused import FusedHead

    fused = FusedHead(create_head("mean_pool", 4, 3), 2)
    state = {k: v for k, v in fused.state_dict().items() if k != "image_map"}
    again = FusedHead(create_head("mean_pool", 4, 3), 2)
    again.image_map.mul_(0)
    again.load_state_dict(state, strict=True)
    assert torch.equal(again.image_map, torch.eye(3))
