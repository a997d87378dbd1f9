"""`mil bags info|validate|qc` on stores built directly through the BagStore API (no extraction needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from features.bagstore import Bag, BagMeta, BagStore, EncoderIdentity, SlideQC, bag_key
from features.core.errors import InputError, StoreError
from mil.cli import app

ENC = EncoderIdentity("cytomorph", "none", 4, "cells")


def _put(store: BagStore, slide_id: str, features: np.ndarray, patient: str = "P1") -> None:
    n = len(features)
    bag = Bag(features=features.astype(np.float32), coords=np.zeros((n, 2), np.int64))
    store.write(bag, BagMeta(slide_id, patient, n, ENC, f"/data/{slide_id}.svs", "slide", mpp=0.25))


@pytest.fixture
def store(tmp_path):
    s = BagStore(tmp_path / "bags.zarr", "a", ENC)
    _put(s, "slide A", np.ones((5, 4)), "P1")
    _put(s, "B", np.ones((3, 4)), "P2")
    return s


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_info_lists_bags_totals_and_pending(store):
    (store.path / "tmp" / "bags" / "C~new~host~1~abcd").mkdir(parents=True)
    result = run("bags", "info", store.path)
    assert result.exit_code == 0, result.output
    assert "slide A" in result.output and "cytomorph" in result.output
    assert "2 bags, 2 patients, 8 instances" in result.output
    assert "1 pending tmp entry" in result.output and "C~new~host~1~abcd" in result.output


def test_validate_clean_then_problems(store):
    ok = run("bags", "validate", store.path, "--deep")
    assert ok.exit_code == 0 and "ok 2 bags" in ok.output
    bad = np.ones((4, 4))
    bad[1, 2] = np.nan
    _put(store, "C", bad)
    _put(store, "D", np.ones((2, 4)))
    meta = store.path / "bags" / "D" / "zarr.json"
    meta.write_text(meta.read_text().replace('"n_instances": 2', '"n_instances": 7'))
    result = run("bags", "validate", store.path, "--deep")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["C: 1 instances with NaN/inf", "D: 2 feature rows, provenance says 7"]
    # Without --deep the features are not decoded: the NaN goes unseen, the provenance mismatch does not.
    quick = run("bags", "validate", store.path)
    assert [line for line in quick.output.splitlines() if line.strip()] == [
        "D: 2 feature rows, provenance says 7"
    ]


def test_not_a_store(tmp_path):
    result = run("bags", "info", tmp_path)
    assert isinstance(result.exception, StoreError) and "not a bag store" in str(result.exception)


def test_qc_files_for_people(store, tmp_path):
    thumb = np.zeros((8, 12, 3), np.uint8)
    thumb[..., 0] = 200
    store.write_qc("slide A", SlideQC({"status": "cropped", "nucleated_cells": 5}, thumb))
    store.write_qc("B", SlideQC({"status": "failed", "error": "no nucleated cells"}))
    out = tmp_path / "qc"
    result = run("bags", "qc", store.path, "-o", out)
    assert result.exit_code == 0, result.output
    assert "2 QC summaries and 1 overviews written" in result.output
    key = bag_key("slide A")
    assert sorted(p.name for p in out.iterdir()) == sorted(["B.json", f"{key}.json", f"{key}.png"])
    assert json.loads((out / f"{key}.json").read_text()) == {
        "slide_id": "slide A",
        "status": "cropped",
        "nucleated_cells": 5,
    }
    assert np.array_equal(np.asarray(Image.open(out / f"{key}.png")), thumb)
    again = run("bags", "qc", store.path, "-o", out)
    assert isinstance(again.exception, InputError) and "3 QC file(s) exist" in str(again.exception)
    assert run("bags", "qc", store.path, "-o", out, "--overwrite").exit_code == 0


def test_info_lists_the_sound_bags_and_names_a_damaged_one(store):
    (store.path / "bags" / "B" / "zarr.json").write_text('{"zarr_format": 3, "attr')
    result = run("bags", "info", store.path)
    assert result.exit_code == 1, result.output
    assert "slide A" in result.output and "1 bags, 1 patients, 5 instances; 1 damaged" in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("damaged bag:")]
    assert "bags/B/zarr.json" in line and "not valid JSON" in line
    assert line.endswith("rerun mil extract on it (it re-extracts damaged bags)")
    validate = run("bags", "validate", store.path)  # the same damage, the same fix, the same exit code
    assert validate.exit_code == 1 and "rerun mil extract on it" in validate.output
    assert "remove the folder" not in validate.output


LOST = {  # what is done to bag B's files (None: deleted), what `bags info` says
    "a features chunk lost": (
        "features/c/0/0",
        None,
        "features has lost 1 of 1 chunk(s) (first: features/c/0/0",
    ),
    "a coords chunk lost": ("coords/c/0/0", None, "coords has lost 1 of 1 chunk(s) (first: coords/c/0/0)"),
    "the features metadata lost": ("features/zarr.json", None, "has no features array"),
    "the features metadata not JSON": ("features/zarr.json", '{"shape": [3', "features metadata unreadable"),
}


@pytest.mark.parametrize("lost", sorted(LOST))
def test_info_names_a_bag_that_lost_a_file(store, lost):
    """A lost chunk reads back as zeros: `bags info` looks for every chunk on disk (without reading it) and
    names the bag with the fix a rerun of `mil extract` applies, as `bags validate` does."""
    path, text, reason = LOST[lost]
    target = store.path / "bags" / "B" / path
    target.unlink() if text is None else target.write_text(text)
    result = run("bags", "info", store.path)
    assert result.exit_code == 1, result.output
    assert "slide A" in result.output and "1 bags, 1 patients, 5 instances; 1 damaged" in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("damaged bag:")]
    assert "bag 'B'" in line and reason in line, line
    assert line.endswith("rerun mil extract on it (it re-extracts damaged bags)"), line
    validate = run("bags", "validate", store.path)
    assert validate.exit_code == 1 and validate.output.startswith("B: "), validate.output
    assert "rerun mil extract on it (it re-extracts damaged bags)" in validate.output
    assert "--overwrite" not in validate.output


def test_info_looks_for_chunks_without_reading_them(store):
    """A chunk that is there but damaged is found by `bags validate --deep`, not by `bags info`."""
    chunk = store.path / "bags" / "B" / "features" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:5])
    assert run("bags", "info", store.path).exit_code == 0
    deep = run("bags", "validate", store.path, "--deep")
    assert deep.exit_code == 1 and "features does not decode" in deep.output


def test_qc_with_nothing_to_write_says_so(store, tmp_path):
    out = tmp_path / "qc"
    result = run("bags", "qc", store.path, "-o", out)
    assert result.exit_code == 1, result.output
    assert "nothing written" in result.output and "holds no QC" in result.output
    assert "written to" not in result.output and not out.exists()
