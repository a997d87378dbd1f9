"""SIGKILL mid-extraction, then rerun: no corrupt or duplicated bag, finished bags untouched, the rest done,
and the store the one a clean run makes.

A real process is killed (not an exception raised in-process), because the guarantee rests on the store's
rename-into-place and on the rerun's sweep of staging entries whose writer pid is dead. `kill_at.py` kills at
each step between which the store changes (store creation, run record, a bag half staged, a bag staged but
not landed, an old bag moved aside by --overwrite, a QC record staged, the run's end); the slow test kills a
run with a loader worker at a moment in time, as a user's Ctrl-\\ or the OOM killer would.
The killed run's record, left "running", is marked "killed" by the rerun (issue 13, item 10).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from features.bagstore import BagStore, bag_key
from features.pipeline.extract import extract
from tests.extract_fixtures import synth_slides
from tests.faults.extract.conftest import CFG, FAST, copy_tree, differing
from tests.features.bagstore.plain_zarr import plain_zarr_walk

MIL = [sys.executable, "-c", "import sys; from mil.cli import main; main(sys.argv[1:])"]
KILL_AT = [sys.executable, str(Path(__file__).with_name("kill_at.py"))]

# point, pass through it that dies, whether the run replaces an existing store's bags (--overwrite)
POINTS = [
    ("create", 1, False),
    ("record", 1, False),
    ("staging", 2, False),
    ("land", 2, False),
    ("replace", 2, True),
    ("qc", 2, False),
    ("finish", 1, False),
]


@pytest.mark.parametrize(("point", "n", "overwrite"), POINTS, ids=[p[0] for p in POINTS])
def test_kill_at_each_step_then_rerun(cohort, clean_cells, tmp_path, point, n, overwrite, ledger):
    store = tmp_path / "bags.zarr"
    if overwrite:
        copy_tree(clean_cells, store)
    args = [
        "extract",
        str(cohort / "cells"),
        "-o",
        str(store),
        *FAST,
        *(["--overwrite"] if overwrite else []),
    ]
    killed = subprocess.run(
        [*KILL_AT, point, str(n), "--", *args], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, f"{point}: not killed\n{killed.stdout}{killed.stderr}"
    records_before = BagStore(store).runs() if (store / "zarr.json").exists() else {}

    rerun = extract(cohort / "cells", store, CFG, overwrite=overwrite)
    assert rerun.count("failed") == 0 and rerun.count("written") + rerun.count("skipped") == 3
    assert differing(store, clean_cells) == []  # same slides, same features as a clean run
    bags = BagStore(store)
    assert bags.pending() == [] and not list(tmp_path.glob(".bags.zarr~*"))  # nothing left behind
    assert all(p == [] for p in bags.validate(deep=True).values())
    records = bags.runs()
    left_running = [name for name, record in records_before.items() if record["status"] == "running"]
    assert len(left_running) == (0 if point == "create" else 1)  # the kill left its record "running" ...
    assert all(records[name]["status"] == "killed" for name in left_running)  # ... the rerun closed it
    assert list(records.values())[-1]["status"] == "finished"
    if point in ("staging", "replace"):
        plain_zarr_walk(store)  # plain zarr sees a clean hierarchy: the half bag is out of sight
    ledger("kill", f"SIGKILL at '{point}' (pass {n}){' during --overwrite' if overwrite else ''}",
           "rerun: store equals a clean run's, nothing pending, killed record marked 'killed'")  # fmt: skip


def _bags(store: Path) -> dict[str, float]:
    """Complete bags -> mtime of their zarr.json (rewritten if and only if the bag was rewritten)."""
    if not (store / "bags").exists():
        return {}
    return {
        p.name: (p / "zarr.json").stat().st_mtime_ns
        for p in (store / "bags").iterdir()
        if (p / "zarr.json").is_file()
    }


@pytest.mark.slow
def test_sigkill_then_rerun(tmp_path, ledger):
    slides = synth_slides(tmp_path / "cohort", patients=4)
    store = tmp_path / "bags.zarr"
    cmd = [*MIL, "extract", str(slides), "-o", str(store), "--workers", "1", "--batch-size", "16"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    before: dict[str, float] = {}
    while time.monotonic() < deadline and proc.poll() is None:
        before = _bags(store)
        if before:  # first bag landed: the next slide is in flight
            break
        time.sleep(0.02)
    assert proc.poll() is None, (
        f"extraction ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_slides = len(list(slides.glob("*.tiff")))
    assert 1 <= len(before) < n_slides, "the kill must land between the first and the last bag"
    before = _bags(store)  # bags complete at the moment of the kill
    # What the killed writer left is out of sight: plain zarr sees complete bags only, without a warning.
    assert {p for p in plain_zarr_walk(store) if p.startswith("bags/") and p.count("/") == 1} == {
        f"bags/{k}" for k in before
    }

    # A dead writer's half bag, as a kill during `BagStore.write` leaves it: swept by the rerun, never seen.
    dead_pid = 2**22 + 12345
    stale = store / "tmp" / "bags" / f"{bag_key('ghost')}~new~{socket.gethostname()}~{dead_pid}~deadbeef"
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "zarr.json").write_text("{}")

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert not stale.exists()
    after = _bags(store)
    assert sorted(after) == sorted(bag_key(p.stem) for p in slides.glob("*.tiff"))  # exactly one bag each
    for key, mtime in before.items():
        assert after[key] == mtime, f"bag {key} was rewritten by the rerun"
    runs = BagStore(store).runs()
    outcomes = {o["slide_id"]: o["status"] for o in list(runs.values())[-1]["outcomes"]}
    assert {bag_key(k) for k, s in outcomes.items() if s == "skipped"} == set(before)
    assert {s for k, s in outcomes.items() if bag_key(k) not in before} == {"written"}

    validate = subprocess.run(
        [*MIL, "bags", "validate", str(store), "--deep"], capture_output=True, text=True, timeout=120
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert BagStore(store).pending() == []
    assert [r["status"] for r in runs.values()] == ["killed", "finished"]
    plain_zarr_walk(store)
    ledger("kill", "SIGKILL of a run with a loader worker, between its first and last bag (wall-clock)",
           "rerun: finished bags untouched, the rest written once, validate --deep ok")  # fmt: skip
