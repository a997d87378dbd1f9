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
and the extraction setting (crop size, detection, QC, mpp policy: `features.pipeline.store_settings`) are
fixed when the store is created, so features made differently never mix in one store.

Every chunk of a bag is stored (none is left out for equalling the fill value) and zstd-checksummed, so a
chunk that went missing or was damaged is an error when read (`features.bagstore.chunks`), never zeros.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from features.bagstore import arrays as bag_arrays
from features.bagstore import layout
from features.bagstore.bag import Bag, BagExists, BagMeta, EncoderIdentity
from features.bagstore.layout import BAGS, QC, RUNS, SCHEMA_VERSION, TMP, bag_key, json_safe
from features.bagstore.qc import SlideQC, qc_keys, read_qc, write_qc
from features.bagstore.runs import close_dead_runs, read_runs, write_run
from features.core.errors import StoreError


class BagStore:
    """A folder of bags sharing one encoder identity. `mode="r"` reads; `mode="a"` also writes."""

    def __init__(
        self,
        path: str | Path,
        mode: str = "r",
        encoder: EncoderIdentity | None = None,
        extraction: dict[str, Any] | None = None,
    ):
        layout.check_filesystem(path)
        self.path = Path(path)
        self.mode = mode
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path}: is a file, not a bag store; choose a folder (e.g. bags.zarr)")
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
            self._create(encoder, extraction)
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
        # None in stores made before settings were recorded (`features.pipeline.store_settings` adopts one)
        self.extraction: dict[str, Any] | None = attrs.get("extraction")
        if encoder is not None and encoder != self.encoder:
            raise StoreError(
                f"{self.path}: store holds {self.encoder.describe()}, this run uses {encoder.describe()}; "
                "write to a new store"
            )
        if mode != "r":
            self._check_writable()

    def _create(self, encoder: EncoderIdentity, extraction: dict[str, Any] | None) -> None:
        # Build the root in a sibling temp folder and rename it into place: concurrent shards creating the
        # same store race safely (the losers' rename fails and they read the winner's identity).
        attrs: dict[str, Any] = {"mil_bagstore": SCHEMA_VERSION, "encoder": asdict(encoder)}
        if extraction is not None:
            attrs["extraction"] = json_safe(extraction)
        tmp = self.path.parent / f".{self.path.name}~{layout.writer_tag()}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            layout.sweep_siblings(self.path)  # roots left by creators killed before their rename
            create_root(tmp, attrs)
            if self.path.exists():
                self.path.rmdir()  # an empty folder the user made
            os.rename(tmp, self.path)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (self.path / "zarr.json").exists():
                raise StoreError(
                    f"{self.path}: cannot create the store there ({exc.strerror or exc}); choose a writable "
                    "folder for -o"
                ) from None

    def _check_writable(self) -> None:
        """A store (or a section of it) that this process may not write to: one line, before any work."""
        for folder in (self.path, *(self.path / name for name in (BAGS, QC, RUNS, TMP))):
            if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
                raise StoreError(
                    f"{folder}: not writable by this user; fix the permissions or write to another store (-o)"
                )

    def record_extraction(self, extraction: dict[str, Any]) -> None:
        """Record the extraction setting of a store made before settings were recorded (root attrs, replaced
        atomically)."""
        self._writable()
        root_json = self.path / "zarr.json"
        document = json.loads(root_json.read_text())
        document.setdefault("attributes", {})["extraction"] = json_safe(extraction)
        staged = layout.staging_path(self.path, RUNS, "root-zarr.json")
        try:
            staged.write_text(json.dumps(document, indent=2))
            os.replace(staged, root_json)
        finally:
            layout.remove(staged)
        self.extraction = json_safe(extraction)

    # -- reading -----------------------------------------------------------------------------------------
    def _bag(self, key: str) -> Path:
        return self.path / BAGS / key

    def keys(self) -> list[str]:
        folder = self.path / BAGS
        if not folder.is_dir():
            raise StoreError(f"{self.path}: the store has lost its {BAGS}/ group; restore it from a copy")
        return sorted(p.name for p in folder.iterdir() if (p / "zarr.json").is_file())

    def slide_ids(self) -> list[str]:
        return [self.meta_by_key(k).slide_id for k in self.keys()]

    def metas(self) -> list[BagMeta]:
        return [self.meta_by_key(k) for k in self.keys()]

    def has(self, slide_id: str) -> bool:
        return (self._bag(bag_key(slide_id)) / "zarr.json").is_file()

    def meta_by_key(self, key: str) -> BagMeta:
        """The bag's provenance; a damaged `zarr.json` is one `StoreError` naming the bag."""
        meta_file = self._bag(key) / "zarr.json"
        try:
            return BagMeta.from_attrs(json.loads(meta_file.read_text())["attributes"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = "not valid JSON" if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            raise StoreError(
                f"{meta_file}: bag metadata unreadable ({' '.join(reason.split())[:160]}); rerun mil extract "
                "on it (it re-extracts damaged bags)"
            ) from None

    def meta(self, slide_id: str) -> BagMeta:
        if not self.has(slide_id):
            raise StoreError(f"{self.path}: no bag for slide {slide_id!r} (see `mil bags info {self.path}`)")
        return self.meta_by_key(bag_key(slide_id))

    def _arrays(self, slide_id: str, obs: bool) -> tuple[str, dict[str, zarr.Array]]:
        """The bag's arrays, each with every chunk on disk (else one `StoreError` naming the bag)."""
        meta = self.meta(slide_id)
        folder = self._bag(bag_key(slide_id))
        where = f"{self.path}: bag {slide_id!r}"
        try:
            arrays = bag_arrays.bag_arrays(zarr.open_group(folder, mode="r"), obs)
        except Exception as exc:  # noqa: BLE001 - any zarr failure here means a damaged bag
            raise StoreError(
                f"{where}: unreadable ({type(exc).__name__}: {exc}); {bag_arrays.REPAIR}"
            ) from None
        if "features" not in arrays:
            raise StoreError(f"{where}: has no features array; {bag_arrays.REPAIR}")
        on_disk = {name: array.metadata for name, array in arrays.items()}
        bag_arrays.check_present(where, folder, on_disk, meta.every_chunk_stored)
        return where, arrays

    def damage(self, slide_id: str) -> str | None:
        """Why the slide's bag cannot be read (unreadable metadata, a lost chunk), or None. Cheap: metadata
        and one `stat` per chunk; a chunk that is there but does not decode shows only on reading
        (`validate(deep=True)`)."""
        try:
            self._arrays(slide_id, obs=True)
        except StoreError as exc:
            return str(exc)
        return None

    def lost_files(self, key: str, meta: BagMeta) -> str | None:
        """Why the bag under `key` (its provenance `meta`) cannot be read, seen from its files alone: an
        array's metadata that does not parse, no features array, a lost chunk; None when there is none.
        Cheaper than `damage` (no zarr group opened: each array's `zarr.json` parsed, one `stat` per chunk),
        for listing a large store (`mil bags info`); whatever it finds, `damage` finds too, so a rerun of
        `mil extract` repairs it."""
        folder = self._bag(key)
        where = f"{self.path}: bag {meta.slide_id!r}"
        try:
            arrays = bag_arrays.array_metadata(where, folder)
            if "features" not in arrays:
                raise StoreError(f"{where}: has no features array; {bag_arrays.REPAIR}")
            bag_arrays.check_present(where, folder, arrays, meta.every_chunk_stored)
        except StoreError as exc:
            return str(exc)
        return None

    def discard(self, slide_id: str) -> None:
        """Remove a slide's bag (a damaged one, before it is extracted again)."""
        self._writable()
        layout.discard(self._bag(bag_key(slide_id)))

    def read(self, slide_id: str, obs: bool = True) -> Bag:
        where, arrays = self._arrays(slide_id, obs)
        data = {name: bag_arrays.decode(where, name, array) for name, array in arrays.items()}
        return Bag(
            features=data["features"],
            coords=data.get("coords"),
            paths=data["paths"].astype(object) if "paths" in data else None,
            obs={name.removeprefix("obs/"): v for name, v in data.items() if name.startswith("obs/")},
        )

    def read_features(self, slide_id: str) -> np.ndarray:
        where, arrays = self._arrays(slide_id, obs=False)
        return bag_arrays.decode(where, "features", arrays["features"])

    # -- writing -----------------------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.mode == "r":
            raise StoreError(f"{self.path}: opened read-only")

    def write(self, bag: Bag, meta: BagMeta, overwrite: bool = False) -> None:
        """Write one bag atomically. An existing complete bag is kept unless `overwrite`: `BagExists` is
        raised, also when another writer landed the same bag while this one was being written (the first
        writer wins; `features.pipeline.provenance.write_bag` turns that into a skip)."""
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
            raise BagExists(
                f"{meta.slide_id}: bag exists in {self.path} (rerun with overwrite to replace it)"
            )
        meta = replace(
            meta,
            every_chunk_stored=True,
            created_at=meta.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
        )
        staged = layout.staging_path(self.path, BAGS, key)
        try:
            bag_arrays.write_bag_group(staged, bag, meta)
            layout.land(staged, final, replace=overwrite)
        except FileExistsError as exc:
            raise BagExists(f"{meta.slide_id}: another writer landed this bag first") from exc
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

    def close_dead_runs(self) -> list[str]:
        """Mark the run records still "running" whose process on this host is gone (SIGKILL, OOM killer,
        power loss) as "killed"; their names."""
        self._writable()
        return close_dead_runs(self.path)

    # -- checking ----------------------------------------------------------------------------------------
    def validate(self, deep: bool = False) -> dict[str, list[str]]:
        """Problems per slide id (empty lists = fine): schema, shapes, provenance, every chunk on disk, the
        small arrays decoded; `deep` also decodes every feature chunk and looks for NaN/inf
        (`features.bagstore.validate`)."""
        from features.bagstore.validate import validate_store

        return validate_store(self, deep)


def create_root(path: Path, attrs: dict[str, Any]) -> None:
    """The root group with its three empty sections and the staging array."""
    root = zarr.open_group(path, mode="w", attributes=attrs)
    for name in (BAGS, QC, RUNS):
        root.create_group(name, attributes={"mil_role": layout.ROLES[name]})
    root.create_array(TMP, shape=(0,), dtype="uint8", attributes={"mil_role": layout.ROLES[TMP]})
