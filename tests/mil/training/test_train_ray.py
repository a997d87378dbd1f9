"""`train_cv(..., engine=RayFoldEngine())` on a local 2-CPU Ray: folds as Ray tasks, results written by the
driver exactly as the local engine writes them, the same seed giving the same metrics; a fold's one-line error
comes back as that line; `mil train --engine ray` through the CLI."""

from __future__ import annotations

import filecmp
import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from features.core.errors import InputError
from mil.cli import app
from mil.config import EvaluateConfig, TrainConfig
from mil.training.engines.ray_folds import RayFoldEngine
from mil.training.train import train_cv
from tests.ray_helpers import local_ray  # noqa: F401 - skips the module without Ray
from tests.train_helpers import SINGLE_MODEL, make_cohort, single_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("local_ray")

FAST = dict(folds=5, epochs=6, patience=4, batch_size=8, lr=2e-3, device="cpu", **SINGLE_MODEL)
EVAL = EvaluateConfig(n_bootstrap=50)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("train"), n_patients=50)


def files(run):
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def test_same_runs_as_the_local_engine(cohort, tmp_path):
    cfg = TrainConfig(target="apl_aml_healthy", **FAST)
    local = train_cv(*cohort, cfg, tmp_path / "local", evaluate=EVAL)  # one torch thread, as the Ray tasks
    events = []
    remote = train_cv(
        *cohort, cfg, tmp_path / "ray", evaluate=EVAL, engine=RayFoldEngine(),
        progress=lambda event, **info: events.append((event, info)),
    )  # fmt: skip
    a, b = tmp_path / "local", tmp_path / "ray"
    assert files(a) == files(b)
    for name in ("predictions.csv", "splits.json", "left_out.csv"):
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    assert json.loads((a / "metrics.json").read_text()) == json.loads((b / "metrics.json").read_text())
    assert remote.pooled == local.pooled and [f.best_epoch for f in remote.folds] == [
        f.best_epoch for f in local.folds
    ]
    for fold in range(5):
        sa = torch.load(a / "folds" / str(fold) / "model.pt", weights_only=True)["state_dict"]
        sb = torch.load(b / "folds" / str(fold) / "model.pt", weights_only=True)["state_dict"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert filecmp.cmp(
            a / "folds" / str(fold) / "history.csv", b / "folds" / str(fold) / "history.csv", shallow=False
        )
    record = yaml.safe_load((b / "config.yaml").read_text())["provenance"]
    assert record["engine"]["name"] == "ray" and record["device"] == "cpu (ray)"
    kinds = [event for event, _ in events]
    assert kinds.count("fold_start") == 5 and kinds.count("fold_end") == 5 and "epoch" in kinds  # relayed


def test_a_fold_error_is_its_one_line(cohort, tmp_path):
    cfg = TrainConfig(target="apl_aml_healthy", **{**FAST, "lr": 1e30, "folds": 3})
    with pytest.raises(InputError, match="loss is not finite"):
        train_cv(*cohort, cfg, tmp_path / "run", evaluate=EVAL, engine=RayFoldEngine())
    assert not (tmp_path / "run").exists()


def test_cli_engine_ray(cohort, tmp_path):
    bags, labels = cohort
    args = ["train", "--bags", bags, "--labels", labels, "-o", tmp_path / "run", "--target", "apl_aml_healthy",
            "--folds", "3", "--epochs", "3", "--device", "cpu", "--set", "evaluate.n_bootstrap=20",
            "--engine", "ray"]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "(ray)" in result.output and (tmp_path / "run" / "metrics.json").is_file()
