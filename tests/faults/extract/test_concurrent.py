"""Two writers on one store (issue 13, item 7).

Two unsharded `mil extract` runs on one store could both land a bag, and each reported the other's slides as
failures advising `--overwrite`. The store commits first-writer-wins; the other run counts the slide as
skipped (its bag stands for the same input under the same settings) and does not redo a slide whose bag
landed before it started on it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import features.bagstore.arrays as bag_arrays
import features.pipeline.slide_job as slide_job
from features.bagstore import BagStore
from features.pipeline.extract import extract
from tests.faults.extract.conftest import CFG, FAST, copy_tree, differing

MIL = [sys.executable, "-c", "import sys; from mil.cli import main; main(sys.argv[1:])"]


def _land_from(clean, store, key):
    """What another process's landing looks like: the finished bag renamed into place."""
    shutil.copytree(clean / "bags" / key, store / "bags" / f".{key}.incoming")
    (store / "bags" / f".{key}.incoming").rename(store / "bags" / key)


def test_a_bag_landed_while_this_run_writes_it_is_a_skip(cohort, clean_cells, tmp_path, monkeypatch, ledger):
    store = tmp_path / "bags.zarr"
    BagStore(store, "a", BagStore(clean_cells).encoder, BagStore(clean_cells).extraction)
    real_write = bag_arrays.write_bag_group

    def other_writer_lands_first(path, bag, meta):  # the other run finishes P002 while this one writes it
        if meta.slide_id == "P002":
            _land_from(clean_cells, store, "P002")
        real_write(path, bag, meta)

    monkeypatch.setattr(bag_arrays, "write_bag_group", other_writer_lands_first)
    summary = extract(cohort / "cells", store, CFG)
    status = {o.slide_id: (o.status, o.message) for o in summary.outcomes}
    assert status["P002"] == ("skipped", "bag written meanwhile by another run"), status
    assert [status[s][0] for s in ("P001", "P003")] == ["written", "written"]
    assert differing(store, clean_cells) == [] and BagStore(store).pending() == []
    ledger("concurrency", "another writer lands a bag while this run is writing the same one",
           "first writer wins; this run counts it skipped, not failed")  # fmt: skip


def test_a_bag_landed_before_its_turn_is_not_redone(cohort, clean_cells, tmp_path, monkeypatch, ledger):
    store = tmp_path / "bags.zarr"
    real = slide_job.SlideJob.records

    def records(job, index):
        if job.refs[index].slide_id == "P003":  # landed by the other run after this one planned
            _land_from(clean_cells, store, "P003")
        yield from real(job, index)

    monkeypatch.setattr(slide_job.SlideJob, "records", records)
    summary = extract(cohort / "cells", store, CFG)
    assert {o.slide_id: o.status for o in summary.outcomes} == {"P001": "written", "P002": "written",
                                                                 "P003": "skipped"}  # fmt: skip
    assert differing(store, clean_cells) == []
    ledger("concurrency", "another writer lands a bag after this run planned it, before its turn",
           "not read or encoded again; skipped")  # fmt: skip


def test_two_unsharded_runs_on_one_store(cohort, clean_slides, tmp_path, ledger):
    slides = copy_tree(cohort / "slides", tmp_path / "slides")
    store = tmp_path / "bags.zarr"
    cmd = [*MIL, "extract", str(slides), "-o", str(store), *FAST]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0 and "0 failed" in out and "Traceback" not in out, out
    records = [r for r in BagStore(store).runs().values()]
    assert len(records) == 2 and {r["status"] for r in records} == {"finished"}
    written = sorted(o["slide_id"] for r in records for o in r["outcomes"] if o["status"] == "written")
    assert written == ["P001_s1", "P002_s1", "P003_s1"]  # each slide landed exactly once
    assert differing(store, clean_slides) == [] and BagStore(store).pending() == []
    ledger("concurrency", "two unsharded `mil extract` processes on one store at once",
           "both exit 0, each slide written once, store equals a clean run's")  # fmt: skip
