"""Shared pieces of the store and extraction fault-injection suite (#13; the CLI side is
tests/faults/test_cli_*): tiny cohorts, a clean reference store, the CLI run in-process the way a user runs it
(`mil.cli.main`: one red line and exit 2 for expected failures, a traceback otherwise), and
the ledger every test writes its injected fault and outcome to.

The ledger is printed at the end of the session (`pytest tests/faults/extract`), and written as JSON where
`MIL_FAULTS_JSON` names a file: the Reliability table of benchmarks/RESULTS.md comes from it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import threading
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest

from features.bagstore import BagStore
from features.pipeline.config import ExtractConfig
from features.pipeline.extract import extract
from tests.extract_fixtures import synth_cohort

CFG = ExtractConfig(encoder="cytomorph", workers=0, qc_thumbnail_px=128)
FAST = ["--workers", "0", "--set", "extract.qc_thumbnail_px=128"]


@dataclass
class Entry:
    area: str  # "kill", "corruption", "concurrency", "input", "store", "fuzz"
    fault: str  # what was injected
    outcome: str  # what the product did
    lost: int = 0  # slides (or bags) lost or changed that the fault did not concern


LEDGER: list[Entry] = []


@pytest.fixture
def ledger():
    """`ledger(area, fault, outcome, lost=0)` records one injected fault and what came of it."""

    def record(area: str, fault: str, outcome: str, lost: int = 0) -> None:
        LEDGER.append(Entry(area, fault, outcome, lost))

    return record


def pytest_terminal_summary(terminalreporter):
    if not LEDGER:
        return
    write = terminalreporter.write_line
    write("")
    write(f"fault-injection ledger: {len(LEDGER)} faults injected")
    for area in sorted({e.area for e in LEDGER}):
        rows = [e for e in LEDGER if e.area == area]
        write(f"  {area}: {len(rows)} faults, {sum(e.lost for e in rows)} slides lost")
        for e in rows:
            write(f"    - {e.fault} -> {e.outcome}")
    out = os.environ.get("MIL_FAULTS_JSON")
    if out:
        Path(out).write_text(json.dumps([asdict(e) for e in LEDGER], indent=1, ensure_ascii=False))


@pytest.fixture(scope="session")
def cohort(tmp_path_factory) -> Path:
    """3 patients: `slides/P00k_s1.tiff` (1500 px, mpp 0.25) and `cells/P00k/<n>.png` (12 each). Read-only:
    tests that break it copy it first."""
    return synth_cohort(tmp_path_factory.mktemp("faults_cohort"), patients=3)


def _clean_store(cohort: Path, kind: str, root: Path) -> Path:
    store = root / f"{kind}.zarr"
    summary = extract(cohort / kind, store, CFG)
    assert [o.status for o in summary.outcomes] == ["written"] * 3
    return store


@pytest.fixture(scope="session")
def clean_cells(cohort, tmp_path_factory) -> Path:
    """The store a clean run makes of `cohort/cells` (the reference every rerun is compared with)."""
    return _clean_store(cohort, "cells", tmp_path_factory.mktemp("faults_clean"))


@pytest.fixture(scope="session")
def clean_slides(cohort, tmp_path_factory) -> Path:
    return _clean_store(cohort, "slides", tmp_path_factory.mktemp("faults_clean"))


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def snapshot(store: Path) -> dict[str, dict[str, np.ndarray]]:
    """slide id -> its bag's arrays (features, coords or paths, obs columns)."""
    bags = BagStore(store)
    out = {}
    for slide in bags.slide_ids():
        bag = bags.read(slide)
        arrays = {"features": bag.features, **{f"obs/{k}": v for k, v in bag.obs.items()}}
        if bag.coords is not None:
            arrays["coords"] = bag.coords
        if bag.paths is not None:
            arrays["paths"] = np.asarray(bag.paths, dtype=str)
        out[slide] = arrays
    return out


def differing(store: Path, reference: Path, exclude: set[str] = frozenset()) -> list[str]:
    """Slides (outside `exclude`) whose bag differs from the reference store's, or is in only one of them."""
    a, b = snapshot(store), snapshot(reference)
    found = []
    for slide in sorted((set(a) | set(b)) - set(exclude)):
        if slide not in a or slide not in b or set(a[slide]) != set(b[slide]):
            found.append(slide)
            continue
        for name, values in a[slide].items():
            other = b[slide][name]
            same = values.shape == other.shape and (
                np.allclose(values, other, rtol=1e-5, atol=1e-6)
                if values.dtype.kind == "f"
                else np.array_equal(values, other)
            )
            if not same:
                found.append(slide)
                break
    return found


@dataclass
class CliRun:
    code: int
    output: str  # stdout and stderr together
    traceback: str | None  # set when anything but SystemExit escaped `main`


@contextlib.contextmanager
def deadline(seconds: int, release: list[Path] = ()):
    """Raise `TimeoutError` after `seconds`: a hang fails the test instead of stalling the suite. SIGALRM
    interrupts a Python `open` of a FIFO, but not a reader blocked inside C code (an image decoder), so when the
    time is up every FIFO below the `release` folders is also opened for writing, which ends such a read."""
    expired = threading.Event()

    def expire(signum, frame):
        expired.set()
        raise TimeoutError(f"still running after {seconds} s: a hang")

    def release_fifos():
        expired.set()
        for fifo in (p for root in release for p in root.rglob("*") if p.is_fifo()):
            with contextlib.suppress(OSError):  # ENXIO: nobody is reading it
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(seconds, release_fifos)
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if expired.is_set():  # also over a SystemExit: `main` turns any exception into an exit
            raise TimeoutError(f"still running after {seconds} s: a hang")


def cli(*args: object, timeout: int = 300) -> CliRun:
    """`mil ARGS` in this process, as the console script runs it; never raises (a hang past `timeout` seconds
    comes back as a traceback; FIFOs in the folders among ARGS are released then, see `deadline`)."""
    from mil.cli import main

    folders = [Path(str(a)) for a in args if Path(str(a)).is_dir()]
    out = io.StringIO()
    code, tb = 0, None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            with deadline(timeout, release=folders):
                main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - the very thing the suite looks for
            code, tb = 1, traceback.format_exc()
    return CliRun(code, out.getvalue(), tb)


def error_lines(run: CliRun) -> list[str]:
    return [line for line in run.output.splitlines() if line.startswith("error:")]
