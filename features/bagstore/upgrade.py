"""`upgrade_store`: convert a bag store of schema 1 to the current layout in place, keeping every bag.

Schema 1 kept the bags at the top level beside plain folders (`qc/<key>.json|png`, `runs/<name>.json`,
`.tmp/`) that are not zarr nodes. The upgrade moves each bag into `bags/` (a rename: features are not
copied), turns QC files and run records into their groups, drops the old staging folder and sets the schema
last, so a killed upgrade leaves a store that still reads as schema 1 and a rerun carries on (the plain
folders are first renamed to `qc.v1/` and `runs.v1/`, fixed names a rerun finds). Run it while no
extraction writes to the store.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from features.bagstore.layout import BAGS, QC, ROLES, RUNS, SCHEMA_VERSION, TMP, bag_key
from features.bagstore.qc import SlideQC, write_qc
from features.bagstore.runs import write_run
from features.core.errors import StoreError


@dataclass
class Upgrade:
    bags: int = 0
    qc: int = 0
    runs: int = 0
    already: bool = False  # the store was of the current schema: nothing done


def upgrade_store(path: str | Path) -> Upgrade:
    path = Path(path)
    try:
        root = zarr.open_group(path, mode="r+")
        schema = root.attrs.get("mil_bagstore")
    except Exception as exc:  # noqa: BLE001 - any zarr failure here means the same thing to the user
        raise StoreError(f"{path}: not a bag store ({exc})") from exc
    if schema == SCHEMA_VERSION:
        return Upgrade(already=True)
    if schema != 1:
        raise StoreError(f"{path}: bag-store schema {schema!r}; only schema 1 can be upgraded")
    for name in (QC, RUNS):  # the plain folders, out of the names the new groups take
        if (path / name).is_dir() and not (path / name / "zarr.json").exists():
            (path / name).rename(path / f"{name}.v1")
    for name in (BAGS, QC, RUNS):
        if not (path / name / "zarr.json").exists():
            root.create_group(name, attributes={"mil_role": ROLES[name]})
    if not (path / TMP / "zarr.json").exists():
        root.create_array(TMP, shape=(0,), dtype="uint8", attributes={"mil_role": ROLES[TMP]})
    done = Upgrade()
    for child in sorted(path.iterdir()):
        if child.name in (BAGS, QC, RUNS, TMP) or not (child / "zarr.json").is_file():
            continue
        slide_id = _attrs(child / "zarr.json").get("slide_id")
        if slide_id is None:
            continue
        target = path / BAGS / bag_key(slide_id)
        if target.exists():
            raise StoreError(f"{child}: bag for {slide_id!r} also at {target}; remove one and rerun")
        child.rename(target)
        done.bags += 1
    done.qc = _qc_files(path, path / f"{QC}.v1")
    done.runs = _run_files(path, path / f"{RUNS}.v1")
    shutil.rmtree(path / ".tmp", ignore_errors=True)
    root.attrs.update({"mil_bagstore": SCHEMA_VERSION})
    return done


def _attrs(meta: Path) -> dict:
    try:
        return json.loads(meta.read_text())["attributes"]
    except (OSError, ValueError, KeyError) as exc:
        raise StoreError(f"{meta}: unreadable ({exc}); move that folder out of the store and rerun") from exc


def _qc_files(store: Path, folder: Path) -> int:
    if not folder.is_dir():
        return 0
    from PIL import Image

    n = 0
    for summary_file in sorted(folder.glob("[!.]*.json")):
        summary = json.loads(summary_file.read_text())
        png = summary_file.with_suffix(".png")
        thumbnail = np.asarray(Image.open(png).convert("RGB")) if png.is_file() else None
        write_qc(store, summary.pop("slide_id", summary_file.stem), SlideQC(summary, thumbnail))
        n += 1
    shutil.rmtree(folder)
    return n


def _run_files(store: Path, folder: Path) -> int:
    if not folder.is_dir():
        return 0
    records = sorted(folder.glob("[!.]*.json"))
    for record in records:
        write_run(store, record.stem, json.loads(record.read_text()))
    shutil.rmtree(folder)
    return len(records)
