"""`mil heatmap` through the CLI: exit codes 0 / 3 / 2 and the summary table."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mil.cli import app, main
from tests.mil.explain.cohort import copy_store, get_tiny, point_source


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return get_tiny(tmp_path_factory)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_heatmap_cli_writes_and_summarises(tiny, tmp_path):
    out = tmp_path / "hm"
    result = run("heatmap", tiny.abmil, "--bags", tiny.cells, "-o", out, "--slide", "P004", "--top-k", "3")
    assert result.exit_code == 0, result.output
    assert "1 written, 0 failed" in result.output and "attention (head weights)" in result.output
    assert (out / "P004" / "attention.csv").exists() and (out / "heatmap.json").exists()
    again = run("heatmap", tiny.abmil, "--bags", tiny.cells, "-o", out, "--slide", "P004")
    assert again.exit_code != 0 and "--overwrite" in str(again.exception)


def test_partial_failure_exits_3(tiny, tmp_path):
    store = copy_store(tiny.slides, tmp_path / "slides.bags")
    point_source(store, "P002_s1", tmp_path / "gone.tiff")
    result = run("heatmap", tiny.clam_mb, "--bags", store, "-o", tmp_path / "hm", "--slide", "P001_s1",
                 "--slide", "P002_s1", "--top-k", "2")  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "failed" in result.output and "P002_s1" in result.output and "1 written, 1 failed" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--slide", "nope"], "no slide 'nope'"),
        (["--top-k", "0"], "top-k"),
    ],
)
def test_bad_arguments_are_one_red_line_exit_2(tiny, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["heatmap", str(tiny.abmil), "--bags", str(tiny.cells), "-o", str(tmp_path / "hm"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_not_a_run_is_exit_2(tiny, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["heatmap", str(tiny.cells), "--bags", str(tiny.cells), "-o", str(tmp_path / "hm")])
    assert exit_info.value.code == 2 and "no config.yaml" in capsys.readouterr().err
