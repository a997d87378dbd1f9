"""Hangs (issue 13, item 8): an implausible pixel size, and a FIFO named like a slide.

`--mpp 500` (a units slip for 0.5) ran for minutes in the focus measure; a slide whose metadata says 352 µm/px
(a 72 dpi placeholder) was taken at its word; a FIFO named `x.svs` blocked the run forever. Now one bound
(`features.sources.base.MPP_PLAUSIBLE`) refuses `--mpp`, manifest rows, slide metadata and the fields' red-cell
estimate alike, in one line; anything that is not a regular file is never opened.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from features.bagstore import BagStore
from tests.extract_fixtures import OPENSLIDE_FIXTURES
from tests.faults.extract.conftest import FAST, cli, copy_tree, differing, error_lines

MIL = [sys.executable, "-c", "import sys; from mil.cli import main; main(sys.argv[1:])"]


@pytest.mark.parametrize("mpp", ["500", "0.001"])
def test_implausible_mpp_flag_is_one_line(cohort, tmp_path, mpp, ledger):
    run = cli("extract", cohort / "slides", "-o", tmp_path / "bags.zarr", "--mpp", mpp, *FAST)
    assert run.traceback is None and run.code == 2, run.output
    (line,) = error_lines(run)
    assert f"mpp {float(mpp):g} µm/px is implausible; smears are scanned at 0.1–2" in line
    assert not (tmp_path / "bags.zarr").exists()
    ledger("input", f"--mpp {mpp} (a unit slip)", "refused in one line before any work, exit 2")


def test_implausible_mpp_in_a_manifest_row(cohort, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"slide_id,path,mpp\nA,{cohort / 'slides' / 'P001_s1.tiff'},250\n")
    run = cli("extract", manifest, "-o", tmp_path / "bags.zarr", *FAST)
    assert run.traceback is None and "row 2:" in run.output and "mpp 250 µm/px is implausible" in run.output


def test_fifo_and_implausible_metadata_fail_alone(cohort, clean_slides, tmp_path, ledger):
    slides = copy_tree(cohort / "slides", tmp_path / "slides")
    os.mkfifo(slides / "A_fifo.svs")  # sorts first: a blocked open would stop every slide after it
    if OPENSLIDE_FIXTURES.exists():  # a real TIFF whose resolution tags are a 72 dpi placeholder
        shutil.copy(OPENSLIDE_FIXTURES / "boxes.tiff", slides / "B_placeholder.tiff")
    store = tmp_path / "bags.zarr"
    cmd = [*MIL, "extract", str(slides), "-o", str(store), *FAST]
    try:  # a subprocess with a deadline: a hang must fail the test, not stall the suite
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail("mil extract hung on a FIFO named like a slide")
    out = done.stdout + done.stderr
    assert done.returncode == 3 and "Traceback" not in out, out
    failures = out.split("failures (")[1]
    assert "A_fifo.svs: a FIFO, not an image or slide file; skipped, never opened" in failures
    if OPENSLIDE_FIXTURES.exists():
        assert "mpp 352.778 µm/px (from openslide.mpp-x) is implausible" in failures
    assert BagStore(store).slide_ids() == ["P001_s1", "P002_s1", "P003_s1"]
    assert differing(store, clean_slides) == []
    ledger("input", "a FIFO named A_fifo.svs and a slide whose metadata says 352.8 µm/px, before the good slides",
           "each fails alone in one line, never opened / never measured; the others are written")  # fmt: skip
