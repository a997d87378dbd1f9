"""SIGKILL mid-extraction, then rerun: no corrupt or duplicated bag, finished bags untouched, the rest done.

A real process is killed (not an exception raised in-process), because the guarantee rests on the store's
rename-into-place and on the rerun's sweep of staging entries whose writer pid is dead.
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
from tests.extract_fixtures import synth_slides
from tests.features.bagstore.plain_zarr import plain_zarr_walk

MIL = [sys.executable, "-c", "import sys; from mil.cli import main; main(sys.argv[1:])"]


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
def test_sigkill_then_rerun(tmp_path):
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
        [*MIL, "bags", "validate", str(store)], capture_output=True, text=True, timeout=120
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert BagStore(store).pending() == []
    plain_zarr_walk(store)
