"""`mil synth` through typer's CliRunner and through main(): success, and bad arguments as one-line errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from features.core.errors import MilError
from mil.cli import app, main

runner = CliRunner()


def test_synth_writes_a_cohort_and_says_what(tmp_path):
    out = tmp_path / "c"
    args = ["synth", str(out), "--patients", "2", "--layout", "cells", "--sites", "1", "--seed", "1"]
    result = runner.invoke(app, args + ["--cells-per-patient", "3", "--contact-sheet"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "crops" in result.output
    assert (out / "labels.csv").exists() and (out / "contact_sheet.png").exists()
    assert len(list((out / "cells").rglob("*.png"))) == 6


@pytest.fixture
def existing(tmp_path):
    out = tmp_path / "c"
    result = runner.invoke(
        app, ["synth", str(out), "--patients", "1", "--layout", "cells", "--cells-per-patient", "2"]
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--patients", "0"], "patients"),
        (["--layout", "tiles"], "layout"),
        (["--witness", "1.5"], "witness"),
        (["--sites", "0"], "sites"),
        (["--slide-px", "100"], "slide_px"),
        (["--workers", "0"], "workers"),
        ([], "not empty"),
    ],
)
def test_bad_arguments_are_one_line_and_leave_files_untouched(existing, args, message):
    before = {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()}
    result = runner.invoke(app, ["synth", str(existing), "--layout", "cells", *args])
    assert isinstance(result.exception, MilError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()} == before
    assert not list(existing.parent.glob(".*.tmp~*"))


def test_unwritable_out_is_one_line(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    result = runner.invoke(app, ["synth", str(blocker / "out"), "--patients", "1", "--layout", "cells"])
    assert isinstance(result.exception, MilError) and "not a folder" in str(result.exception)
    assert blocker.read_text() == "x"


def test_main_turns_errors_into_exit_code_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(tmp_path / "c"), "--patients", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "patients" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_overwrite_replaces(existing):
    result = runner.invoke(
        app,
        [
            "synth",
            str(existing),
            "--patients",
            "2",
            "--layout",
            "cells",
            "--cells-per-patient",
            "1",
            "--overwrite",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (existing / "cells").iterdir()) == ["P001", "P002"]
