"""`features.core.io`: outputs are replaced whole or not at all; JSON is strict."""

from __future__ import annotations

import json
import math

import pytest

from features.core.io import atomic_write, write_json


def test_write_json_is_strict_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    write_json({"auc": 0.75, "ci": [0.6, 0.9]}, path)
    assert json.loads(path.read_text()) == {"auc": 0.75, "ci": [0.6, 0.9]}
    with pytest.raises(ValueError):
        write_json({"auc": math.nan}, path)
    assert json.loads(path.read_text())["auc"] == 0.75  # the refused document never reached the file
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old\n")

    def half_then_fail(tmp):
        tmp.write_text("new, half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]
