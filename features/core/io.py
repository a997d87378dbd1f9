"""Atomic file writes for run outputs: write beside the target, then `os.replace`.

A crash mid-write leaves the previous file (or none), never a half-written CSV, JSON or PNG that a later
`mil evaluate` or `mil report` would read as complete. Used by training, evaluation, explanation and reports.
(`features/` keeps its own writers: it never imports `mil`.)
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` on a temporary sibling of `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(data: Any, path: Path, indent: int | None = 2) -> None:
    """Strict JSON (NaN and infinity are refused, never written as bare `NaN` tokens that other readers
    reject), written atomically. Serialisation happens before the file is touched, so a refused document
    leaves the previous file in place."""
    atomic_write_text(Path(path), json.dumps(data, indent=indent, allow_nan=False) + "\n")


__all__ = ["atomic_write", "atomic_write_text", "write_json"]
