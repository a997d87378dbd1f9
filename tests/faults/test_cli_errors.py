"""#13 item 9: what a user's path or number does is one red line and exit 2, never a traceback: read-only
output folders, `-o` that is a folder (or lies under a file), names too long for the file system, negative
or huge seeds. A genuine bug is one line and exit 1 with a hint to rerun with --debug (which shows it)."""

from __future__ import annotations

import errno

import pytest

from tests.faults.cli_cases import FAST, build, mil, snapshot, staging_left, unwritable_folder
from tests.train_helpers import single_thread  # noqa: F401

SEED_TOO_BIG = 2**32


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return build(tmp_path_factory.mktemp("errors"))


def _commands(cohort, folder):
    """Every command that writes, aimed at `folder`."""
    c = cohort
    return {
        "train": ["train", "--bags", c.bags, "--labels", c.labels, "--target", "apl_aml_healthy",
                  "-o", folder / "run", *FAST],
        "heatmap": ["heatmap", c.run, "--bags", c.bags, "-o", folder / "hm"],
        "predict": ["predict", c.run, "--bags", c.bags, "-o", folder / "p.csv", "--device", "cpu"],
        "report": ["report", c.run, "--bags", c.bags, "-o", folder / "r.html"],
        "evaluate": ["evaluate", c.run / "predictions.csv", "-o", folder / "m.json"],
        "evaluate --plots": ["evaluate", c.run / "predictions.csv", "-o", folder.parent / "m-plots.json",
                             "--plots", folder / "plots"],
        "synth": ["synth", folder / "cohort", "--patients", "2", "--layout", "cells", "--cells-per-patient", "2"],
        "bags qc": ["bags", "qc", c.bags, "-o", folder / "qc"],
        "config template": ["config", "template", "-o", folder / "t.yaml"],
        "demo": ["demo", "-o", folder / "demo"],
    }  # fmt: skip


COMMANDS = ["train", "heatmap", "predict", "report", "evaluate", "evaluate --plots", "synth", "bags qc",
            "config template", "demo"]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_read_only_output_folder_is_one_line(cohort, tmp_path, capsys, command):
    folder = unwritable_folder(tmp_path)
    argv = _commands(cohort, folder)[command]
    before = snapshot(cohort.run)
    done = mil(capsys, *argv)
    line = done.one_line_error()
    assert done.code == 2 and f"cannot write in {folder}" in line and "choose" in line, line
    target = argv[argv.index("-o") + 1] if "-o" in argv else argv[1]
    assert not target.exists() and not (folder / "plots").exists()
    assert staging_left(folder) == [] and snapshot(cohort.run) == before


@pytest.mark.parametrize(
    ("command", "message"),
    [("predict", "is a folder; give the file"), ("evaluate", "is a folder; give the file"),
     ("report", "is a folder; give the file"), ("config template", "is a folder; give the file")],
)  # fmt: skip
def test_file_output_that_is_a_folder(cohort, tmp_path, capsys, command, message):
    argv = _commands(cohort, tmp_path)[command]
    target = argv[argv.index("-o") + 1]
    target.mkdir()
    (target / "keep.txt").write_text("x")
    done = mil(capsys, *argv, "--overwrite")
    assert done.code == 2 and message in done.one_line_error()
    assert snapshot(target) == {"keep.txt": snapshot(target)["keep.txt"]}


@pytest.mark.parametrize("command", ["train", "heatmap", "predict", "report", "synth", "bags qc"])
def test_output_below_a_file(cohort, tmp_path, capsys, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = mil(capsys, *_commands(cohort, blocker)[command])
    assert done.code == 2 and "is a file, not a folder" in done.one_line_error()
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("command", ["train", "heatmap", "predict", "synth"])
def test_name_too_long_for_the_file_system(cohort, tmp_path, capsys, command):
    argv = [str(a) for a in _commands(cohort, tmp_path)[command]]
    position = argv.index("-o") + 1 if "-o" in argv else 1
    argv[position] = str(tmp_path / ("x" * 300))
    done = mil(capsys, *argv)
    assert done.code == 2 and "shorter" in done.one_line_error()
    assert staging_left(tmp_path) == []


@pytest.mark.parametrize("seed", ["-1", str(SEED_TOO_BIG), "99999999999999999999"])
@pytest.mark.parametrize("command", ["train", "train --set", "synth", "evaluate", "report"])
def test_seed_out_of_range_is_one_line(cohort, tmp_path, capsys, command, seed):
    argv = _commands(cohort, tmp_path)[command.split(" ")[0]]
    argv = [*argv, "--set", f"train.seed={seed}"] if command == "train --set" else [*argv, "--seed", seed]
    done = mil(capsys, *argv)
    line = done.one_line_error()
    assert (
        done.code == 2 and ("seed" in line) and ("greater than or equal to 0" in line or "4294967295" in line)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_demo_seed_out_of_range(tmp_path, capsys):
    done = mil(capsys, "demo", "-o", tmp_path / "demo", "--seed", "-1")
    assert done.code == 2 and "Traceback" not in done.err and not (tmp_path / "demo").exists()


def test_a_bug_is_one_line_exit_1_and_debug_shows_it(monkeypatch, capsys):
    def broken(section=None):
        return 1 / 0

    monkeypatch.setattr("mil.config.template.config_template", broken)
    done = mil(capsys, "config", "template")
    line = done.one_line_error()
    assert done.code == 1 and "ZeroDivisionError" in line and "--debug" in line
    with pytest.raises(ZeroDivisionError):
        mil(capsys, "config", "template", "--debug")


def test_a_full_disk_mid_write_is_one_line_exit_2(monkeypatch, tmp_path, capsys):
    def full(section=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("mil.config.template.config_template", full)
    done = mil(capsys, "config", "template", "-o", tmp_path / "t.yaml")
    assert done.code == 2 and "no space left" in done.one_line_error()


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/data/out/.run.tmp~h~1~ab"),
         "cannot write in /data/out (permission denied)"),
        (PermissionError(errno.EACCES, "Permission denied", "/data/x/.p.csv.123-abcd.tmp"),
         "cannot write in /data/x (permission denied)"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/preds"), "/data/preds: is a directory; give a file path"),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/data/f/x"), "a part of the path is a file"),
        (OSError(errno.ENAMETOOLONG, "File name too long", "/data/" + "x" * 300), "choose a shorter name"),
        (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x"), "read-only file system"),
        (OSError(errno.ENOSPC, "No space left on device"), "free some space"),
    ],
)  # fmt: skip
def test_os_errors_name_the_path_and_the_fix(exc, expected):
    from mil.cli import os_error_line

    assert expected in os_error_line(exc)


def test_os_errors_that_are_not_about_a_path_stay_bugs():
    from mil.cli import os_error_line

    assert os_error_line(OSError(errno.EBADF, "Bad file descriptor")) is None
    assert os_error_line(OSError("no errno")) is None
    assert os_error_line(PermissionError(errno.EACCES, "Permission denied", 3)) is None  # a descriptor
