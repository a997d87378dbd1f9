"""Open a store the way an outside user does: plain zarr-python, in a fresh interpreter, every warning an error.

A subprocess, so the check sees exactly what `zarr.open_group(STORE)` sees (no state of ours), and so the
tests themselves import nothing of zarr (only features/bagstore/ does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_WALK = """
import sys, warnings
warnings.simplefilter("error")
import zarr
root = zarr.open_group(sys.argv[1], mode="r")
for path, node in sorted(root.members(max_depth=None), key=lambda m: m[0]):
    if isinstance(node, zarr.Array):
        node[...]  # every array's chunks decode
    print(path)
"""


def plain_zarr_walk(store: Path) -> list[str]:
    """Every node path under the root; fails the test on any warning or error."""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", _WALK, str(store)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"plain zarr could not walk {store}:\n{done.stderr[-3000:]}"
    return done.stdout.splitlines()
