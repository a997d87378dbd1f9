"""The engine choice without Ray: Ray options need `--engine ray`, `--engine ray` without the extra is one line,
and object-store URLs are refused as stores (a commit is an atomic folder rename, which they lack)."""

from __future__ import annotations

import sys

import pytest

from features.bagstore import BagStore
from features.core.errors import ConfigError, StoreError
from features.pipeline.engines import LocalEngine, create_engine
from mil.cli import main
from mil.training.engines import LocalFoldEngine, create_fold_engine
from tests.extract_fixtures import synth_cohort


def one_line_error(capsys, *args) -> str:
    """`mil ARGS` as the console script runs it: exit code 2 and one red line."""
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error:"), out
    return lines[0]


@pytest.fixture
def no_ray(monkeypatch):
    """As if the [ray] extra were not installed: `import ray` fails."""
    for name in [n for n in sys.modules if n == "ray" or n.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)


def test_engine_names_and_options():
    assert isinstance(create_engine("local"), LocalEngine)
    assert isinstance(create_fold_engine("local"), LocalFoldEngine)
    with pytest.raises(ConfigError, match="--loaders.*add --engine ray"):
        create_engine("local", loaders=2)
    with pytest.raises(ConfigError, match="--address.*add --engine ray"):
        create_fold_engine("local", address="auto")
    with pytest.raises(ConfigError, match="choose one of local, ray"):
        create_engine("dask")


def test_engine_ray_without_the_extra_is_one_line(no_ray, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"needs Ray.*pip install -e '\.\[ray\]'"):
        create_engine("ray")
    with pytest.raises(ConfigError, match="needs Ray"):
        create_fold_engine("ray")
    assert "[ray]" in one_line_error(
        capsys, "extract", tmp_path, "-o", tmp_path / "b.zarr", "--engine", "ray"
    )
    train = ["train", "--bags", tmp_path, "--labels", tmp_path / "l.csv", "-o", tmp_path / "r"]
    assert "[ray]" in one_line_error(capsys, *train, "--engine", "ray")


def test_object_store_urls_are_refused(tmp_path, capsys, monkeypatch):
    for url in ("s3://bucket/bags.zarr", "gs://bucket/bags.zarr", "file:///tmp/bags.zarr"):
        with pytest.raises(StoreError, match="atomic folder rename"):
            BagStore(url, "a")
    monkeypatch.chdir(tmp_path)  # before the check, `-o s3://b/x` made a local folder `s3:/b/x` here
    cells = synth_cohort(tmp_path / "cohort", patients=1, cells=3, layout="cells") / "cells"
    line = one_line_error(capsys, "extract", cells, "-o", "s3://bucket/bags.zarr", "--workers", "0")
    assert "s3:" in line and "object store" in line
    labels = tmp_path / "labels.csv"
    labels.write_text("patient_id,diagnosis\nP1,AML\n")
    assert "object store" in one_line_error(
        capsys, "train", "--bags", "s3://b/bags.zarr", "--labels", labels, "-o", "run"
    )
    assert not (tmp_path / "s3:").exists()
