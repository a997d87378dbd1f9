"""`extract` on microscope fields: one bag per patient, mpp given or from red cells, per-field QC, bad fields
left out one line each, manifests of fields, reruns, and crops re-read by the galleries."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from features.bagstore import BagStore
from features.pipeline.config import ExtractConfig
from features.pipeline.extract import extract
from features.smear.detect import match_points
from features.synth import SynthConfig, generate_cohort

CFG = ExtractConfig(encoder="cytomorph", workers=0, batch_size=16)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """3 patients x 3 fields of 480 x 360 px at 0.25 µm/px (120 x 90 µm), one site."""
    out = tmp_path_factory.mktemp("fields_cohort")
    generate_cohort(
        out, SynthConfig(patients=3, sites=1, seed=8, layout="fields", fields_per_patient=3, field_px=480)
    )
    return out


@pytest.fixture(scope="module")
def estimated(cohort, tmp_path_factory):
    store = tmp_path_factory.mktemp("stores") / "fields.zarr"
    events = []
    summary = extract(cohort / "fields", store, CFG, progress=lambda e, **i: events.append((e, i)))
    return store, summary, events


def test_one_bag_per_patient_with_fields_coords_and_mpp_from_red_cells(cohort, estimated):
    store_path, summary, events = estimated
    assert [o.status for o in summary.outcomes] == ["written"] * 3
    assert not [e for e, _ in events if e == "slide_notice"]
    store = BagStore(store_path)
    assert store.validate() == {p: [] for p in ("P001", "P002", "P003")}
    tp = fp = fn = 0
    for pid in store.slide_ids():
        bag, meta = store.read(pid), store.meta(pid)
        assert meta.source_kind == "fields" and meta.mpp_source == "red cells"
        assert abs(meta.mpp / 0.25 - 1) < 0.05 and meta.crop_um == 24.0
        assert set(bag.obs) == {"in_focus", "area_um2", "mpp"} and bag.obs["in_focus"].all()
        assert set(bag.paths) <= {"1.jpg", "2.jpg", "3.jpg"}
        assert (bag.coords >= 0).all() and (bag.coords[:, 0] < 480).all() and (bag.coords[:, 1] < 360).all()
        estimate = meta.qc["mpp_estimate"]
        assert estimate["method"] == "red cells" and estimate["red_cells"] >= 20
        assert estimate["mpp_ci95"][0] < estimate["mpp"] < estimate["mpp_ci95"][1]
        qc = BagStore(store_path).read_qc(pid, images=False).summary
        assert qc["status"] == "cropped" and qc["fields_used"] == 3 and qc["mpp_estimate"] == estimate
        rows = {r["file"]: r for r in qc["fields"]}
        assert all(r["status"] == "used" and r["mpp_source"] == "red cells" for r in rows.values())
        assert sum(r["cells"] for r in rows.values()) == meta.n_instances
        truth = pd.read_csv(cohort / "truth" / "fields" / f"{pid}.csv")
        truth = truth[truth["nucleated"] == 1]
        for name in ("1.jpg", "2.jpg", "3.jpg"):
            mine = bag.paths == name
            t = truth[truth["file"] == name]
            counts = match_points(bag.coords[mine], t[["x", "y"]].to_numpy(), 6.0 / 0.25)
            tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
    assert tp / (tp + fn) >= 0.9 and tp / (tp + fp) >= 0.9, (tp, fp, fn)


def test_given_mpp_is_used_and_rerun_skips(cohort, tmp_path):
    store = tmp_path / "given.zarr"
    cfg = CFG.model_copy(update={"mpp": 0.25, "max_instances": 5})
    summary = extract(cohort / "fields", store, cfg)
    assert summary.count("written") == 3
    meta = BagStore(store).meta("P001")
    assert meta.mpp == 0.25 and meta.mpp_source == "user" and meta.n_instances == 5
    assert "mpp_estimate" not in meta.qc and meta.settings["subsample"]["kept"] == 5
    again = extract(cohort / "fields", store, cfg)
    assert again.count("skipped") == 3 and again.count("written") == 0


def test_bad_fields_are_one_line_each_and_the_rest_is_kept(cohort, tmp_path):
    patient = tmp_path / "in" / "P1"
    shutil.copytree(cohort / "fields" / "P001", patient)
    rgb = np.asarray(Image.open(patient / "1.jpg"))
    Image.fromarray(rgb[:20, :24]).save(patient / "tiny.png")  # 5 x 6 µm: smaller than a cell
    (patient / "broken.jpg").write_bytes(b"not a jpeg at all")
    noise = np.random.default_rng(0).normal(0, 1.5, (360, 480, 3))
    Image.fromarray(np.clip(np.array([236, 231, 241]) + noise, 0, 255).astype(np.uint8)).save(
        patient / "empty.png"
    )
    Image.fromarray(rgb).convert("L").save(patient / "grey.png")
    events = []
    summary = extract(tmp_path / "in", tmp_path / "s.zarr", CFG.model_copy(update={"source": "fields"}),
                      progress=lambda e, **i: events.append((e, i)))  # fmt: skip
    notices = [i["message"] for e, i in events if e == "slide_notice"]
    assert len(notices) == 4 and all("\n" not in n for n in notices)
    expected = {
        "broken.jpg": "cannot read image",
        "grey.png": "grayscale image",
        "empty.png": "empty field",
        "tiny.png": "smaller than one cell",
    }
    for name, reason in expected.items():
        assert any(n.startswith(str(patient / name)) and reason in n for n in notices), (name, notices)
    (outcome,) = summary.outcomes
    assert outcome.status == "written" and outcome.message == "4 input(s) left out"
    assert outcome.detail.count("\n") == 3
    bag = BagStore(tmp_path / "s.zarr").read("P1")
    assert set(bag.paths) <= {"1.jpg", "2.jpg", "3.jpg"} and len(bag.paths) > 0
    qc = BagStore(tmp_path / "s.zarr").read_qc("P1", images=False).summary
    status = {r["file"]: r.get("status") for r in qc["fields"]}
    assert qc["fields_skipped"] == 4 and all(status[n] == "skipped" for n in expected)


def test_too_few_red_cells_refuses_the_patient_in_one_line(tmp_path):
    patient = tmp_path / "in" / "P1"
    patient.mkdir(parents=True)
    rgb = np.full((360, 480, 3), (236, 231, 241), np.uint8)
    rgb[150:200, 200:250] = (120, 80, 170)  # one purple blob, no red cells
    Image.fromarray(rgb).save(patient / "1.png")
    summary = extract(tmp_path / "in", tmp_path / "s.zarr", CFG.model_copy(update={"source": "fields"}))
    (outcome,) = summary.outcomes
    assert (
        outcome.status == "failed" and "too few red cells" in outcome.message and "--mpp" in outcome.message
    )
    assert "\n" not in outcome.message


def test_manifest_of_fields_with_per_row_mpp(cohort, tmp_path):
    fields = cohort / "fields"
    manifest = tmp_path / "m.csv"
    rows = [f"{p}-{n},{p},{fields / p / n},0.25" for p in ("P001", "P002") for n in ("1.jpg", "2.jpg")]
    manifest.write_text("slide_id,patient_id,path,mpp\n" + "\n".join(rows) + "\n")
    summary = extract(manifest, tmp_path / "m.zarr", CFG)
    assert summary.count("written") == 2
    store = BagStore(tmp_path / "m.zarr")
    meta = store.meta("P001")
    assert meta.source_kind == "fields" and meta.mpp == 0.25 and meta.mpp_source == "manifest"
    # paths are relative to the deepest folder holding all the patient's fields
    assert meta.source_path == str((fields / "P001").resolve())
    assert set(store.read("P001").paths) <= {"1.jpg", "2.jpg"}


def test_galleries_reread_field_crops_at_each_fields_mpp(estimated):
    from mil.explain.gallery import read_cells

    store = BagStore(estimated[0])
    meta, bag = store.meta("P002"), store.read("P002", obs=False)
    crops = read_cells(meta, bag, np.arange(min(4, meta.n_instances)), display_px=64)
    assert crops.shape == (min(4, meta.n_instances), 64, 64, 3)
    # a nucleated cell sits at the centre of each crop: darker than the crop's border
    centre = crops[:, 24:40, 24:40].mean(axis=(1, 2, 3))
    border = np.concatenate([crops[:, :4].reshape(len(crops), -1), crops[:, -4:].reshape(len(crops), -1)], 1)
    assert (centre < border.mean(axis=1)).all()


def test_run_scope_pools_red_cells_over_patients(cohort, estimated, tmp_path):
    """A patient whose own red cells are too few is refused; with mpp_scope "run" the cohort's are pooled."""
    per_patient = max(m.qc["mpp_estimate"]["red_cells"] for m in BagStore(estimated[0]).metas())
    strict = {"min_red_cells": per_patient + 1}
    patient_cfg = CFG.model_copy(update={"fields": CFG.fields.model_copy(update=strict)})
    refused = extract(cohort / "fields", tmp_path / "p.zarr", patient_cfg)
    assert refused.count("failed") == 3 and all("too few red cells" in o.message for o in refused.outcomes)
    run_cfg = CFG.model_copy(update={"fields": CFG.fields.model_copy(update={**strict, "mpp_scope": "run"})})
    pooled = extract(cohort / "fields", tmp_path / "r.zarr", run_cfg)
    assert pooled.count("written") == 3
    metas = BagStore(tmp_path / "r.zarr").metas()
    assert len({m.mpp for m in metas}) == 1 and abs(metas[0].mpp / 0.25 - 1) < 0.05
    assert all(m.mpp_source == "red cells (run)" and m.qc["mpp_estimate"]["scope"] == "run" for m in metas)
    assert metas[0].qc["mpp_estimate"]["red_cells"] > per_patient
