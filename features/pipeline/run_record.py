"""`STORE/runs/<UTC time>-shard<i>of<N>/`: what one extraction run was asked, with what software, and what it did.

A zarr group whose attrs are the record (`features.bagstore.runs`), written when the run starts (status
"running") and replaced atomically when it ends, so a run killed midway still leaves its config and command
line; the bags' own attrs hold the per-bag provenance.
"""

from __future__ import annotations

import os
import socket
import sys
from datetime import UTC, datetime
from typing import Any

from features.bagstore import BagStore
from features.core.versions import versions


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunRecord:
    """One record per run and shard; `update` merges fields and rewrites it atomically."""

    def __init__(self, store: BagStore, shard: tuple[int, int], fields: dict[str, Any]):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
        self.store = store
        self.name = f"{stamp}-shard{shard[0]}of{shard[1]}"
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
        self.path = self.store.write_run(self.name, self.data)
