"""A store written by a real `mil extract` (bags, QC with overviews and maps, run records, a failed slide, a
killed writer's leftovers) opens in plain zarr without one warning, and reruns keep it so."""

from __future__ import annotations

import os
import shutil
import socket

import numpy as np
from typer.testing import CliRunner

from features.bagstore import BagStore
from mil.cli import app
from tests.extract_fixtures import synth_slides
from tests.features.bagstore.plain_zarr import plain_zarr_walk
from tests.smear_painter import write_tiff

DEAD_PID = 2**22 + 777


def _leftovers(store) -> list:
    """What SIGKILLs leave in staging: a half-written bag (a chunk and a zarr temp file missing their
    metadata), a replaced bag aside, a run record's metadata file, a QC group half built."""
    host = socket.gethostname()
    tmp = store / "tmp"
    half = tmp / "bags" / f"P002_s1~new~{host}~{DEAD_PID}~aaaa0001"
    shutil.copytree(store / "bags" / "P001_s1", half)
    (half / "coords" / "zarr.json").unlink()
    (half / "obs" / "zarr.json.0123abcd.partial").write_bytes(b"{")
    aside = tmp / "bags" / f"P001_s1~old~{host}~{DEAD_PID}~aaaa0002"
    shutil.copytree(store / "bags" / "P001_s1", aside)
    record = tmp / "runs" / f"20260101T000000.000Z-shard0of1~new~{host}~{DEAD_PID}~aaaa0003"
    record.write_text('{"zarr_format": 3, "node_type": "gr')
    qc = tmp / "qc" / f"P001_s1~new~{host}~{DEAD_PID}~aaaa0004"
    (qc / "thumbnail" / "c").mkdir(parents=True)
    return [half, aside, record, qc]


def test_extracted_store_is_a_clean_zarr_hierarchy(tmp_path):
    slides = synth_slides(tmp_path / "cohort", patients=2, slide_px=1000)
    write_tiff(slides / "blank.tiff", np.full((768, 768, 3), 245, np.uint8), mpp=0.25)  # no cells: fails
    store = tmp_path / "bags.zarr"
    args = [
        "extract",
        str(slides),
        "-o",
        str(store),
        "--workers",
        "0",
        "--set",
        "extract.qc_thumbnail_px=128",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 3, first.output  # partial failure: the blank slide
    bags = BagStore(store)
    assert bags.slide_ids() == ["P001_s1", "P002_s1"]
    blank = bags.read_qc("blank")
    assert blank.summary["status"] == "failed" and "no nucleated cells" in blank.summary["error"]
    assert blank.thumbnail.shape[2] == 3  # the overview drawn when it came out empty is kept
    assert (
        set(blank.maps) == {"regions", "focus", "in_focus"} and blank.map_attrs["regions"]["downsample"] > 0
    )
    good = bags.read_qc("P001_s1")
    assert good.summary["status"] == "cropped" and good.maps["regions"].dtype == np.uint8

    leftovers = _leftovers(store)
    walked = plain_zarr_walk(store)
    assert [p for p in walked if "/" not in p] == ["bags", "qc", "runs", "tmp"]
    assert {p for p in walked if p.count("/") == 1} == {
        "bags/P001_s1",
        "bags/P002_s1",
        "qc/P001_s1",
        "qc/P002_s1",
        "qc/blank",
        f"runs/{next(iter(bags.runs()))}",
    }
    assert {"qc/blank/thumbnail", "qc/blank/regions", "bags/P001_s1/obs/region"} <= set(walked)
    assert len(bags.pending()) == 4

    os.utime(store / "bags" / "P001_s1" / "zarr.json", ns=(1, 1))
    rerun = CliRunner().invoke(app, args)
    assert rerun.exit_code == 3, rerun.output
    assert not any(p.exists() for p in leftovers) and bags.pending() == []
    assert (store / "bags" / "P001_s1" / "zarr.json").stat().st_mtime_ns == 1  # not rewritten, not replaced
    assert len(bags.runs()) == 2
    top = {p for p in walked if p.count("/") <= 1}
    assert {p for p in plain_zarr_walk(store) if p.count("/") <= 1} == top | {f"runs/{list(bags.runs())[1]}"}
