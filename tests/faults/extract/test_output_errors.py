"""Where `mil extract` writes, and the names it writes under (issue 13, item 9, the extraction side).

A read-only output folder and an `-o` that is a file gave tracebacks with exit 1; a slide or patient id of
240+ characters made staging names the file system refuses (OSError 36) on every run. Now the first two are
one line and exit 2 before any work, and a long id gets a short key (cut, with a digest) like any id that
had to change, so it is extracted like the others.
"""

from __future__ import annotations

import os
import shutil

import pytest

from features.bagstore import BagStore, bag_key
from tests.faults.extract.conftest import FAST, cli, copy_tree, error_lines

ROOT = os.geteuid() == 0  # root writes through permission bits: read-only folders need another route


def test_output_is_a_file(cohort, tmp_path, ledger):
    target = tmp_path / "bags.zarr"
    target.write_text("my notes\n")
    run = cli("extract", cohort / "cells", "-o", target, *FAST)
    assert run.traceback is None and run.code == 2, run.output
    assert "is a file, not a bag store" in error_lines(run)[0] and target.read_text() == "my notes\n"
    ledger("input", "-o names an existing file", "one line, exit 2, the file untouched")


def test_output_folder_not_writable(cohort, tmp_path, ledger):
    if ROOT:  # sysfs refuses new entries even to root
        target = "/sys/mil-faults-bags.zarr"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        target = locked / "bags.zarr"
    run = cli("extract", cohort / "cells", "-o", target, *FAST)
    assert run.traceback is None and run.code == 2, run.output
    assert "cannot create the store there" in error_lines(run)[0] and "writable" in error_lines(run)[0]
    ledger("input", "-o in a folder the user cannot write", "one line, exit 2, before any work")


@pytest.mark.skipif(ROOT, reason="root writes through permission bits")
def test_existing_store_not_writable(cohort, clean_cells, tmp_path):
    store = copy_tree(clean_cells, tmp_path / "bags.zarr")
    for path in [store, *store.rglob("*")]:
        if path.is_dir():
            path.chmod(0o555)
    run = cli("extract", cohort / "cells", "-o", store, *FAST)
    assert run.traceback is None and run.code == 2 and "not writable" in error_lines(run)[0], run.output


def test_ids_of_240_characters(cohort, tmp_path, ledger):
    slides = tmp_path / "slides"
    slides.mkdir()
    long_slide = "A" + "x" * 248  # sorts first: once this aborted every slide after it
    shutil.copy(cohort / "slides" / "P002_s1.tiff", slides / f"{long_slide}.tiff")
    shutil.copy(cohort / "slides" / "P003_s1.tiff", slides)
    cells = copy_tree(cohort / "cells", tmp_path / "cells")
    long_patient = "P" + "y" * 245
    (cells / "P001").rename(cells / long_patient)
    long_image = "z" * 240 + ".png"
    shutil.copy(cells / "P002" / "1.png", cells / "P002" / long_image)
    for source, ids in ((slides, [long_slide, "P003_s1"]), (cells, [long_patient, "P002", "P003"])):
        store = tmp_path / f"{source.name}.zarr"
        for attempt in ("first", "rerun"):
            run = cli("extract", source, "-o", store, *FAST)
            assert run.traceback is None and run.code == 0, run.output
            assert ("0 failed" in run.output) and (attempt == "first" or "0 written" in run.output)
        bags = BagStore(store)
        assert sorted(bags.slide_ids()) == sorted(ids)
        assert len(bag_key(ids[0])) < 100 and bags.meta(ids[0]).slide_id == ids[0]
    assert long_image in BagStore(tmp_path / "cells.zarr").read("P002").paths
    ledger("input", "a 249-character slide id, a 246-character patient folder, a 244-character image name",
           "extracted like the others (short key with a digest); rerun skips all")  # fmt: skip
