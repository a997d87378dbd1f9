"""The store's names and landing rules: keys that never name a store entry, first writer wins, replacement
that never leaves neither, the sweep (restores a replaced entry whose successor never landed), QC and runs."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

from features.bagstore import Bag, BagMeta, BagStore, EncoderIdentity, SlideQC, bag_key, layout
from features.core.errors import StoreError
from tests.features.bagstore.plain_zarr import plain_zarr_walk

ENC = EncoderIdentity("cytomorph", "none", 4, "cells")
DEAD_PID = 2**22 + 4321  # above Linux's pid_max default: never a live process


def _bag(store: BagStore, slide_id: str, value: float = 1.0, overwrite: bool = False) -> None:
    bag = Bag(features=np.full((3, 4), value, np.float32), coords=np.zeros((3, 2), np.int64))
    store.write(bag, BagMeta(slide_id, "P1", 3, ENC, "/x.svs", "slide"), overwrite=overwrite)


@pytest.fixture
def store(tmp_path):
    return BagStore(tmp_path / "bags.zarr", "a", ENC)


@pytest.mark.parametrize("slide_id", ["zarr.json", "ZARR.JSON", "Zarr.Json", ".zattrs", "__meta", "..", "."])
def test_keys_never_name_a_groups_own_entries(slide_id):
    key = bag_key(slide_id)
    assert key.lower() not in {"zarr.json", ".zattrs", ".zgroup", ".zarray", ".zmetadata"}
    assert not key.startswith(("__", ".")) and key not in ("", ".", "..")
    assert "/" not in key and "~" not in key


def test_plain_keys_unchanged_and_changed_keys_distinct():
    for sid in ("P001_s1", "qc", "runs", "bags", "tmp", "slide-3.a", "_x"):
        assert bag_key(sid) == sid  # ordinary ids keep their key (reserved-looking ones included)
    ids = ["zarr.json", "ZARR.JSON", ".tmp", "tmp", "..", "...", "a/b", "a_b", "__m", "_m"]
    assert len({bag_key(s) for s in ids}) == len(ids)


def test_new_store_is_a_clean_hierarchy(store):
    assert plain_zarr_walk(store.path) == ["bags", "qc", "runs", "tmp"]


def test_first_writer_wins(store, tmp_path):
    _bag(store, "A", 1.0)
    with pytest.raises(StoreError, match="bag exists"):
        _bag(store, "A", 2.0)
    # Two writers past the existence check: the second rename finds a non-empty folder and loses.
    staged = layout.staging_path(store.path, layout.BAGS, "A")
    staged.mkdir()
    (staged / "zarr.json").write_text("{}")
    with pytest.raises(FileExistsError):
        layout.land(staged, store.path / "bags" / "A", replace=False)
    assert store.read("A").features[0, 0] == 1.0


def test_overwrite_replaces_and_a_failed_landing_keeps_the_old(store, monkeypatch):
    _bag(store, "A", 1.0)
    _bag(store, "A", 2.0, overwrite=True)
    assert store.read("A").features[0, 0] == 2.0
    real_rename = os.rename

    def failing(src, dst):
        if "~new~" in str(src):
            raise PermissionError(13, "denied", str(dst))
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(PermissionError):
        _bag(store, "A", 3.0, overwrite=True)
    monkeypatch.undo()
    assert store.read("A").features[0, 0] == 2.0 and store.pending() == []


def test_sweep_dead_live_remote_and_restore(store, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "gpu-node-03")  # dashes in host names parse
    _bag(store, "A")
    _bag(store, "B")
    tmp = store.path / "tmp" / "bags"
    dead_new = tmp / f"C~new~gpu-node-03~{DEAD_PID}~0001"
    live_new = tmp / f"D~new~gpu-node-03~{os.getpid()}~0002"
    remote = tmp / f"E~new~other-host~{DEAD_PID}~0003"
    for entry in (dead_new, live_new, remote):
        entry.mkdir()
    # A kill between the two renames of a replacement: B's old version aside, its successor never landed.
    os.rename(store.path / "bags" / "B", tmp / f"B~old~gpu-node-03~{DEAD_PID}~0004")
    # A's old version aside while A is in place: only to be deleted.
    (tmp / f"A~old~gpu-node-03~{DEAD_PID}~0005").mkdir()
    swept = store.sweep_stale()
    assert sorted(swept) == sorted(
        f"bags/{n}"
        for n in (dead_new.name, f"B~old~gpu-node-03~{DEAD_PID}~0004", f"A~old~gpu-node-03~{DEAD_PID}~0005")
    )
    assert store.slide_ids() == ["A", "B"] and store.read("B").features.shape == (3, 4)
    assert store.pending() == sorted(f"bags/{e.name}" for e in (live_new, remote))
    assert plain_zarr_walk(store.path)[:4] == ["bags", "bags/A", "bags/A/coords", "bags/A/features"]


def test_qc_round_trip_and_carry_over(store):
    thumb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    regions = np.arange(12, dtype=np.uint8).reshape(3, 4)
    store.write_qc(
        "qc",
        SlideQC(
            {"status": "detected", "n": np.int64(5)},
            None,
            {"regions": regions},
            {"regions": {"downsample": 16.0}},
        ),
    )
    store.write_qc("qc", SlideQC({"status": "cropped", "n": 5}, thumb))
    store.write_qc("qc", SlideQC({"status": "failed", "error": "boom"}))
    qc = store.read_qc("qc")
    assert qc.summary == {"slide_id": "qc", "status": "failed", "error": "boom"}
    assert np.array_equal(qc.thumbnail, thumb) and np.array_equal(qc.maps["regions"], regions)
    assert qc.map_attrs["regions"] == {"downsample": 16.0}
    assert store.read_qc("qc", images=False).thumbnail is None
    with pytest.raises(StoreError, match="no QC for slide 'other'"):
        store.read_qc("other")
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        SlideQC({}, np.zeros((4, 4), np.uint8))
    assert plain_zarr_walk(store.path) == [
        "bags", "qc", "qc/qc", "qc/qc/regions", "qc/qc/thumbnail", "runs", "tmp"
    ]  # fmt: skip


def test_qc_carry_over_survives_another_writer_landing_meanwhile(store, monkeypatch):
    """Two unsharded runs on one store write the same slide's QC: the version being copied from can be
    renamed away mid-copy (a CI failure: 'No such file or directory' from copytree). Carry from the new one."""
    import features.bagstore.qc as qc_module

    first, second = (np.full((4, 4, 3), v, np.uint8) for v in (1, 2))
    store.write_qc("s", SlideQC({"status": "cropped"}, first, {"regions": np.zeros((2, 2), np.uint8)}))
    real_copytree, calls = qc_module.shutil.copytree, []

    def other_run_lands_first(src, dst, *a, **kw):
        calls.append(src)
        if len(calls) == 1:  # the other run lands its version now: the folder we copy from is gone
            monkeypatch.setattr(qc_module.shutil, "copytree", real_copytree)
            store.write_qc("s", SlideQC({"status": "cropped", "by": "other"}, second))
            monkeypatch.setattr(qc_module.shutil, "copytree", other_run_lands_first)
            raise FileNotFoundError(src)
        return real_copytree(src, dst, *a, **kw)

    monkeypatch.setattr(qc_module.shutil, "copytree", other_run_lands_first)
    store.write_qc("s", SlideQC({"status": "failed", "error": "boom"}))
    qc = store.read_qc("s")
    assert qc.summary["status"] == "failed" and "by" not in qc.summary
    assert np.array_equal(qc.thumbnail, second) and np.array_equal(qc.maps["regions"], np.zeros((2, 2)))
    assert store.pending() == []


def test_qc_carry_over_waits_out_a_landing_between_its_two_renames(store, monkeypatch):
    """Mid-landing, the old version is renamed aside before the new one is renamed in: `final` is briefly
    absent. That is not 'nothing to carry over'."""
    import features.bagstore.qc as qc_module

    thumb = np.full((4, 4, 3), 7, np.uint8)
    store.write_qc("s", SlideQC({"status": "cropped"}, thumb))
    final = store.path / "qc" / "s"
    aside = store.path / "aside"
    real_copytree = qc_module.shutil.copytree

    def renamed_away_mid_copy(src, dst, *a, **kw):
        monkeypatch.setattr(qc_module.shutil, "copytree", real_copytree)
        final.rename(aside)
        raise FileNotFoundError(src)

    monkeypatch.setattr(qc_module.shutil, "copytree", renamed_away_mid_copy)
    monkeypatch.setattr(qc_module.time, "sleep", lambda s: aside.rename(final))  # the other landing ends
    store.write_qc("s", SlideQC({"status": "failed", "error": "boom"}))
    assert np.array_equal(store.read_qc("s").thumbnail, thumb)


def test_run_records_replace_whole(store):
    store.write_run("20260101T000000.000Z-shard0of1", {"status": "running", "path": store.path})
    store.write_run("20260101T000000.000Z-shard0of1", {"status": "finished", "outcomes": [1, 2]})
    store.write_run("20260102T000000.000Z-shard0of1", {"status": "running"})
    runs = store.runs()
    assert list(runs) == ["20260101T000000.000Z-shard0of1", "20260102T000000.000Z-shard0of1"]
    assert runs["20260101T000000.000Z-shard0of1"] == {"status": "finished", "outcomes": [1, 2]}
    assert store.pending() == []


def test_read_only_store_refuses_writes(store):
    reader = BagStore(store.path)
    with pytest.raises(StoreError, match="read-only"):
        reader.write_qc("A", SlideQC({}))
    with pytest.raises(StoreError, match="read-only"):
        reader.write_run("r", {})
