"""One `versions()` for every record: extraction run records, training runs, heatmaps and reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from features.core import versions as core
from features.core.io import json_default


def test_versions_lists_python_and_every_package():
    found = core.versions()
    assert set(found) == {"python", *core.PACKAGES}
    assert found["numpy"] == np.__version__ and found["python"].count(".") == 2


def test_run_records_and_run_folders_use_the_one_function():
    from features.pipeline import run_record
    from mil.training import rundir

    assert run_record.versions is core.versions and rundir.versions is core.versions


def test_json_default_unboxes_numpy_and_paths_and_refuses_the_rest():
    doc = {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(2), "p": Path("/a/b")}
    assert json.loads(json.dumps(doc, default=json_default)) == {"n": 3, "x": 0.5, "a": [0, 1], "p": "/a/b"}
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        json.dumps({"o": object()}, default=json_default)
