"""Run records in the store: `STORE/runs/<name>/`, a zarr group whose attrs are the record.

A record is written when a run starts and rewritten when it ends. The first version lands as a finished group
(one rename); later versions replace the group's `zarr.json` with one `os.replace` of a file written in
staging, so a reader always finds one whole record and a kill leaves nothing half-written in sight. A killed
run cannot close its own record: the next run on that host finds it "running" with its process gone and
marks it "killed" (`close_dead_runs`).
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zarr

from features.bagstore.layout import RUNS, land, pid_alive, remove, staging_path


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
    """Every run record by name, oldest first (names start with the UTC start time); a record whose
    `zarr.json` is damaged reads as `{"status": "unreadable", "error": ...}` (records describe, they hold no
    data, and one bad record must not hide the others)."""
    folder = store / RUNS
    if not folder.is_dir():
        return {}
    names = sorted(p.name for p in folder.iterdir() if (p / "zarr.json").is_file())
    records = {}
    for name in names:
        try:
            records[name] = json.loads((folder / name / "zarr.json").read_text())["attributes"]
        except (OSError, ValueError, KeyError) as exc:
            records[name] = {"status": "unreadable", "error": f"{type(exc).__name__}: {exc}"}
    return records


def close_dead_runs(store: Path) -> list[str]:
    """Mark "killed" the records still "running" whose process on this host is gone; their names."""
    host, closed = socket.gethostname(), []
    for name, record in read_runs(store).items():
        pid = record.get("pid")
        if record.get("status") != "running" or record.get("host") != host or not isinstance(pid, int):
            continue
        if pid_alive(pid):
            continue  # still at work (or the pid was reused: then the record stays "running", harmlessly)
        seen = datetime.now(UTC).isoformat(timespec="seconds")
        note = (
            f"process {pid} on {host} ended without closing this record (SIGKILL, out of memory, power loss)"
        )
        write_run(store, name, {**record, "status": "killed", "killed_noticed_at": seen, "note": note})
        closed.append(name)
    return closed
