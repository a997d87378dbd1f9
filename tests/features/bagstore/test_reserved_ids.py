"""Slide ids that name the store's own entries (`zarr.json`, `qc`, `runs`, `.tmp`, `bags`, `..`), from every
source that can express them: extracted, re-extracted with overwrite and rerun, they stay ordinary slides.

Schema 1 kept bags beside the store's own entries: a manifest row `zarr.json` with `--overwrite` made the
store unreadable, `qc` replaced every slide's QC files and `runs` the run history; without `--overwrite` the
run failed with a misleading "bag exists"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from features.bagstore import BagStore
from features.pipeline.config import ExtractConfig
from features.pipeline.extract import extract
from tests.extract_fixtures import synth_cohort
from tests.features.bagstore.plain_zarr import plain_zarr_walk
from tests.features.pipeline.test_h5_import import write_trident

CFG = ExtractConfig(encoder="cytomorph", workers=0, qc_thumbnail_px=128)
ALL = ["zarr.json", "qc", "runs", ".tmp", "bags", ".."]
AS_NAMES = ["zarr.json", "qc", "runs", "bags"]  # file and folder names: dot names are hidden, not data


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return synth_cohort(tmp_path_factory.mktemp("cohort"), patients=2, slide_px=1000)


def _manifest(cohort: Path, out: Path) -> tuple[Path, list[str]]:
    out.mkdir()
    # each row a folder of its own: the store already holds P001 and P002, and one source under two ids is
    # refused (features.pipeline.provenance.same_source_elsewhere)
    for i in range(len(ALL)):
        shutil.copytree(cohort / "cells" / f"P00{1 + i % 2}", out / f"row{i}")
    rows = [f"{sid},{out / f'row{i}'}" for i, sid in enumerate(ALL)]
    (out / "manifest.csv").write_text("slide_id,path\n" + "\n".join(rows) + "\n")
    return out / "manifest.csv", ALL


def _cells(cohort: Path, out: Path) -> tuple[Path, list[str]]:
    for name in AS_NAMES:
        shutil.copytree(cohort / "cells" / "P001", out / name)
    return out, AS_NAMES


def _slides(cohort: Path, out: Path) -> tuple[Path, list[str]]:
    out.mkdir()
    for name in AS_NAMES:
        shutil.copy(cohort / "slides" / "P001_s1.tiff", out / f"{name}.tiff")
    return out, AS_NAMES


def _h5(cohort: Path, out: Path) -> tuple[Path, list[str]]:
    out.mkdir()
    for i, name in enumerate(AS_NAMES):
        write_trident(out / f"{name}.h5", seed=i)
    return out, AS_NAMES


@pytest.mark.parametrize(
    "source", [_manifest, _cells, _slides, _h5], ids=["manifest", "cells", "slides", "h5"]
)
def test_reserved_ids_are_ordinary_slides(source, cohort, tmp_path):
    store = tmp_path / "bags.zarr"
    others = []
    if source is not _h5:  # slides already in the store: their bags, QC and run history must survive
        extract(cohort / "cells", store, CFG)
        others = ["P001", "P002"]
    input, ids = source(cohort, tmp_path / "input")
    first = extract(input, store, CFG)
    assert sorted(o.slide_id for o in first.outcomes if o.status == "written") == sorted(ids)
    again = extract(input, store, CFG)  # no "bag exists": each id finds its own bag
    assert {o.status for o in again.outcomes} == {"skipped"}
    redone = extract(input, store, CFG, overwrite=True)
    assert sorted(o.slide_id for o in redone.outcomes if o.status == "written") == sorted(ids)

    bags = BagStore(store)
    assert sorted(bags.slide_ids()) == sorted(ids + others)
    assert all(problems == [] for problems in bags.validate().values())
    for sid in ids + others:
        assert bags.meta(sid).slide_id == sid and len(bags.read(sid).features) == bags.meta(sid).n_instances
    if source is not _h5:  # imported features have no QC
        assert sorted(
            bags.read_qc_by_key(k, images=False).summary["slide_id"] for k in bags.qc_keys()
        ) == sorted(ids + others)
    assert len(bags.runs()) == 3 + bool(others)
    walked = plain_zarr_walk(store)
    assert [p for p in walked if "/" not in p] == ["bags", "qc", "runs", "tmp"]
    assert sorted(p.split("/")[1] for p in walked if p.count("/") == 1 and p.startswith("bags/")) == sorted(
        bags.keys()
    )
