"""Progress off a terminal: one plain line per step (no bars squeezed into "━━ 9… 0…"), failures in full."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from rich.console import Console

from mil.cli.progress import MIN_WIDTH, Steps, is_live
from tests.extract_fixtures import synth_cohort
from tests.paths import REPO


def _console(terminal: bool, width: int = 120) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=width, color_system=None), buf


def test_bars_only_on_a_terminal_wide_enough():
    assert is_live(_console(True)[0])
    assert not is_live(_console(False)[0])  # a file, a pipe, CI
    assert not is_live(_console(True, width=MIN_WIDTH - 1)[0])  # a narrow terminal


def test_plain_steps_are_one_line_each_and_counts_are_throttled():
    console, buf = _console(False)
    with Steps(console, interval_s=3600) as steps:
        fold = steps.add("fold 0", total=3, info="")
        steps.update(fold, completed=1, info="val loss 0.5")  # a count alone: throttled
        steps.update(fold, completed=3, info="done; best epoch 2")  # reaching the total: a line
        slide = steps.add("  P001_s1: open")
        steps.update(slide, description="  P001_s1: qc")  # a new stage: a line
        steps.update(slide, description="  P001_s1: qc")  # the same stage again: none
        steps.print("failed P002_s1: unreadable")
        overall = steps.add("slides", total=2)
        steps.update(overall, advance=1)
    assert buf.getvalue().splitlines() == [
        "fold 0 0/3",
        "fold 0 3/3  done; best epoch 2",
        "  P001_s1: open",
        "  P001_s1: qc",
        "failed P002_s1: unreadable",
        "slides 0/2",
        "slides 1/2",
    ]


def test_plain_counts_still_show_a_long_step_is_alive():
    console, buf = _console(False)
    with Steps(console, interval_s=0) as steps:
        task = steps.add("loading bags", total=10)
        steps.update(task, completed=4)
    assert buf.getvalue().splitlines() == ["loading bags 0/10", "loading bags 4/10"]


def test_a_terminal_gets_the_rich_bar():
    console, buf = _console(True)
    with Steps(console, transient=False) as steps:
        steps.update(steps.add("slides", total=2), advance=2)
    assert "━" in buf.getvalue() and "slides" in buf.getvalue()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return synth_cohort(tmp_path_factory.mktemp("cohort"), patients=2, layout="slides")


def test_extract_to_a_file_prints_steps_and_long_failures_whole(cohort, tmp_path):
    # A slide that cannot be opened, named so that its path passes 200 characters.
    folder = tmp_path / "d" / ("long_folder_" * 4)
    folder.mkdir(parents=True)
    for slide in (cohort / "slides").iterdir():
        (folder / slide.name).symlink_to(slide)
    bad = folder / ("corrupt_scan_" * 11 + "end.tiff")
    bad.write_bytes(b"not a slide")
    assert len(str(bad)) > 200
    log = tmp_path / "extract.log"
    argv = ["extract", str(folder), "-o", str(tmp_path / "bags.zarr"), "--workers", "0"]
    code = "import sys; from mil.cli import main; main(sys.argv[1:])"
    env = {**os.environ, "COLUMNS": "80", "TERM": "xterm"}
    env.pop("FORCE_COLOR", None)
    with log.open("w") as out:  # stdout is a file, as with `mil extract ... > log`
        done = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, stdout=out, env=env, timeout=600)
    text = log.read_text()
    assert done.returncode == 3, text  # partial: two written, one failed
    lines = text.splitlines()
    table = [line for line in lines if line[:1] in ("┏", "┃", "┡", "│", "└")]
    steps = [line for line in lines if line not in table]
    assert not any("━" in line or "…" in line for line in steps)  # no bar rendered into the file
    assert "slides 2/3" in steps and "slides 3/3" in steps  # one line per finished slide
    assert any(line.startswith("  P001_s1: encode") for line in steps)  # a slide's stages, one line each
    # the table stays within the width and holds no message; the failure is printed whole, on one line
    assert len(table) == 7 and all(len(line) <= 80 for line in table)
    assert not any("cannot open" in line for line in table)
    below = lines[lines.index("failures (1):") + 1 :]
    assert below[0].startswith(f"  {bad.name}: cannot open with OpenSlide")
