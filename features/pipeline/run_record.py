"""`STORE/runs/<UTC time>-<shard>.json`: what one extraction run was asked, with what software, and what it did.

Written when the run starts (status "running") and replaced atomically when it ends, so a run killed midway
still leaves its config and command line; the bags' own attrs hold the per-bag provenance.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.core.versions import versions


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunRecord:
    """One JSON file per run and shard; `update` merges fields and rewrites it atomically."""

    def __init__(self, store: Path, shard: tuple[int, int], fields: dict[str, Any]):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
        self.path = Path(store) / "runs" / f"{stamp}-shard{shard[0]}of{shard[1]}.json"
        self.data: dict[str, Any] = {
            "status": "running",
            "started_at": utc_now(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": " ".join(sys.argv),
            "shard": f"{shard[0]}/{shard[1]}",
            "versions": versions(),
            **fields,
        }
        self._write()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)
