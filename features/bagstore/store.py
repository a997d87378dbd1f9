"""The bag store: one zarr v3 group per slide. The only module that touches zarr; the schema lives here.

Layout of `STORE/` (a local folder)::

    zarr.json                root group; attrs: schema version and the store's encoder identity
    <key>/                   one complete bag (key = sanitised slide id)
        features  (N, D)     float32 embeddings
        coords    (N, 2)     int64 level-0 pixel centres (x, y) of the instances (slides only)
        paths     (N,)       str, image path relative to the source folder (cell folders only)
        obs/<name> (N,)      optional per-instance columns (region code, focus, area_um2, ...)
        attrs                provenance (`BagMeta`)
    .tmp/<key>-<host>-<pid>-<uuid>/   bags being written

Why this shape: a bag is built under `.tmp/` and renamed into place with one `os.replace` only when every
array is written, so `<key>/` exists if and only if the bag is complete (a SIGKILL mid-write leaves only a
`.tmp/` entry, swept on the next run). Two writers can never both land one key: renaming a directory onto a
non-empty one fails. The store's encoder identity (name, weights digest, dim, unit) is fixed when the store
is created, so features from different encoders never mix in one store.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from features import __version__
from features.core.errors import StoreError
from features.core.io import json_default

SCHEMA_VERSION = 1
_TMP = ".tmp"
_KEY_OK = re.compile(r"[^A-Za-z0-9._-]")


def bag_key(slide_id: str) -> str:
    """Sanitise a slide id into a folder name; ids that had to change get a short digest so keys stay unique."""
    key = _KEY_OK.sub("_", slide_id).lstrip(".") or "_"
    if key != slide_id:
        key = f"{key[:80]}-{hashlib.sha1(slide_id.encode()).hexdigest()[:8]}"
    return key


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
        return json.loads(json.dumps(asdict(self), default=json_default))

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
        if attrs.get("mil_bagstore") != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: bag-store schema {attrs.get('mil_bagstore')!r}, this mil reads {SCHEMA_VERSION}"
            )
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
        zarr.open_group(
            tmp, mode="w", attributes={"mil_bagstore": SCHEMA_VERSION, "encoder": asdict(encoder)}
        )
        try:
            if self.path.exists():
                self.path.rmdir()  # an empty folder the user made
            os.rename(tmp, self.path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (self.path / "zarr.json").exists():
                raise

    # -- reading -----------------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return sorted(
            p.name
            for p in self.path.iterdir()
            if p.is_dir() and p.name != _TMP and (p / "zarr.json").exists()
        )

    def slide_ids(self) -> list[str]:
        return [self.meta_by_key(k).slide_id for k in self.keys()]

    def metas(self) -> list[BagMeta]:
        return [self.meta_by_key(k) for k in self.keys()]

    def has(self, slide_id: str) -> bool:
        return (self.path / bag_key(slide_id) / "zarr.json").exists()

    def meta_by_key(self, key: str) -> BagMeta:
        attrs = json.loads((self.path / key / "zarr.json").read_text())["attributes"]
        return BagMeta.from_attrs(attrs)

    def meta(self, slide_id: str) -> BagMeta:
        if not self.has(slide_id):
            raise StoreError(f"{self.path}: no bag for slide {slide_id!r} (see `mil bags info {self.path}`)")
        return self.meta_by_key(bag_key(slide_id))

    def read(self, slide_id: str, obs: bool = True) -> Bag:
        if not self.has(slide_id):
            raise StoreError(f"{self.path}: no bag for slide {slide_id!r} (see `mil bags info {self.path}`)")
        group = zarr.open_group(self.path / bag_key(slide_id), mode="r")
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
        return zarr.open_array(self.path / bag_key(slide_id) / "features", mode="r")[:]

    # -- writing -----------------------------------------------------------------------------------------
    def write(self, bag: Bag, meta: BagMeta, overwrite: bool = False) -> None:
        """Write one bag atomically. An existing complete bag is kept unless `overwrite`."""
        if self.mode == "r":
            raise StoreError(f"{self.path}: opened read-only")
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
        final = self.path / key
        if final.exists() and not overwrite:
            raise StoreError(
                f"{meta.slide_id}: bag exists in {self.path} (rerun with overwrite to replace it)"
            )
        tmp_root = self.path / _TMP
        tmp_root.mkdir(exist_ok=True)
        tmp = tmp_root / f"{key}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if not meta.created_at:
            meta = _with_created_at(meta)
        try:
            group = zarr.open_group(tmp, mode="w", attributes=meta.to_attrs())
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
            if final.exists():  # overwrite: move the old bag aside first, so a crash never leaves neither
                trash = tmp_root / f"{key}-old-{uuid.uuid4().hex[:8]}"
                os.replace(final, trash)
                os.replace(tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.exists() and not overwrite:
                raise StoreError(f"{meta.slide_id}: another writer landed this bag first") from exc
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def sweep_stale(self) -> list[str]:
        """Remove `.tmp/` entries left by dead writers on this host; entries of live or remote writers stay."""
        tmp_root = self.path / _TMP
        removed: list[str] = []
        if not tmp_root.exists():
            return removed
        host = socket.gethostname()
        for entry in tmp_root.iterdir():
            parts = entry.name.rsplit("-", 3)
            if "-old-" in entry.name:
                dead = True
            elif len(parts) == 4 and parts[1] == host and parts[2].isdigit():
                dead = not _pid_alive(int(parts[2]))
            else:
                dead = False
            if dead:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed

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

    def pending(self) -> list[str]:
        """Names of `.tmp/` entries: bags being written now, or left by a crash."""
        tmp_root = self.path / _TMP
        return sorted(p.name for p in tmp_root.iterdir()) if tmp_root.exists() else []


def _with_created_at(meta: BagMeta) -> BagMeta:
    from dataclasses import replace

    return replace(meta, created_at=datetime.now(UTC).isoformat(timespec="seconds"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
