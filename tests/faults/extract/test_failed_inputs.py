"""Bad inputs found while planning, and slides that fail: exit codes, one line each, a QC entry per failure.

A manifest row whose file is missing fails alone, as an unopenable slide in a folder does (exit 3, the other
rows extracted); a malformed manifest or an input that holds nothing to extract is misuse, refused in one line
before any work (exit 2); every failed slide has a QC entry (`status: failed`, the error) that `mil bags qc`
writes out, and a bare failure (the slide never reached QC) never replaces QC that an earlier run completed.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from features.bagstore import BagStore
from tests.faults.extract.conftest import CFG, FAST, cli, error_lines


def _failures(output: str) -> list[str]:
    return [line.strip() for line in output.split("failures (")[1].splitlines()[1:] if line.startswith("  ")]


def test_manifest_row_with_a_missing_file_fails_alone(cohort, tmp_path, ledger):
    slide = cohort / "slides" / "P001_s1.tiff"
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        f"slide_id,path,patient_id,mpp\ngood,{slide},PA,\nmissing,{tmp_path / 'nope.svs'},PC,\n"
    )
    store = tmp_path / "bags.zarr"
    run = cli("extract", manifest, "-o", store, *FAST)
    assert run.traceback is None and run.code == 3, run.output
    assert _failures(run.output) == [
        f"missing: {manifest} row 3: {tmp_path / 'nope.svs'}: file not found; fix the path or remove the row"
    ]
    bags = BagStore(store)
    assert bags.slide_ids() == ["good"]
    qc = bags.read_qc("missing", images=False).summary
    assert qc["status"] == "failed" and "row 3" in qc["error"] and "nope.svs" in qc["error"]
    exported = cli("bags", "qc", store, "-o", tmp_path / "qc")
    assert exported.code == 0, exported.output
    assert sorted(p.name for p in (tmp_path / "qc").iterdir()) == ["good.json", "good.png", "missing.json"]
    # --no-skip-errors: the failed row stops the run before any slide is opened
    stop = cli("extract", manifest, "-o", tmp_path / "stop.zarr", "--no-skip-errors", *FAST)
    assert stop.code == 1 and "stopped at the first failure" in stop.output
    assert BagStore(tmp_path / "stop.zarr").slide_ids() == []
    ledger("input", "a manifest row naming a missing file", "that row fails alone in one line, exit 3")


def test_malformed_manifest_is_refused_in_one_line(cohort, tmp_path, ledger):
    slide = cohort / "slides" / "P001_s1.tiff"
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"slide_id,path,mpp\nA,{slide},\nA,{slide},\nB,{slide},abc\n")
    run = cli("extract", manifest, "-o", tmp_path / "bags.zarr", *FAST)
    assert run.traceback is None and run.code == 2, run.output
    (line,) = error_lines(run)
    assert (
        f"{manifest}: 2 bad rows, fix or remove them: row 3: slide_id 'A' already on row 2; row 4: " in line
    )
    assert "mpp 'abc' is not a number" in line and len(run.output.strip().splitlines()) == 1
    assert not (tmp_path / "bags.zarr").exists()
    ledger("input", "a manifest with a duplicate slide_id and an mpp 'abc'", "refused in one line, exit 2")


BAD_INPUTS = {
    "no such path": lambda tmp: tmp / "nonexistent",
    "empty folder": lambda tmp: _mkdir(tmp / "empty"),
    "unknown suffix": lambda tmp: _write(tmp / "notes.txt", b"hello"),
    "empty manifest": lambda tmp: _write(tmp / "m.csv", b""),
    "header-only manifest": lambda tmp: _write(tmp / "m.csv", b"slide_id,path\n"),
    "Latin-1 manifest": lambda tmp: _write(tmp / "m.csv", b"slide_id,path\nd\xe9,a.svs\n"),
    "bad header": lambda tmp: _write(tmp / "m.csv", b"id,file\nA,a.svs\n"),
}


def _mkdir(path):
    path.mkdir()
    return path


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_found_while_planning_is_misuse(case, tmp_path):
    input = BAD_INPUTS[case](tmp_path)
    run = cli("extract", input, "-o", tmp_path / "bags.zarr", *FAST)
    assert run.traceback is None and run.code == 2, f"{case}: {run.output}"
    (line,) = error_lines(run)
    assert str(input) in line and "nothing extracted" not in run.output, run.output
    assert not (tmp_path / "bags.zarr").exists()  # no store, so no run record left "running"


def test_failed_slides_get_a_qc_entry_that_never_replaces_a_good_one(cohort, tmp_path, ledger):
    slides = tmp_path / "slides"
    slides.mkdir()
    shutil.copy(cohort / "slides" / "P001_s1.tiff", slides / "good.tiff")
    (slides / "garbage.tiff").write_bytes(b"not a slide at all" * 100)  # OpenSlide cannot open it
    store = tmp_path / "bags.zarr"
    first = cli("extract", slides, "-o", store, *FAST)
    assert first.traceback is None and first.code == 3, first.output
    bags = BagStore(store)
    garbage = bags.read_qc("garbage")
    assert garbage.summary["status"] == "failed" and "garbage" in garbage.summary["error"]
    assert garbage.thumbnail is None and garbage.maps == {}
    out = tmp_path / "qc"
    assert cli("bags", "qc", store, "-o", out).code == 0
    assert sorted(p.name for p in out.iterdir()) == ["garbage.json", "good.json", "good.png"]
    assert json.loads((out / "garbage.json").read_text())["status"] == "failed"

    # The good slide's file is broken later, and re-extracted with --overwrite: its bag stands, and so does
    # the QC its successful run wrote (a failure that never reached QC has nothing better to say).
    good = bags.read_qc("good")
    (slides / "good.tiff").unlink()
    (slides / "good.tiff").write_bytes(b"broken later" * 100)
    again = cli("extract", slides, "-o", store, "--overwrite", *FAST)
    assert again.code == 1 and "good" in "".join(_failures(again.output)), again.output
    kept = bags.read_qc("good")
    assert kept.summary == good.summary and np.array_equal(kept.thumbnail, good.thumbnail)
    assert bags.slide_ids() == ["good"]
    ledger(
        "input", "slides that cannot be opened", "a QC entry each (status failed, the error); good QC kept"
    )


def test_a_failure_after_qc_marks_that_qc_failed(cohort, tmp_path, monkeypatch):
    import features.encoders as encoders
    from features.pipeline.extract import extract

    real = encoders.create_encoder

    def nan_encoder(*args, **kwargs):  # the encoder refuses the crops after the job wrote the slide's QC
        enc = real(*args, **kwargs)
        encode = enc.encode

        def nan_encode(images):
            out = encode(images)
            out[:, 0] = np.nan
            return out

        enc.encode = nan_encode
        return enc

    monkeypatch.setattr(encoders, "create_encoder", nan_encoder)
    summary = extract(cohort / "slides" / "P001_s1.tiff", tmp_path / "bags.zarr", CFG)
    assert summary.outcomes[0].status == "failed"
    qc = BagStore(tmp_path / "bags.zarr").read_qc("P001_s1")
    assert qc.summary["status"] == "failed" and "NaN/inf" in qc.summary["error"]
    assert qc.thumbnail is not None and "regions" in qc.maps  # what QC found is kept beside the error
