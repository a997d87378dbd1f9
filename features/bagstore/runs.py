"""Run records in the store: `STORE/runs/<name>/`, a zarr group whose attrs are the record.

A record is written when a run starts and rewritten when it ends. The first version lands as a finished group
(one rename); later versions replace the group's `zarr.json` with one `os.replace` of a file written in
staging, so a reader always finds one whole record and a kill leaves nothing half-written in sight.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import zarr

from features.bagstore.layout import RUNS, land, remove, staging_path


def write_run(store: Path, name: str, record: dict[str, Any]) -> Path:
    """Write or replace the record `name`; returns its group's folder."""
    final = store / RUNS / name
    staged = staging_path(store, RUNS, name)
    try:
        # default=str: a record describes a run for people; an odd value must never lose the record.
        zarr.open_group(staged, mode="w", attributes=json.loads(json.dumps(record, default=str)))
        if (final / "zarr.json").is_file():
            os.replace(staged / "zarr.json", final / "zarr.json")
        else:
            land(staged, final, replace=False)
    finally:
        remove(staged)
    return final


def read_runs(store: Path) -> dict[str, dict[str, Any]]:
    """Every run record by name, oldest first (names start with the UTC start time)."""
    folder = store / RUNS
    if not folder.is_dir():
        return {}
    names = sorted(p.name for p in folder.iterdir() if (p / "zarr.json").is_file())
    return {name: zarr.open_group(folder / name, mode="r").attrs.asdict() for name in names}
