"""End-to-end contracts of generate_cohort: files, truth vs pixels, OpenSlide, determinism, safe overwrite."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from features.core.errors import ConfigError, InputError
from features.synth import SynthConfig, generate_cohort
from features.synth.cohort import LABEL_COLUMNS

CONFIG = SynthConfig(patients=6, layout="both", sites=3, seed=3, cells_per_patient=40, slide_px=1500)


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "cohort"
    events = []
    summary = generate_cohort(out, CONFIG, progress=lambda event, **info: events.append(event))
    assert summary.patients == 6 and summary.slides == 6 and summary.crops == 6 * 40
    assert events[0] == "plan" and events[-1] == "done" and events.count("job") == 6 + 6 + 1
    return out


def test_layout_and_labels(cohort):
    assert sorted(p.name for p in cohort.iterdir()) == [
        "cells",
        "cohort.json",
        "labels.csv",
        "slides",
        "truth",
    ]
    assert not list(cohort.parent.glob(".cohort.tmp~*")), "the temporary folder must be gone"
    with (cohort / "labels.csv").open() as fh:
        assert fh.readline().strip().split(",") == LABEL_COLUMNS
    rows = _rows(cohort / "labels.csv")
    patients = sorted({r["patient_id"] for r in rows})
    assert len(patients) == 6
    # both layouts: the crop folder (slide_id = patient_id) and the slide <patient_id>_s1
    assert {r["slide_id"] for r in rows} == set(patients) | {f"{p}_s1" for p in patients}
    for r in rows:
        assert r["genetic"] != "PML::RARA" or r["diagnosis"] == "APL"
        assert (r["npm1"] == "") == (r["diagnosis"] != "AML")
    meta = json.loads((cohort / "cohort.json").read_text())
    assert meta["seed"] == 3 and meta["mpp"] == 0.25 and len(meta["sites"]) == 3
    assert SynthConfig(**meta["config"]) == CONFIG  # knobs left at their defaults are not recorded
    assert {p["patient_id"] for p in meta["patients"]} == set(patients)


def test_crop_truth_matches_files(cohort):
    for folder in sorted((cohort / "cells").iterdir()):
        truth = _rows(cohort / "truth" / "cells" / f"{folder.name}.csv")
        assert sorted(r["file"] for r in truth) == sorted(p.name for p in folder.glob("*.png"))
        assert len(truth) == 40
        img = np.asarray(Image.open(folder / truth[0]["file"]))
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8
        assert all(r["nucleated"] == "1" for r in truth)


def test_diagnostic_flags_follow_the_patient(cohort):
    labels = {r["patient_id"]: r for r in _rows(cohort / "labels.csv")}
    for pid, lab in labels.items():
        for r in _rows(cohort / "truth" / "cells" / f"{pid}.csv") + _rows(
            cohort / "truth" / "slides" / f"{pid}_s1.csv"
        ):
            if lab["diagnosis"] in ("healthy", "AA"):
                assert r["diagnostic"] == "0"
            if r["cell_type"] in ("abnormal_promyelocyte", "faggot_cell"):
                assert lab["diagnosis"] == "APL" and r["diagnostic"] == "1" and r["defines"] == "APL"
            if r["cell_type"] == "myeloblast":
                assert r["diagnostic"] == ("1" if lab["diagnosis"] == "AML" else "0")
            if r["nucleated"] == "0":
                assert r["diagnostic"] == "0" and r["cell_type"] in ("rbc", "platelet")


def test_slides_open_in_openslide_with_mpp(cohort):
    openslide = pytest.importorskip("openslide")
    for path in sorted((cohort / "slides").glob("*.tiff")):
        slide = openslide.OpenSlide(str(path))
        assert slide.dimensions == (1500, 1500)
        assert slide.level_count > 1
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)
        assert float(slide.properties["openslide.mpp-y"]) == pytest.approx(0.25)
        assert slide.level_downsamples[1] == pytest.approx(2.0)


def _min_green_near(img: np.ndarray, x: int, y: int, radius: int) -> int:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    inside = (yy**2 + xx**2 <= radius**2) & (y + yy >= 0) & (y + yy < img.shape[0])
    inside &= (x + xx >= 0) & (x + xx < img.shape[1])
    return int(img[(y + yy)[inside], (x + xx)[inside], 1].min())


def test_slide_truth_lands_on_nuclei_and_red_cells_are_not_dark(cohort):
    """Read back through OpenSlide: spread nucleated cells have dark chromatin near their truth centre, red
    cells at theirs do not (a detector can tell them apart by colour)."""
    openslide = pytest.importorskip("openslide")
    nuclei, reds, regions = [], [], set()
    for path in sorted((cohort / "slides").glob("*.tiff")):
        slide = openslide.OpenSlide(str(path))
        img = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))
        for r in _rows(cohort / "truth" / "slides" / f"{path.stem}.csv"):
            regions.add(r["region"])
            if r["region"] != "monolayer":
                continue
            radius = max(2, int(0.5 * float(r["diameter_um"]) / 2 / 0.25))
            value = _min_green_near(img, int(r["x"]), int(r["y"]), radius)
            (nuclei if r["nucleated"] == "1" else reds if r["cell_type"] == "rbc" else []).append(value)
    assert {"particle", "monolayer", "hemodiluted"} <= regions
    assert len(nuclei) > 50 and len(reds) > 500
    assert np.mean(np.array(nuclei) < 110) > 0.95
    assert np.mean(np.array(reds) > 110) > 0.95


def test_same_seed_same_bytes(tmp_path):
    """Labels, truth, cohort.json and also the PNG and TIFF bytes repeat exactly for a seed."""
    config = SynthConfig(patients=3, layout="both", sites=2, seed=11, cells_per_patient=10, slide_px=1024)
    generate_cohort(tmp_path / "a", config)
    generate_cohort(tmp_path / "b", config)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert any(f.suffix == ".tiff" for f in files) and any(f.suffix == ".png" for f in files)
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    other = tmp_path / "c"
    generate_cohort(other, config.model_copy(update={"seed": 12}))
    assert (other / "truth" / "cells" / "P001.csv").read_bytes() != (
        tmp_path / "a" / "truth" / "cells" / "P001.csv"
    ).read_bytes()


def test_workers_do_not_change_the_output(tmp_path):
    config = SynthConfig(patients=3, layout="cells", seed=9, cells_per_patient=8, sites=2)
    generate_cohort(tmp_path / "one", config)
    generate_cohort(tmp_path / "two", config, workers=2)
    for p in (tmp_path / "one").rglob("*"):
        if p.is_file():
            assert p.read_bytes() == (tmp_path / "two" / p.relative_to(tmp_path / "one")).read_bytes()


def test_overwrite_rules(tmp_path):
    small = SynthConfig(patients=2, layout="cells", cells_per_patient=3, seed=1)
    out = tmp_path / "c"
    generate_cohort(out, small)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="not empty") as err:
        generate_cohort(out, small.model_copy(update={"seed": 2}))
    assert "\n" not in str(err.value)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    generate_cohort(out, small.model_copy(update={"seed": 2, "patients": 1}), overwrite=True)
    assert sorted(p.name for p in (out / "cells").iterdir()) == ["P001"], "the old cohort is replaced cleanly"
    assert json.loads((out / "cohort.json").read_text())["seed"] == 2
    # a folder that is not a cohort is never replaced, even with overwrite
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a synthetic cohort"):
        generate_cohort(precious, small, overwrite=True)
    assert (precious / "data.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="is a file"):
        generate_cohort(precious / "data.txt", small)
    with pytest.raises(InputError, match="not a folder"):
        generate_cohort(precious / "data.txt" / "sub", small)
    with pytest.raises(ConfigError):
        generate_cohort(tmp_path / "w", small, workers=0)
    assert not list(tmp_path.glob(".*.tmp~*"))


def test_failure_midway_leaves_out_untouched(tmp_path, monkeypatch):
    small = SynthConfig(patients=3, layout="cells", cells_per_patient=2, seed=1)
    out = tmp_path / "c"
    generate_cohort(out, small)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    import features.synth.generate as gen

    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args)

    real = gen.write_patient_cells
    monkeypatch.setattr(gen, "write_patient_cells", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_cohort(out, small.model_copy(update={"seed": 5}), overwrite=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob(".*.tmp~*")) and not list(tmp_path.glob(".*.old~*"))
