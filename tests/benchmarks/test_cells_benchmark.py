"""Smoke test of benchmarks/cells_classify.py: its PBC part on a few real images per class (skipped without the
shared data), so the script keeps running (the figures come from running it; see benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.paths import BENCH, DATA

sys.path.insert(0, str(BENCH))

import cells_classify  # noqa: E402

PBC = DATA / "pbc-subset"


@pytest.mark.skipif(not PBC.is_dir(), reason=f"{PBC} not found (set MIL_TEST_DATA)")
def test_cells_benchmark_pbc_part(tmp_path):
    small = tmp_path / "data" / "pbc-subset"
    for cls in sorted(p for p in PBC.iterdir() if p.is_dir()):
        (small / cls.name).mkdir(parents=True)
        for image in sorted(cls.glob("*.jpg"))[:6]:
            os.symlink(image, small / cls.name / image.name)
    out = tmp_path / "cells.json"
    argv = ["--part", "pbc", "--data", str(tmp_path / "data"), "--pbc-patients", "3", "--work", str(tmp_path / "w"),
            "--json", str(out)]  # fmt: skip
    record = cells_classify.main(argv)
    saved = json.loads(out.read_text())["pbc"]
    assert saved["cells"] == 48 and saved["classes"] == 8 and "CC BY 4.0" in saved["attribution"]
    assert 0 <= record["pbc"]["linear"]["balanced_accuracy"] <= 1
