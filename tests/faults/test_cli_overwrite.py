"""#13 item 5: no command replaces an existing output without `--overwrite`; none replaces a file of the run it
reads, or a folder that is not its own earlier result, even with it. Each refusal is one line, exit 2, and
leaves every file as it was."""

from __future__ import annotations

import pytest

from tests.faults.cli_cases import FAST, build, mil, snapshot
from tests.mil.explain.cohort import get_tiny
from tests.train_helpers import single_thread  # noqa: F401


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return build(tmp_path_factory.mktemp("overwrite"))


def test_predict_never_replaces_the_runs_own_predictions(cohort, capsys):
    before = snapshot(cohort.run)
    for target in ("predictions.csv", "predictions.csv.spec.json", "metrics.json", "folds/0/model.pt"):
        done = mil(capsys, "predict", cohort.run, "--bags", cohort.bags, "-o", cohort.run / target,
                   "--overwrite", "--device", "cpu")  # fmt: skip
        assert done.code == 2 and "is a file of run" in done.one_line_error()
    assert snapshot(cohort.run) == before
    assert mil(capsys, "report", cohort.run, "--bags", cohort.bags, "-o", cohort.run / "predictions.csv",
               "--overwrite").code == 2  # fmt: skip
    assert snapshot(cohort.run) == before
    labels = cohort.labels.read_bytes()
    done = mil(capsys, "predict", cohort.run, "--bags", cohort.bags, "-o", cohort.labels, "--labels", cohort.labels,
               "--overwrite", "--device", "cpu")  # fmt: skip
    assert done.code == 2 and "labels file" in done.one_line_error() and cohort.labels.read_bytes() == labels


def test_predict_replaces_a_file_only_with_overwrite(cohort, tmp_path, capsys):
    out = tmp_path / "external.csv"
    out.write_text("my notes\n")
    done = mil(capsys, "predict", cohort.run, "--bags", cohort.bags, "-o", out, "--device", "cpu")
    assert done.code == 2 and "--overwrite" in done.one_line_error() and out.read_text() == "my notes\n"
    done = mil(
        capsys, "predict", cohort.run, "--bags", cohort.bags, "-o", out, "--device", "cpu", "--overwrite"
    )
    assert done.code == 0, done.err
    assert out.read_text().startswith("patient_id")


def test_evaluate_never_writes_onto_its_input(cohort, tmp_path, capsys):
    preds = tmp_path / "preds.csv"
    assert mil(capsys, "predict", cohort.run, "--bags", cohort.bags, "-o", preds, "--labels", cohort.labels,
               "--device", "cpu").code == 0  # fmt: skip
    before = snapshot(tmp_path)
    for out in (preds, f"{preds}.spec.json", cohort.labels):
        done = mil(capsys, "evaluate", preds, "--labels", cohort.labels, "-o", out, "--overwrite")
        assert done.code == 2 and "is an input" in done.one_line_error()
    done = mil(capsys, "evaluate", preds, "--plots", preds, "--overwrite")
    assert done.code == 2
    assert snapshot(tmp_path) == before
    scored = ["evaluate", preds, "--labels", cohort.labels, "--set", "evaluate.n_bootstrap=10"]
    first = mil(capsys, *scored)
    assert first.code == 0, first.err
    metrics = snapshot(tmp_path)
    again = mil(capsys, *scored)
    assert again.code == 2 and "--overwrite" in again.one_line_error() and snapshot(tmp_path) == metrics


@pytest.mark.parametrize("command", ["train", "heatmap", "synth"])
def test_overwrite_replaces_only_the_commands_own_folder(cohort, tmp_path, capsys, command):
    """`-o .`-style typos: a folder of other files survives even `--overwrite`."""
    folder = tmp_path / "my-data"
    folder.mkdir()
    (folder / "precious.txt").write_text("years of work\n")
    argv = {
        "train": ["train", "--bags", cohort.bags, "--labels", cohort.labels, "--target", "apl_aml_healthy",
                  "-o", folder, *FAST],
        "heatmap": ["heatmap", cohort.run, "--bags", cohort.bags, "-o", folder, "--slide", "P000-S0"],
        "synth": ["synth", folder, "--patients", "2", "--layout", "cells", "--cells-per-patient", "2"],
    }[command]  # fmt: skip
    without = mil(capsys, *argv)
    assert without.code == 2 and "--overwrite" in without.one_line_error()
    done = mil(capsys, *argv, "--overwrite")
    assert done.code == 2 and "not a" in done.one_line_error()
    assert snapshot(folder) == {"precious.txt": snapshot(folder)["precious.txt"]}
    assert (folder / "precious.txt").read_text() == "years of work\n"


def test_train_replaces_its_own_run_with_overwrite(cohort, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--bags", cohort.bags, "--labels", cohort.labels, "--target", "apl_aml_healthy", "-o", run,
            *FAST]  # fmt: skip
    assert mil(capsys, *argv).code == 0
    first = snapshot(run)
    assert mil(capsys, *argv).code == 2 and snapshot(run) == first
    assert mil(capsys, *argv, "--overwrite", "--seed", "7").code == 0 and snapshot(run) != first


def test_heatmap_replaces_its_own_folder_with_overwrite(tmp_path_factory, tmp_path, capsys):
    tiny = get_tiny(tmp_path_factory)  # real sources: galleries re-read the cells
    hm = tmp_path / "hm"
    hm_argv = ["heatmap", tiny.mean_pool, "--bags", tiny.cells, "-o", hm, "--slide", "P004", "--top-k", "2"]
    assert mil(capsys, *hm_argv).code == 0
    assert mil(capsys, *hm_argv).code == 2
    assert mil(capsys, *hm_argv, "--overwrite").code == 0


def test_bags_qc_and_report_refuse_existing_files(cohort, tmp_path, capsys):
    qc = tmp_path / "qc"
    assert mil(capsys, "bags", "qc", cohort.bags, "-o", qc).code == 0
    first = snapshot(qc)
    assert set(first) == {"P000-S0.json", "P000-S0.png", "P001-S0.json", "P001-S0.png"}
    done = mil(capsys, "bags", "qc", cohort.bags, "-o", qc)
    assert done.code == 2 and "--overwrite" in done.one_line_error() and snapshot(qc) == first
    html = tmp_path / "report.html"
    html.write_text("<p>an older report</p>")
    done = mil(capsys, "report", cohort.run, "--bags", cohort.bags, "-o", html)
    assert done.code == 2 and "--overwrite" in done.one_line_error()
    assert html.read_text() == "<p>an older report</p>"


def test_config_template_refuses_an_existing_file(tmp_path, capsys):
    out = tmp_path / "mine.yaml"
    out.write_text("train:\n  head: abmil  # tuned by hand\n")
    done = mil(capsys, "config", "template", "-o", out)
    assert done.code == 2 and "--overwrite" in done.one_line_error()
    assert out.read_text() == "train:\n  head: abmil  # tuned by hand\n"
    assert mil(capsys, "config", "template", "-o", out, "--overwrite").code == 0
    assert out.read_text().startswith("# mil configuration template")
    folder = mil(capsys, "config", "template", "-o", tmp_path)
    assert folder.code == 2 and "is a folder" in folder.one_line_error()


def test_demo_refuses_a_folder_in_use(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine\n")
    done = mil(capsys, "demo", "-o", tmp_path)
    assert done.code == 2 and "--overwrite" in done.one_line_error()
    assert snapshot(tmp_path) == {"notes.txt": snapshot(tmp_path)["notes.txt"]}


def test_evaluate_never_replaces_a_file_of_the_run_it_reads(cohort, tmp_path, capsys):
    """#QA 1: `mil evaluate RUN/predictions.csv --overwrite` wrote its default RUN/metrics.json over the run's
    own (cohort, selection, baselines blocks). Inside a run there is no default output: -o is asked for, with a
    suggestion outside the run; a run's files (metrics, plots) are refused even with --overwrite."""
    before = snapshot(cohort.run)
    preds = cohort.run / "predictions.csv"
    for extra in ([], ["--overwrite"]):
        done = mil(capsys, "evaluate", preds, *extra)
        line = done.one_line_error()
        assert (
            done.code == 2 and "lies inside run" in line and "pass -o" in line and "run.evaluate.json" in line
        )
    done = mil(capsys, "evaluate", preds, "-o", cohort.run / "metrics.json", "--overwrite")
    assert done.code == 2 and "is a file of run" in done.one_line_error()
    plotted = sorted(p.name for p in (cohort.run / "plots").iterdir())
    assert plotted, "the fixture run has plots"
    done = mil(
        capsys, "evaluate", preds, "-o", tmp_path / "m.json", "--plots", cohort.run / "plots", "--overwrite"
    )
    assert done.code == 2 and "is a file of run" in done.one_line_error()
    assert snapshot(cohort.run) == before and not (tmp_path / "m.json").exists()
    fine = mil(capsys, "evaluate", preds, "-o", tmp_path / "m.json", "--set", "evaluate.n_bootstrap=10")
    assert fine.code == 0, fine.err
    assert snapshot(cohort.run) == before
