"""Where things live in a bag store, and how an entry gets there: built out of sight, renamed into place.

Every entry a reader can see (a bag, a slide's QC, a run record) appears by one `os.rename` of a finished
folder, or one `os.replace` of a finished `zarr.json`, so it is either complete or absent. Unfinished work is
built in the staging area `STORE/tmp/<section>/`, which lies inside the key space of `STORE/tmp`, an empty
zarr array: zarr lists the children of groups only, never the keys under an array, so half-written bags,
leftovers of a killed writer and overwritten entries waiting for deletion never show up in a walk of the
hierarchy (and the array has no chunks, so nothing reads those files as data).

Staging names are `<label>~<role>~<host>~<pid>~<uuid>` (`~` occurs in no key and no host name): role `new`
is being written, `old` is a replaced entry moved aside, `gone` a damaged entry taken out of sight to be
deleted. A sweep removes the entries of dead writers on this host; an `old` entry whose replacement never
landed (a kill between the two renames) is put back.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

from features.core.errors import StoreError
from features.core.io import json_default
from features.core.outputs import pid_alive  # one staging rule: same host, dead pid

SCHEMA_VERSION = 2  # 1: bags at the top level, qc/ runs/ .tmp/ as plain folders
BAGS, QC, RUNS, TMP = "bags", "qc", "runs", "tmp"
SECTIONS = (BAGS, QC, RUNS)
ROLES = {
    BAGS: "one group per slide: the bags (features, coords or paths, obs; attrs = provenance)",
    QC: "one group per slide: attrs = QC summary; arrays = overview thumbnail and QC maps",
    RUNS: "one group per extraction run and shard: attrs = the run record",
    TMP: "staging: entries being written live in this empty array's key space, out of every listing",
}

_KEY_OK = re.compile(r"[^A-Za-z0-9._-]")
# A key, and a staging name built on it (key + role, host, pid, tag: up to ~70 more characters), must stay a
# valid file name (255 bytes): a longer id is cut and given a digest, as ids that had to change are.
MAX_KEY = 128
HOST_CHARS = 48
# Names a group's children cannot take: its own metadata (any case: macOS and Windows file systems fold it)
# and zarr v2's. A leading "__" is reserved by the zarr v3 spec, a leading "." is stripped.
_RESERVED = {"zarr.json", ".zattrs", ".zgroup", ".zarray", ".zmetadata"}


def bag_key(slide_id: str) -> str:
    """Sanitise a slide id into an entry name; ids that had to change get a short digest so keys stay unique.

    A key never names a store entry: bags and QC live one level down (`bags/<key>`, `qc/<key>`), and
    there the only reserved name, the group's own `zarr.json`, is never returned. Nor is it longer than
    `MAX_KEY`: a 250-character file name would otherwise give staging names the file system refuses."""
    key = _KEY_OK.sub("_", slide_id).lstrip(".")
    if key == slide_id and key.lower() not in _RESERVED and not key.startswith("__") and len(key) <= MAX_KEY:
        return key
    base = re.sub("^_+", "_", key) or "_"
    return f"{base[:80]}-{hashlib.sha1(slide_id.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


# "s3://b/x", or the "s3:/b/x" a Path makes of it; two letters at least, so a Windows drive is not a scheme.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def check_filesystem(path: str | Path) -> None:
    """Refuse object-store URLs. A store's commits are renames of finished folders (`land`), atomic on a POSIX
    filesystem (local, NFS, Lustre, GPFS) and absent from object stores: S3 and its kin have no rename, and
    zarr's fsspec store offers no atomic create either (its `set_if_not_exists` is check-then-write), so two
    writers could both land a bag and a killed writer would leave half of one in sight."""
    if _URL.match(str(path)):
        raise StoreError(
            f"{path}: bag stores live on a filesystem every worker mounts (local disk, NFS, Lustre), not in an "
            "object store: a bag is committed by an atomic folder rename, which s3:// and other object stores "
            "lack; write the store to a shared filesystem, then copy the finished store to the bucket"
        )


def _host() -> str:
    return _KEY_OK.sub("_", socket.gethostname())[:HOST_CHARS]


def writer_tag() -> str:
    """`<host>~<pid>~<uuid>`: whose a staging entry is, so a sweep can tell a dead writer's from a live one's."""
    return f"{_host()}~{os.getpid()}~{uuid.uuid4().hex[:8]}"


def staging_path(store: Path, section: str, label: str, role: str = "new") -> Path:
    """A fresh staging name for `label` (a key or run name) in `section`; the caller creates it."""
    folder = store / TMP / section
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{label}~{role}~{writer_tag()}"


def sweep_siblings(store: Path) -> list[str]:
    """Remove `.<store name>~<host>~<pid>~<uuid>` folders beside the store: roots that creators on this host
    built and died before renaming into place (a new store is built beside its final name)."""
    swept = []
    for entry in store.parent.glob(f".{glob.escape(store.name)}~*"):
        parts = entry.name.split("~")
        if len(parts) == 4 and parts[1] == _host() and parts[2].isdigit() and not pid_alive(int(parts[2])):
            remove(entry)
            swept.append(entry.name)
    return swept


def land(staged: Path, final: Path, replace: bool) -> None:
    """Rename the finished folder `staged` to `final`.

    Without `replace` the first writer wins: renaming a folder onto a non-empty one fails, and this raises
    FileExistsError. With `replace` an existing `final` is moved aside into staging first and deleted once
    the new one is in place (a crash in between leaves the old one for the sweep to restore)."""
    if not replace:
        try:
            os.rename(staged, final)
        except OSError as exc:
            if final.exists():
                raise FileExistsError(f"{final} exists") from exc
            raise
        return
    section = final.parent.name
    for _ in range(8):  # another replacing writer can land between our two renames: go round again
        old = staging_path(final.parent.parent, section, final.name, role="old")
        try:
            os.rename(final, old)
        except FileNotFoundError:
            old = None
        try:
            os.rename(staged, final)
        except OSError:
            if not final.exists():
                if old is not None:
                    os.rename(old, final)  # the failure is the caller's to report; keep what was there
                raise
            continue
        finally:
            if old is not None and old.exists() and final.exists():
                shutil.rmtree(old, ignore_errors=True)
        return
    raise FileExistsError(f"{final}: other writers kept replacing it")


def discard(final: Path) -> None:
    """Take the entry `final` out of sight (one rename into staging), then delete it; a kill in between leaves
    a `gone` entry for the sweep, never half an entry in sight."""
    gone = staging_path(final.parent.parent, final.parent.name, final.name, role="gone")
    try:
        os.rename(final, gone)
    except FileNotFoundError:
        return
    remove(gone)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def pending(store: Path) -> list[str]:
    """`<section>/<name>` of every staging entry: work in progress, or left by a crash."""
    return sorted(
        f"{section}/{entry.name}"
        for section in SECTIONS
        if (store / TMP / section).is_dir()
        for entry in (store / TMP / section).iterdir()
    )


def sweep(store: Path) -> list[str]:
    """Remove the staging entries of dead writers on this host (restoring an `old` entry whose replacement
    never landed); entries of live writers, of other hosts and of unknown shape stay."""
    swept: list[str] = []
    host = _host()
    for name in pending(store):
        section, entry = name.split("/", 1)
        parts = entry.split("~")
        if len(parts) != 5 or parts[2] != host or not parts[3].isdigit() or pid_alive(int(parts[3])):
            continue
        path = store / TMP / name
        final = store / section / parts[0]
        if parts[1] == "old" and not final.exists():
            os.rename(path, final)
        else:
            remove(path)
        swept.append(name)
    return swept


def json_safe(data: Any) -> Any:
    """Plain JSON types (numpy scalars and arrays, paths), as zarr stores attrs. NaN and inf stay, as
    Python's json writes them (a QC median over no tiles is NaN)."""
    return json.loads(json.dumps(data, default=json_default))
