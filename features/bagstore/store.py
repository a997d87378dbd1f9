"""The bag store: a zarr v3 hierarchy of one group per slide. The only package that touches zarr.

Layout of `STORE/` (a local folder; plain `zarr.open_group(STORE)` reads all of it)::

    zarr.json                root group; attrs: schema version (`mil_bagstore`) and the encoder identity
    bags/<key>/              one complete bag per slide (key = `bag_key(slide_id)`)
        features  (N, D)     float32 embeddings
        coords    (N, 2)     int64 level-0 pixel centres (x, y) of the instances (slides only)
        paths     (N,)       str, image path relative to the source folder (cell folders only)
        obs/<name> (N,)      optional per-instance columns (region code, focus, area_um2, ...)
        attrs                provenance (`BagMeta`)
    qc/<key>/                per-slide QC, written also for slides that failed (`features.bagstore.qc`)
        attrs                summary: slide_id, status, region areas, counts, focus, error
        thumbnail (H, W, 3)  uint8 overview: regions tinted, blur crossed, cells as dots (slides only)
        regions   (h, w)     uint8 region codes; in_focus (gh, gw) bool; attrs: level-0 px per map px
    runs/<UTC time>-shard<i>of<N>/   one group per extraction run; attrs = the run record
    tmp                      an empty array: its key space holds the staging area (`features.bagstore.layout`)

Why this shape: slides, QC and runs each have their own group, so no slide id can name a store entry
(`bag_key` never returns `zarr.json`, the one name a group reserves). Every entry is built in staging and
renamed into place only when complete, so `bags/<key>` exists if and only if the bag is complete (a SIGKILL
mid-write leaves only a staging entry, swept on the next run), and two writers can never both land one key:
renaming a folder onto a non-empty one fails. The staging area sits under an array, where zarr never lists,
so the hierarchy stays clean whatever a crash leaves. The encoder identity (name, weights digest, dim, unit)
is fixed when the store is created, so features from different encoders never mix in one store.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from features import __version__
from features.bagstore import layout
from features.bagstore.layout import BAGS, QC, RUNS, SCHEMA_VERSION, TMP, bag_key, json_safe
from features.bagstore.qc import SlideQC, qc_keys, read_qc, write_qc
from features.bagstore.runs import read_runs, write_run
from features.core.errors import StoreError


@dataclass(frozen=True)
class EncoderIdentity:
    """What makes two bags' features comparable. A store holds one identity."""

    name: str
    weights_sha256: str  # "random" for explicitly random weights, "none" for weight-free encoders
    dim: int
    unit: str  # "cells" or "tiles"

    def describe(self) -> str:
        return f"{self.name} (weights {self.weights_sha256[:12]}, dim {self.dim}, unit {self.unit})"


@dataclass(frozen=True)
class BagMeta:
    """Provenance of one bag, stored as the group's attrs."""

    slide_id: str
    patient_id: str
    n_instances: int
    encoder: EncoderIdentity
    source_path: str
    source_kind: str  # "slide", "cells" or "h5"
    mpp: float | None = None
    mpp_source: str | None = None
    crop_um: float | None = None
    crop_px: int | None = None
    weights_path: str | None = None
    source_size: int | None = None
    source_mtime: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # extraction settings that shaped this bag
    qc: dict[str, Any] = field(default_factory=dict)  # per-slide QC summary
    mil_version: str = __version__
    schema_version: int = SCHEMA_VERSION
    created_at: str = ""

    def to_attrs(self) -> dict[str, Any]:
        return json_safe(asdict(self))

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> BagMeta:
        attrs = dict(attrs)
        attrs["encoder"] = EncoderIdentity(**attrs["encoder"])
        return cls(**attrs)


@dataclass
class Bag:
    """One slide's instances. `coords` for slides, `paths` for cell folders; `obs` holds extra columns."""

    features: np.ndarray  # N x D float32
    coords: np.ndarray | None = None  # N x 2 int64, level-0 px (x, y)
    paths: np.ndarray | None = None  # N str
    obs: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.features)
        if self.features.ndim != 2:
            raise ValueError(f"features must be N x D, got shape {self.features.shape}")
        for name, arr in [("coords", self.coords), ("paths", self.paths), *self.obs.items()]:
            if arr is not None and len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} rows, features has {n}")
        if self.coords is not None and (self.coords.ndim != 2 or self.coords.shape[1] != 2):
            raise ValueError(f"coords must be N x 2, got shape {self.coords.shape}")


class BagStore:
    """A folder of bags sharing one encoder identity. `mode="r"` reads; `mode="a"` also writes."""

    def __init__(self, path: str | Path, mode: str = "r", encoder: EncoderIdentity | None = None):
        layout.check_filesystem(path)
        self.path = Path(path)
        self.mode = mode
        root_json = self.path / "zarr.json"
        if not root_json.exists():
            if mode == "r":
                raise StoreError(
                    f"{self.path}: not a bag store (no zarr.json); create one with `mil extract`"
                )
            if encoder is None:
                raise StoreError(f"{self.path}: a new store needs the encoder identity")
            if self.path.exists() and any(self.path.iterdir()):
                raise StoreError(f"{self.path}: folder exists and is not a bag store; choose another path")
            self._create(encoder)
        try:
            attrs = zarr.open_group(self.path, mode="r").attrs.asdict()
        except Exception as exc:  # noqa: BLE001 - any zarr failure here means the same thing to the user
            raise StoreError(f"{self.path}: cannot read the store's zarr.json ({exc})") from exc
        schema = attrs.get("mil_bagstore")
        if schema == 1:
            raise StoreError(
                f"{self.path}: bag store of the old layout (schema 1); convert it in place with "
                f"`mil bags upgrade {self.path}` (bags are kept), or re-extract into a new store"
            )
        if schema != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: bag-store schema {schema!r}, this mil reads {SCHEMA_VERSION}")
        self.encoder = EncoderIdentity(**attrs["encoder"])
        if encoder is not None and encoder != self.encoder:
            raise StoreError(
                f"{self.path}: store holds {self.encoder.describe()}, this run uses {encoder.describe()}; "
                "write to a new store"
            )

    def _create(self, encoder: EncoderIdentity) -> None:
        # Build the root in a sibling temp folder and rename it into place: concurrent shards creating the
        # same store race safely (the losers' rename fails and they read the winner's identity).
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex}"
        create_root(tmp, {"mil_bagstore": SCHEMA_VERSION, "encoder": asdict(encoder)})
        try:
            if self.path.exists():
                self.path.rmdir()  # an empty folder the user made
            os.rename(tmp, self.path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (self.path / "zarr.json").exists():
                raise

    # -- reading -----------------------------------------------------------------------------------------
    def _bag(self, key: str) -> Path:
        return self.path / BAGS / key

    def keys(self) -> list[str]:
        return sorted(p.name for p in (self.path / BAGS).iterdir() if (p / "zarr.json").is_file())

    def slide_ids(self) -> list[str]:
        return [self.meta_by_key(k).slide_id for k in self.keys()]

    def metas(self) -> list[BagMeta]:
        return [self.meta_by_key(k) for k in self.keys()]

    def has(self, slide_id: str) -> bool:
        return (self._bag(bag_key(slide_id)) / "zarr.json").is_file()

    def meta_by_key(self, key: str) -> BagMeta:
        attrs = json.loads((self._bag(key) / "zarr.json").read_text())["attributes"]
        return BagMeta.from_attrs(attrs)

    def meta(self, slide_id: str) -> BagMeta:
        if not self.has(slide_id):
            raise StoreError(f"{self.path}: no bag for slide {slide_id!r} (see `mil bags info {self.path}`)")
        return self.meta_by_key(bag_key(slide_id))

    def read(self, slide_id: str, obs: bool = True) -> Bag:
        if not self.has(slide_id):
            raise StoreError(f"{self.path}: no bag for slide {slide_id!r} (see `mil bags info {self.path}`)")
        group = zarr.open_group(self._bag(bag_key(slide_id)), mode="r")
        names = set(group.array_keys())
        obs_cols: dict[str, np.ndarray] = {}
        if obs and "obs" in set(group.group_keys()):
            sub = group["obs"]
            obs_cols = {name: sub[name][:] for name in sorted(sub.array_keys())}
        return Bag(
            features=group["features"][:],
            coords=group["coords"][:] if "coords" in names else None,
            paths=group["paths"][:].astype(object) if "paths" in names else None,
            obs=obs_cols,
        )

    def read_features(self, slide_id: str) -> np.ndarray:
        return zarr.open_array(self._bag(bag_key(slide_id)) / "features", mode="r")[:]

    # -- writing -----------------------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.mode == "r":
            raise StoreError(f"{self.path}: opened read-only")

    def write(self, bag: Bag, meta: BagMeta, overwrite: bool = False) -> None:
        """Write one bag atomically. An existing complete bag is kept unless `overwrite`."""
        self._writable()
        if meta.encoder != self.encoder:
            raise StoreError(
                f"{meta.slide_id}: bag from {meta.encoder.describe()} does not fit {self.encoder.describe()}"
            )
        if bag.features.shape[1] != self.encoder.dim:
            raise StoreError(
                f"{meta.slide_id}: features are {bag.features.shape[1]}-d, store is {self.encoder.dim}-d"
            )
        if meta.n_instances != len(bag.features):
            raise ValueError("meta.n_instances does not match the bag")
        key = bag_key(meta.slide_id)
        final = self._bag(key)
        if final.exists() and not overwrite:
            raise StoreError(
                f"{meta.slide_id}: bag exists in {self.path} (rerun with overwrite to replace it)"
            )
        if not meta.created_at:
            meta = replace(meta, created_at=datetime.now(UTC).isoformat(timespec="seconds"))
        staged = layout.staging_path(self.path, BAGS, key)
        try:
            _write_bag_group(staged, bag, meta)
            layout.land(staged, final, replace=overwrite)
        except FileExistsError as exc:
            raise StoreError(f"{meta.slide_id}: another writer landed this bag first") from exc
        finally:
            layout.remove(staged)

    def sweep_stale(self) -> list[str]:
        """Remove staging entries left by dead writers on this host; entries of live or remote writers stay."""
        return layout.sweep(self.path)

    def pending(self) -> list[str]:
        """Staging entries (`<section>/<name>`): work being written now, or left by a crash."""
        return layout.pending(self.path)

    # -- QC and run records --------------------------------------------------------------------------------
    def write_qc(self, slide_id: str, qc: SlideQC) -> None:
        """Replace the slide's QC (thumbnail and maps not given are kept from its previous QC)."""
        self._writable()
        write_qc(self.path, slide_id, qc)

    def qc_keys(self) -> list[str]:
        return qc_keys(self.path)

    def read_qc(self, slide_id: str, images: bool = True) -> SlideQC:
        key = bag_key(slide_id)
        if key not in self.qc_keys():
            raise StoreError(f"{self.path}: no QC for slide {slide_id!r} (see `mil bags qc {self.path}`)")
        return read_qc(self.path, key, images)

    def read_qc_by_key(self, key: str, images: bool = True) -> SlideQC:
        return read_qc(self.path, key, images)

    def write_run(self, name: str, record: dict[str, Any]) -> Path:
        self._writable()
        return write_run(self.path, name, record)

    def runs(self) -> dict[str, dict[str, Any]]:
        """Run records by name, oldest first."""
        return read_runs(self.path)

    # -- checking ----------------------------------------------------------------------------------------
    def validate(self) -> dict[str, list[str]]:
        """Problems per slide id (empty lists = fine): schema, shapes, non-finite values, provenance."""
        problems: dict[str, list[str]] = {}
        for key in self.keys():
            found: list[str] = []
            slide = key
            try:
                meta = self.meta_by_key(key)
                slide = meta.slide_id
                if bag_key(meta.slide_id) != key:
                    found.append(f"folder {key!r} does not match slide id {meta.slide_id!r}")
                if meta.encoder != self.encoder:
                    found.append(f"encoder {meta.encoder.describe()} differs from the store's")
                bag = self.read(meta.slide_id)
                n, d = bag.features.shape
                if n != meta.n_instances:
                    found.append(f"{n} feature rows, provenance says {meta.n_instances}")
                if d != self.encoder.dim:
                    found.append(f"features are {d}-d, store is {self.encoder.dim}-d")
                if not np.isfinite(bag.features).all():
                    found.append(
                        f"{int((~np.isfinite(bag.features)).any(axis=1).sum())} instances with NaN/inf"
                    )
                if bag.coords is None and bag.paths is None:
                    found.append("neither coords nor paths: instances cannot be located")
                if n == 0:
                    found.append("empty bag (no instances)")
            except Exception as exc:  # noqa: BLE001 - report any unreadable bag as a problem, keep going
                found.append(f"unreadable: {exc}")
            problems[slide] = found
        return problems


def create_root(path: Path, attrs: dict[str, Any]) -> None:
    """The root group with its three empty sections and the staging array."""
    root = zarr.open_group(path, mode="w", attributes=attrs)
    for name in (BAGS, QC, RUNS):
        root.create_group(name, attributes={"mil_role": layout.ROLES[name]})
    root.create_array(TMP, shape=(0,), dtype="uint8", attributes={"mil_role": layout.ROLES[TMP]})


def _write_bag_group(path: Path, bag: Bag, meta: BagMeta) -> None:
    group = zarr.open_group(path, mode="w", attributes=meta.to_attrs())
    n = len(bag.features)
    chunk = max(1, min(n, 4096))
    group.create_array(
        "features",
        data=np.ascontiguousarray(bag.features, dtype=np.float32),
        chunks=(chunk, bag.features.shape[1]),
    )
    if bag.coords is not None:
        group.create_array("coords", data=np.asarray(bag.coords, dtype=np.int64), chunks=(chunk, 2))
    if bag.paths is not None:
        paths = np.asarray([str(p) for p in bag.paths], dtype=np.dtypes.StringDType())
        arr = group.create_array("paths", shape=(n,), dtype=str, chunks=(chunk,))
        if n:
            arr[:] = paths
    if bag.obs:
        sub = group.create_group("obs")
        for name, values in bag.obs.items():
            sub.create_array(name, data=np.asarray(values), chunks=(chunk,))
