"""Atomic file writes: write beside the target, then `os.replace`. The one writer of both floors.

A crash mid-write leaves the previous file (or none), never a half-written CSV, JSON, PNG or checkpoint that a
later run (resume, `mil evaluate`, `mil report`) would read as complete. The temporary sibling is a dot file
named after the target, the pid and a random tag, so two writers never share one and a leftover is hidden.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def json_default(obj: Any) -> Any:
    """`json.dumps(..., default=json_default)`: numpy scalars and arrays as plain numbers and lists, paths as
    strings; anything else is a TypeError (never silently `str()`-ed into a value nobody can read back)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(data: Any, path: Path, indent: int | None = 2) -> None:
    """Strict JSON (NaN and infinity are refused, never written as bare `NaN` tokens that other readers
    reject), written atomically. Serialisation happens before the file is touched, so a refused document
    leaves the previous file in place."""
    atomic_write_text(Path(path), json.dumps(data, indent=indent, allow_nan=False) + "\n")


__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "json_default", "write_json"]
