"""A store of schema 1 (bags at the top level, `qc/` `runs/` `.tmp/` as plain folders) is refused with one
line naming the fix; `mil bags upgrade` converts it in place, keeping every bag, QC overview and run record,
and a killed upgrade carries on when rerun."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from features.bagstore import BagStore
from features.bagstore.qc_export import export_qc
from features.core.errors import StoreError
from features.pipeline.config import ExtractConfig
from features.pipeline.extract import extract
from mil.cli import app
from tests.extract_fixtures import synth_cohort
from tests.features.bagstore.plain_zarr import plain_zarr_walk

CFG = ExtractConfig(encoder="cytomorph", workers=0, qc_thumbnail_px=128)


@pytest.fixture(scope="module")
def current(tmp_path_factory):
    cohort = synth_cohort(tmp_path_factory.mktemp("cohort"), patients=2, slide_px=1000)
    store = tmp_path_factory.mktemp("stores") / "current.zarr"
    extract(cohort / "slides", store, CFG)
    extract(cohort / "cells", store, CFG.model_copy(update={"source": "cells"}))
    return store


def as_schema_1(current: Path, out: Path) -> Path:
    """The same store in the layout the previous mil wrote (files as its writers made them)."""
    shutil.copytree(current, out)
    store = BagStore(out)
    export_qc(store, out / "qc.files")
    runs = store.runs()
    for key in store.keys():
        os.rename(out / "bags" / key, out / key)
    for name in ("bags", "qc", "runs", "tmp"):
        shutil.rmtree(out / name)
    os.rename(out / "qc.files", out / "qc")
    (out / "runs").mkdir()
    for name, record in runs.items():
        (out / "runs" / f"{name}.json").write_text(json.dumps(record, indent=1))
    (out / ".tmp" / "P9-host-1-abcd").mkdir(parents=True)
    root = json.loads((out / "zarr.json").read_text())
    root["attributes"]["mil_bagstore"] = 1
    (out / "zarr.json").write_text(json.dumps(root))
    return out


def test_old_layout_refused_with_the_fix(current, tmp_path):
    old = as_schema_1(current, tmp_path / "old.zarr")
    with pytest.raises(
        StoreError, match=r"old layout \(schema 1\); convert it in place with `mil bags upgrade"
    ):
        BagStore(old)
    result = CliRunner().invoke(app, ["bags", "info", str(old)])
    assert isinstance(result.exception, StoreError) and "re-extract into a new store" in str(result.exception)


@pytest.mark.parametrize("killed", [False, True])
def test_upgrade_keeps_everything(current, tmp_path, killed):
    old = as_schema_1(current, tmp_path / "old.zarr")
    if killed:  # as a kill midway leaves it: QC folder renamed, one bag moved, schema still 1
        os.rename(old / "qc", old / "qc.v1")
        (old / "bags").mkdir()
        (old / "bags" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
        os.rename(old / "P001", old / "bags" / "P001")
    result = CliRunner().invoke(app, ["bags", "upgrade", str(old)])
    assert result.exit_code == 0, result.output
    if not killed:
        assert "upgraded" in result.output and "4 bags, 4 QC records, 2 run records" in result.output
    new, ref = BagStore(old), BagStore(current)
    assert new.slide_ids() == ref.slide_ids() and new.validate() == ref.validate()
    for sid in ref.slide_ids():
        assert np.array_equal(new.read(sid).features, ref.read(sid).features)
        assert new.meta(sid) == ref.meta(sid)
        a, b = new.read_qc(sid), ref.read_qc(sid)
        assert a.summary == b.summary
        assert (a.thumbnail is None) == (b.thumbnail is None)
        if b.thumbnail is not None:
            assert np.array_equal(a.thumbnail, b.thumbnail)  # the PNG was lossless
    assert new.runs() == ref.runs()
    assert not (old / ".tmp").exists() and not (old / "qc.v1").exists()
    assert [p for p in plain_zarr_walk(old) if "/" not in p] == ["bags", "qc", "runs", "tmp"]
    again = CliRunner().invoke(app, ["bags", "upgrade", str(old)])
    assert again.exit_code == 0 and "nothing to do" in again.output
