"""What the CLI fault tests share: a tiny cohort with a trained run, `mil(...)` through the real entry point,
a folder nobody can write to, and a snapshot of a folder to prove a refused command changed nothing.

`mil(...)` calls `mil.cli.main` in-process (the function the `mil` script runs), so exit codes, the red
error line and the no-traceback rule are the user's, not typer's test runner's.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from features.bagstore import BagStore, SlideQC
from mil.cli import main
from tests.train_helpers import SINGLE_MODEL_FLAGS, make_cohort

FAST = ["--folds", "3", "--epochs", "1", "--device", "cpu", "--model", "mean_pool",
        "--set", "evaluate.n_bootstrap=10", "--set", "train.batch_size=4", *SINGLE_MODEL_FLAGS]  # fmt: skip


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def one_line_error(self) -> str:
        """The red line of a refused command; fails the test on a traceback or a multi-line message."""
        lines = self.err.strip().splitlines()
        assert "Traceback" not in self.err and "Traceback" not in self.out, self.err
        assert len(lines) == 1 and lines[0].startswith("error: "), self.err
        return lines[0]


def mil(capsys: pytest.CaptureFixture, *args: object) -> Outcome:
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as done:
        code = 0 if done.code is None else int(done.code)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


@dataclass
class Cohort:
    bags: Path
    labels: Path
    run: Path


def build(root: Path, capsys: pytest.CaptureFixture | None = None) -> Cohort:
    """15 patients (9 in the APL/AML/healthy task), two slides with QC records, and a trained run."""
    bags, labels = make_cohort(root, n_patients=15, n_instances=(6, 10))
    store = BagStore(bags, "a")
    for slide in ("P000-S0", "P001-S0"):
        store.write_qc(slide, SlideQC({"status": "ok"}, np.zeros((8, 8, 3), np.uint8)))
    run = root / "run"
    args = ["train", "--bags", bags, "--labels", labels, "--target", "apl_aml_healthy", "-o", run, *FAST]
    try:
        main([str(a) for a in args])
    except SystemExit as done:
        assert not done.code, f"training the fixture run failed ({done.code})"
    return Cohort(bags, labels, run)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) with its content digest."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create anything in. Not root: a 0o555 folder. Root ignores modes, so
    there the kernel's sysfs stands in (creating a file or folder in /sys is refused to root too)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    sysfs = Path("/sys")
    try:
        (sysfs / "mil-fault-probe").mkdir()
    except OSError:
        return sysfs
    (sysfs / "mil-fault-probe").rmdir()
    pytest.skip("no folder refuses writes here")


def staging_left(parent: Path) -> list[str]:
    """Hidden staging siblings (`.<name>.tmp~...`, `.<name>.old~...`, atomic `.tmp` files) left in `parent`."""
    if not parent.is_dir() or parent == Path("/sys"):
        return []
    return sorted(
        p.name for p in parent.iterdir() if p.name.startswith(".") and (".tmp" in p.name or ".old~" in p.name)
    )
