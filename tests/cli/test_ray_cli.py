"""`mil extract --engine ray` as a user runs it: a fresh process that starts Ray on this machine, bound to the
loopback interface, extracts, and stops Ray again before it exits."""

from __future__ import annotations

import subprocess
import sys

from features.bagstore import BagStore
from tests.extract_fixtures import synth_cohort
from tests.ray_helpers import ray  # noqa: F401 - skips the module without Ray

MIL = [sys.executable, "-c", "import sys; from mil.cli import main; main(sys.argv[1:])"]


def test_extract_engine_ray_in_a_fresh_process(tmp_path):
    cells = synth_cohort(tmp_path / "cohort", patients=2, cells=6, layout="cells") / "cells"
    store = tmp_path / "bags.zarr"
    cmd = [*MIL, "extract", str(cells), "-o", str(store), "--engine", "ray", "--loaders", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Ray started on this machine (127.0.0.1)" in result.stdout  # loopback only
    assert "2 written, 0 skipped, 0 failed" in result.stdout
    assert len(BagStore(store).slide_ids()) == 2
    assert list(BagStore(store).runs().values())[-1]["engine"]["loaders"] == 1
