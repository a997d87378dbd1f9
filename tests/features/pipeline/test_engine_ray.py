"""`extract(..., engine=RayEngine())` on a local 2-CPU Ray: the same store as the local engine, through worker
crashes (SIGKILL of a loader task's process and of the encoder actor's), an unreadable slide failing alone,
reruns skipping committed bags, and the CLI's `--engine ray` (exit 3 with one line per failed slide)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from features.bagstore import BagStore, bag_key
from features.core.errors import InputError
from features.pipeline.config import ExtractConfig
from features.pipeline.engines.ray_extract import RayEngine, RayOptions
from features.pipeline.extract import extract
from mil.cli import app
from tests.extract_fixtures import synth_cohort
from tests.ray_helpers import local_ray, ray_worker_pids  # noqa: F401 - skips the module without Ray

pytestmark = pytest.mark.usefixtures("local_ray")

CFG = ExtractConfig(encoder="cytomorph", workers=0, qc_thumbnail_px=256, batch_size=32)
LOADER, ENCODER = "ray::MapBatches(slide_rows)", "ray::MapWorker(MapBatches(EncoderActor))"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return synth_cohort(tmp_path_factory.mktemp("cohort"), patients=6, slide_px=1800)


@pytest.fixture(scope="module")
def local_stores(cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    return {kind: _extract_local(cohort / kind, root / f"{kind}.zarr") for kind in ("slides", "cells")}


def _extract_local(folder, store):
    summary = extract(folder, store, CFG)
    assert {o.status for o in summary.outcomes} == {"written"}
    return store


def assert_same_store(a, b):
    """Same slides, and per slide the same features (within float tolerance), coords, paths and obs."""
    sa, sb = BagStore(a), BagStore(b)
    assert sa.slide_ids() == sb.slide_ids() and sa.encoder == sb.encoder
    for sid in sa.slide_ids():
        x, y = sa.read(sid), sb.read(sid)
        np.testing.assert_allclose(x.features, y.features, rtol=1e-5, atol=1e-6)
        for name in ("coords", "paths"):
            left, right = getattr(x, name), getattr(y, name)
            assert (left is None) == (right is None) and (left is None or (left == right).all()), name
        assert set(x.obs) == set(y.obs) and all((x.obs[k] == y.obs[k]).all() for k in x.obs)
        assert sa.meta(sid).n_instances == sb.meta(sid).n_instances


class Killer:
    """SIGKILLs, by pid, the first Ray process seen running a loader task, then (once a bag is committed,
    so mid-extraction) the encoder actor's process."""

    def __init__(self):
        self.killed: dict[str, int] = {}
        self.committed = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def progress(self, event, **info):
        if event == "slide_done" and info["outcome"].status == "written":
            self.committed.set()

    def _watch(self):
        while not self.done.is_set() and len(self.killed) < 2:
            if "loader" not in self.killed:
                self._kill("loader", LOADER)
            if "encoder" not in self.killed and self.committed.is_set():
                self._kill("encoder", ENCODER)
            time.sleep(0.01)

    def _kill(self, name, title):
        for pid in ray_worker_pids(title):
            os.kill(pid, signal.SIGKILL)
            self.killed[name] = pid
            return


def test_sigkill_workers_mid_extraction_same_store_as_local(cohort, local_stores, tmp_path):
    store = tmp_path / "ray.zarr"
    killer = Killer()
    killer.thread.start()
    try:
        summary = extract(cohort / "slides", store, CFG, engine=RayEngine(), progress=killer.progress)
    finally:
        killer.done.set()
        killer.thread.join()
    assert set(killer.killed) == {"loader", "encoder"}, f"a kill did not land: {killer.killed}"
    assert [o.status for o in summary.outcomes] == ["written"] * 6, [o.message for o in summary.outcomes]
    bags = BagStore(store)
    landed = sorted(p.name for p in (store / "bags").iterdir() if p.is_dir())
    assert landed == sorted(bag_key(s) for s in bags.slide_ids())  # exactly one bag per slide
    assert bags.validate() == {sid: [] for sid in bags.slide_ids()}
    assert bags.pending() == []  # nothing half written left in staging
    assert CliRunner().invoke(app, ["bags", "validate", str(store)]).exit_code == 0
    assert_same_store(store, local_stores["slides"])
    record = list(bags.runs().values())[-1]
    assert record["engine"]["name"] == "ray" and record["status"] == "finished"
    assert bags.meta(bags.slide_ids()[0]).settings["device"] == "cpu"


def test_cell_folders_same_as_local(cohort, local_stores, tmp_path):
    store = tmp_path / "cells.zarr"
    summary = extract(cohort / "cells", store, CFG, engine=RayEngine(RayOptions(loaders=2)))
    assert {o.status for o in summary.outcomes} == {"written"}
    assert_same_store(store, local_stores["cells"])


def test_fields_with_a_bad_field_same_as_local(tmp_path):
    """Microscope fields: one bag per patient, a corrupt field left out with its notice, as locally."""
    from features.synth import SynthConfig, generate_cohort

    cohort = tmp_path / "cohort"
    generate_cohort(
        cohort, SynthConfig(patients=2, sites=1, seed=8, layout="fields", fields_per_patient=3, field_px=480)
    )
    bad = next((cohort / "fields").iterdir()) / "zz_corrupt.jpg"
    bad.write_bytes(b"not a jpeg")
    local = extract(cohort / "fields", tmp_path / "local.zarr", CFG)
    remote = extract(cohort / "fields", tmp_path / "ray.zarr", CFG, engine=RayEngine())
    assert [(o.slide_id, o.status, o.message) for o in remote.outcomes] == [
        (o.slide_id, o.status, o.message) for o in local.outcomes
    ]
    assert "1 input(s) left out" in {o.message for o in remote.outcomes}
    assert_same_store(tmp_path / "ray.zarr", tmp_path / "local.zarr")


def test_unreadable_slide_fails_alone_then_rerun_skips(cohort, tmp_path):
    slides = tmp_path / "slides"
    shutil.copytree(cohort / "slides", slides)
    (slides / "P000_broken.tiff").write_bytes(os.urandom(4096))  # sorts first: the others still run
    store = tmp_path / "bags.zarr"
    result = CliRunner().invoke(app, ["extract", str(slides), "-o", str(store), "--engine", "ray", "--set",
                                      "extract.qc_thumbnail_px=256"])  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "6 written, 0 skipped, 1 failed" in result.output
    failures = [line for line in result.output.splitlines() if "P000_broken" in line and "failed" not in line]
    assert failures and all("P000_broken.tiff" in line or "P000_broken" in line for line in failures)
    summary = BagStore(store).runs()
    outcome = {o["slide_id"]: o for o in list(summary.values())[-1]["outcomes"]}
    assert outcome["P000_broken"]["status"] == "failed" and "\n" not in outcome["P000_broken"]["message"]
    assert len(BagStore(store).slide_ids()) == 6
    again = CliRunner().invoke(app, ["extract", str(slides), "-o", str(store), "--engine", "ray"])
    assert again.exit_code == 3 and "0 written, 6 skipped, 1 failed" in again.output, again.output


def test_plan_refuses_gpus_the_cluster_lacks(cohort, tmp_path):
    with pytest.raises(InputError, match="has 0 GPU"):
        extract(cohort / "slides", tmp_path / "x.zarr", CFG, engine=RayEngine(RayOptions(gpus_per_encoder=1)))
    cuda = CFG.model_copy(update={"device": "cuda"})
    with pytest.raises(InputError, match="no GPU|get no GPU"):
        extract(cohort / "slides", tmp_path / "y.zarr", cuda, engine=RayEngine())
