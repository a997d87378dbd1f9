"""Where tests find the repository and the shared data beside the checkout (tests skip when it is absent).

`MIL_TEST_DATA` points elsewhere (a git worktree under another folder than the main checkout)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MIL_TEST_DATA") or REPO.parent / "shared" / "data")
BENCH = REPO / "benchmarks"
