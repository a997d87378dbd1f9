"""Where tests find the repository and the shared data beside the checkout (tests skip when it is absent)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
BENCH = REPO / "benchmarks"
