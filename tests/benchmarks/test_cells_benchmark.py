"""Smoke tests of benchmarks/cells.py (the one entry point of the cell-type benchmarks): its classify part on a few
real PBC images per class (skipped without the shared data) and its detect part on one tiny synthetic scenario,
so the script keeps running (the figures come from running it; see benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.paths import BENCH, DATA

sys.path.insert(0, str(BENCH))

import cells  # noqa: E402

PBC = DATA / "pbc-subset"


@pytest.mark.skipif(not PBC.is_dir(), reason=f"{PBC} not found (set MIL_TEST_DATA)")
def test_cells_benchmark_pbc_part(tmp_path):
    small = tmp_path / "data" / "pbc-subset"
    for cls in sorted(p for p in PBC.iterdir() if p.is_dir()):
        (small / cls.name).mkdir(parents=True)
        for image in sorted(cls.glob("*.jpg"))[:6]:
            os.symlink(image, small / cls.name / image.name)
    out = tmp_path / "cells.json"
    argv = ["--part", "classify", "--classify-on", "pbc", "--data", str(tmp_path / "data"), "--pbc-patients", "3",
            "--work", str(tmp_path / "w"), "--json", str(out)]  # fmt: skip
    record = cells.main(argv)
    saved = json.loads(out.read_text())["classify"]["pbc"]
    assert saved["cells"] == 48 and saved["classes"] == 8 and "CC BY 4.0" in saved["attribution"]
    assert 0 <= record["classify"]["pbc"]["linear"]["balanced_accuracy"] <= 1


def test_cells_benchmark_detect_part(tmp_path, capsys):
    argv = ["--part", "detect", "--scenarios", "default", "--patients", "1", "--slide-px", "1200",
            "--work", str(tmp_path)]  # fmt: skip
    cells.main(argv)
    printed = capsys.readouterr().out
    assert "recall in the counting region" in printed and "== detect:" in printed
    assert (tmp_path / "detect" / "default" / "cohort.json").is_file()


def test_cells_benchmark_refuses_an_unknown_part():
    with pytest.raises(SystemExit):
        cells.main(["--part", "typing"])
