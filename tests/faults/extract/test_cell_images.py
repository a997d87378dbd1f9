"""Cell-image folders with bad files (issue 13, items 2, 8 and 10).

A real cohort of CellaVision exports held 10 corrupt JPEGs among 25,000 cells, and `mil extract` failed the 10
whole patients. Now an image that cannot be read is left out in one line, named in the bag's provenance
(`skipped: [[file, reason], ...]`) and in the run summary, and the patient is kept; `--strict` fails the
patient instead. A FIFO named like an image is never opened (it would block the run). A store written into
the cohort folder itself is not taken for a patient on the next run.
"""

from __future__ import annotations

import os

from features.bagstore import BagStore
from features.pipeline.extract import extract
from tests.faults.extract.conftest import CFG, FAST, cli, copy_tree, deadline, differing


def _break_patient(cells):
    """P002 gets a truncated copy of one of its PNGs, a text file named like a JPEG and an empty file."""
    folder = cells / "P002"
    (folder / "13.png").write_bytes((folder / "3.png").read_bytes()[:300])
    (folder / "14.jpg").write_text("not an image\n")
    (folder / "15.png").write_bytes(b"")
    return ["13.png", "14.jpg", "15.png"]


def test_unreadable_images_are_left_out_and_the_patient_kept(cohort, clean_cells, tmp_path, ledger):
    cells = copy_tree(cohort / "cells", tmp_path / "cells")
    bad = _break_patient(cells)
    store = tmp_path / "bags.zarr"
    run = cli("extract", cells, "-o", store, *FAST)
    assert run.traceback is None and run.code == 0, run.output
    assert "3 written, 0 skipped, 0 failed" in run.output and "(3 inputs left out)" in run.output
    listed = run.output.split("written with inputs left out")[1]
    assert "P002: 3 input(s) left out" in listed and all(name in listed for name in bad)
    meta = BagStore(store).meta("P002")
    assert [file for file, _ in meta.skipped] == bad and all(
        "cannot read image" in r for _, r in meta.skipped
    )
    run_record = list(BagStore(store).runs().values())[-1]
    assert run_record["totals"]["inputs_left_out"] == 3
    # The patient's bag is the one a clean run makes: the bad files changed nothing else.
    assert differing(store, clean_cells) == []
    rerun = cli("extract", cells, "-o", store, *FAST)
    assert rerun.code == 0 and "0 written, 3 skipped" in rerun.output
    ledger("input", "3 unreadable images (truncated PNG, text .jpg, empty .png) in one patient's folder",
           "images left out one line each, listed in the bag and the summary; bags equal a clean run's")  # fmt: skip


def test_strict_fails_the_patient(cohort, tmp_path, ledger):
    cells = copy_tree(cohort / "cells", tmp_path / "cells")
    _break_patient(cells)
    run = cli("extract", cells, "-o", tmp_path / "bags.zarr", *FAST, "--strict")
    assert run.traceback is None and run.code == 3, run.output
    assert "2 written, 0 skipped, 1 failed" in run.output
    assert "P002" in run.output.split("failures (1):")[1] and "--strict" in run.output
    assert BagStore(tmp_path / "bags.zarr").slide_ids() == ["P001", "P003"]
    ledger(
        "input", "unreadable image with --strict", "that patient fails in one line (exit 3), others written"
    )


def test_fifo_named_like_an_image_is_never_opened(cohort, clean_cells, tmp_path, ledger):
    cells = copy_tree(cohort / "cells", tmp_path / "cells")
    os.mkfifo(cells / "P001" / "0.png")  # opening it for reading would block until a writer comes
    with deadline(120, release=[cells]):
        summary = extract(cells, tmp_path / "bags.zarr", CFG)
    assert [o.status for o in summary.outcomes] == ["written"] * 3
    p001 = next(o for o in summary.outcomes if o.slide_id == "P001")
    assert p001.left_out == 1 and "FIFO" in p001.detail and "never opened" in p001.detail
    assert differing(tmp_path / "bags.zarr", clean_cells) == []
    ledger("input", "FIFO named 0.png in a patient's folder", "left out unopened, one line; no hang")


def test_store_inside_its_own_cell_folder_is_no_patient(cohort, clean_cells, tmp_path, ledger):
    cells = copy_tree(cohort / "cells", tmp_path / "cells")
    store = cells / "bags.zarr"
    first = cli("extract", cells, "-o", store, *FAST)
    assert first.code == 0, first.output
    again = cli("extract", cells, "-o", store, *FAST)
    assert again.traceback is None and again.code == 0, again.output
    assert "3 slide(s): 0 to extract, 3 already done" in again.output
    assert BagStore(store).slide_ids() == ["P001", "P002", "P003"] and differing(store, clean_cells) == []
    ledger("input", "store written inside the cell folder it reads (-o cells/bags.zarr), rerun",
           "not taken for a patient; the rerun skips all, exit 0")  # fmt: skip
