"""Smoke test of benchmarks/fields.py: its mpp part on one tiny configuration, so the script keeps running
(the figures come from running it; see benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import sys

from tests.paths import BENCH

sys.path.insert(0, str(BENCH))

import fields as fields_benchmark  # noqa: E402


def test_fields_benchmark_mpp_part(tmp_path):
    out = tmp_path / "fields.json"
    argv = ["--part", "mpp", "--mpp-patients", "1", "--mpp-fields", "2", "--mpps", "0.3", "--json", str(out)]
    record = fields_benchmark.main(argv)
    saved = json.loads(out.read_text())
    assert set(saved["mpp"]["per_region"]) == {"monolayer", "hemodiluted"}
    row = record["mpp"]["per_region"]["monolayer"][0.3]
    assert row["refused"] == 0 and abs(row["patient_error"][0]) < 0.05
