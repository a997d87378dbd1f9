"""`mil report` and `mil heatmap` on inputs that are in the way or damaged: an output that is, holds or lies
inside an input (but for new files in the run) is refused even with `--overwrite`; a run whose recorded labels file is gone, whose config.yaml,
checkpoint or metrics.json is damaged, is one line and exit 2 (never a silent fallback, never "a bug in mil");
a heatmap that wrote nothing points at no details file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.faults.cli_cases import build, mil, snapshot
from tests.train_helpers import single_thread  # noqa: F401


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return build(tmp_path_factory.mktemp("explain_inputs"))


def _copy_run(cohort, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(cohort.run, run)
    return run


# 1. an output that is, or lies inside, an input -------------------------------------------------------------


def test_report_never_writes_into_the_store_it_reads(cohort, tmp_path, capsys):
    store = tmp_path / "copy.zarr"
    shutil.copytree(cohort.bags, store)
    before = snapshot(store)
    for target in (store / "zarr.json", store / "P000-S0" / "zarr.json", store / "new.html", store):
        done = mil(capsys, "report", cohort.run, "--bags", store, "-o", target, "--overwrite")
        line = done.one_line_error()
        assert done.code == 2 and "bag store" in line, line
    assert snapshot(store) == before


def test_report_never_replaces_its_labels_or_cell_model(cohort, tmp_path, capsys):
    labels = tmp_path / "lab.csv"
    shutil.copy(cohort.labels, labels)
    done = mil(
        capsys, "report", cohort.run, "--bags", cohort.bags, "--labels", labels, "-o", labels, "--overwrite"
    )
    line = done.one_line_error()
    assert done.code == 2 and f"{labels} is the labels file" in line, line
    assert labels.read_bytes() == cohort.labels.read_bytes()
    cells = tmp_path / "cm"  # only its path matters: the refusal comes before the model is read
    cells.mkdir()
    (cells / "cellmodel.json").write_text('{"schema": "mine"}\n')
    done = mil(capsys, "report", cohort.run, "--bags", cohort.bags, "--cells", cells, "-o", cells / "cellmodel.json",
               "--overwrite")  # fmt: skip
    line = done.one_line_error()
    assert done.code == 2 and "lies inside the cell model" in line, line
    assert (cells / "cellmodel.json").read_text() == '{"schema": "mine"}\n'


def test_report_never_replaces_the_runs_recorded_labels(cohort, tmp_path, capsys):
    """Without --labels the run's own labels file is read, so it is an input too."""
    run = _copy_run(cohort, tmp_path)
    labels = tmp_path / "recorded.csv"
    shutil.copy(cohort.labels, labels)
    _set_recorded_labels(run, labels)
    done = mil(capsys, "report", run, "--bags", cohort.bags, "-o", labels, "--overwrite")
    assert done.code == 2 and "is the labels file" in done.one_line_error()
    assert labels.read_bytes() == cohort.labels.read_bytes()


def test_heatmap_never_writes_into_or_over_its_inputs(cohort, tmp_path, capsys):
    store = tmp_path / "copy.zarr"
    shutil.copytree(cohort.bags, store)
    before = snapshot(store)
    done = mil(capsys, "heatmap", cohort.run, "--bags", store, "-o", store / "hm", "--slide", "P000-S0")
    line = done.one_line_error()
    assert done.code == 2 and "lies inside the bag store" in line, line
    assert snapshot(store) == before
    # an earlier heatmap folder that holds the store: replacing it would delete the store
    hm = tmp_path / "hm"
    hm.mkdir()
    (hm / "heatmap.json").write_text("{}\n")
    inner = hm / "bags.zarr"
    shutil.copytree(cohort.bags, inner)
    done = mil(capsys, "heatmap", cohort.run, "--bags", inner, "-o", hm, "--slide", "P000-S0", "--overwrite")
    line = done.one_line_error()
    assert done.code == 2 and "holds the bag store" in line, line
    assert snapshot(inner) == before


def test_new_outputs_may_go_inside_the_run_but_never_onto_its_files(cohort, tmp_path, capsys):
    """A run is a folder a user keeps results in (as `mil predict -o RUN/external.csv` may): a new report or
    heatmap folder inside it is fine; the run's own files, or the run itself, never."""
    run = _copy_run(cohort, tmp_path)
    before = snapshot(run)
    done = mil(capsys, "report", run, "--bags", cohort.bags, "-o", run / "report.html")
    assert done.code == 0 and (run / "report.html").is_file(), done
    done = mil(capsys, "heatmap", run, "--bags", cohort.bags, "-o", run / "heatmaps", "--slide", "P000-S0")
    # this cohort's slides are not on disk: the heatmap fails on them (exit 1), past the output checks
    assert done.code == 1 and "source slide" in done.out and "lies inside" not in done.out + done.err, done
    for command, target in (("report", run / "metrics.json"), ("heatmap", run), ("heatmap", run / "folds")):
        extra = ["--slide", "P000-S0"] if command == "heatmap" else []
        done = mil(capsys, command, run, "--bags", cohort.bags, "-o", target, "--overwrite", *extra)
        assert done.code == 2 and len(done.one_line_error()) > 0, (command, target)
    kept = snapshot(run)
    assert {k: v for k, v in kept.items() if k in before} == before


def test_predict_never_writes_into_the_store_it_reads(cohort, tmp_path, capsys):
    store = tmp_path / "copy.zarr"
    shutil.copytree(cohort.bags, store)
    before = snapshot(store)
    done = mil(capsys, "predict", cohort.run, "--bags", store, "-o", store / "zarr.json", "--overwrite",
               "--device", "cpu")  # fmt: skip
    assert done.code == 2 and "lies inside the bag store" in done.one_line_error()
    assert snapshot(store) == before


# 2. the run's recorded labels file is gone ---------------------------------------------------------------


def _set_recorded_labels(run: Path, labels: Path) -> None:
    record = yaml.safe_load((run / "config.yaml").read_text())
    record["provenance"]["labels"] = str(labels)
    (run / "config.yaml").write_text(yaml.safe_dump(record, sort_keys=False))


@pytest.mark.parametrize("command", ["report", "heatmap"])
def test_missing_recorded_labels_is_one_line_not_a_fallback(cohort, tmp_path, capsys, command):
    run = _copy_run(cohort, tmp_path)
    gone = tmp_path / "moved-away" / "labels.csv"
    _set_recorded_labels(run, gone)
    out = tmp_path / ("r.html" if command == "report" else "hm")
    done = mil(capsys, command, run, "--bags", cohort.bags, "-o", out)
    line = done.one_line_error()
    assert done.code == 2 and str(gone) in line and "--labels PATH" in line, line
    assert not out.exists()
    # the way out the line names works
    done = mil(capsys, "report", run, "--bags", cohort.bags, "-o", tmp_path / "ok.html", "--labels", cohort.labels,
               "--clusters", "2")  # fmt: skip
    assert done.code == 0, done.err


# 3. and 4. a damaged run ---------------------------------------------------------------------------------------


def _damage(run: Path, how: str) -> str:
    """Damage `run` one way; returns the file the error line must name."""
    model = run / "folds" / "0" / "model.pt"
    if how == "pickled object":
        import fractions

        torch.save({"format": 1, "x": fractions.Fraction(1, 3)}, model)
        return str(model)
    if how == "checkpoint without task":
        payload = torch.load(model, weights_only=True)
        del payload["task"]
        torch.save(payload, model)
        return str(model)
    if how == "checkpoint encoder record":
        payload = torch.load(model, weights_only=True)
        payload["encoder"] = {"name": "x"}
        torch.save(payload, model)
        return str(model)
    if how == "empty checkpoint":
        model.write_bytes(b"")
        return str(model)
    if how == "config is a list":
        (run / "config.yaml").write_text("- a\n")
        return str(run / "config.yaml")
    if how == "provenance is a list":
        record = yaml.safe_load((run / "config.yaml").read_text())
        record["provenance"] = ["a"]
        (run / "config.yaml").write_text(yaml.safe_dump(record))
        return str(run / "config.yaml")
    if how == "truncated metrics":
        (run / "metrics.json").write_text('{"trunc')
        return str(run / "metrics.json")
    assert how == "metrics is a list"
    (run / "metrics.json").write_text(json.dumps([1, 2]))
    return str(run / "metrics.json")


DAMAGE = ["pickled object", "checkpoint without task", "checkpoint encoder record", "empty checkpoint",
          "config is a list", "provenance is a list", "truncated metrics", "metrics is a list"]  # fmt: skip


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_run_is_one_line_exit_2(cohort, tmp_path, capsys, how):
    run = _copy_run(cohort, tmp_path)
    named = _damage(run, how)
    done = mil(capsys, "report", run, "--bags", cohort.bags, "-o", tmp_path / "r.html")
    line = done.one_line_error()
    assert done.code == 2 and named in line and "bug" not in line, line
    assert "weights_only" not in done.err and "\x1b" not in done.err, line
    assert "retrain" in line or "restore" in line, line
    if "metrics" not in how:
        done = mil(capsys, "heatmap", run, "--bags", cohort.bags, "-o", tmp_path / "hm")
        assert done.code == 2 and named in done.one_line_error()


def test_not_a_mil_checkpoint_says_so_in_plain_words(cohort, tmp_path, capsys):
    run = _copy_run(cohort, tmp_path)
    _damage(run, "pickled object")
    done = mil(capsys, "heatmap", run, "--bags", cohort.bags, "-o", tmp_path / "hm")
    line = done.one_line_error()
    assert "not a mil checkpoint (it holds objects other than tensors and plain values)" in line, line


# 5. a heatmap that wrote nothing ---------------------------------------------------------------------------


def test_heatmap_that_wrote_nothing_points_at_no_details_file(cohort, tmp_path, capsys):
    """The fixture store's sources (/slides/*.svs) do not exist, so every slide fails."""
    out = tmp_path / "hm"
    done = mil(capsys, "heatmap", cohort.run, "--bags", cohort.bags, "-o", out, "--slide", "P000-S0")
    assert done.code == 1 and "nothing written" in done.out, done.out + done.err
    assert not out.exists() and "heatmap.json" not in done.out, done.out
