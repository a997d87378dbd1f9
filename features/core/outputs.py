"""Output paths: checked before any work, built out of sight, never replaced without being asked.

Every command that writes asks here first: a file output (`check_output_file`) or a folder output
(`check_output_folder`) that exists is refused without `--overwrite`, a folder output holding something that
is not the command's own earlier result is refused even with it (a typo such as `-o .` must not delete the
working directory), and the place must be writable: the probe creates and removes a hidden file in the
nearest existing folder, because `os.access` says yes to root on a read-only mount.

Folder outputs are built in a staging sibling `.<name>.tmp~<host>~<pid>~<tag>` and renamed into place when
complete (`staged_dir`, `swap_in`). A killed run leaves its staging folder behind; the next run on the same
output sweeps the ones of dead processes on this host (`sweep_stale`), the rule the bag store's staging
area follows.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

from features.core.errors import InputError

_NAME_OK = re.compile(r"[^A-Za-z0-9._-]")
_LABEL_MAX = 120  # bytes of OUT's name kept in a staging name (the rest is a digest), so it stays short


def host_tag() -> str:
    """This machine's name as it appears in staging names (no `~`, no separators)."""
    return _NAME_OK.sub("_", socket.gethostname())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def check_writable(path: Path) -> None:
    """Stop before any work when `path` (file or folder, existing or not) cannot be written: its nearest
    existing ancestor must be a folder in which a file can be created, and every name still to be created
    must fit the file system."""
    path = Path(path).absolute()
    ancestor, missing = path.parent, [path.name]
    while not ancestor.exists():
        missing.append(ancestor.name)
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot create {path}: {ancestor} is a file, not a folder; fix the output path")
    limit = _name_max(ancestor)
    long = next((n for n in missing if len(os.fsencode(n)) > limit), None)
    if long is not None:
        raise InputError(
            f"cannot create {path}: the name {long[:40]}... has {len(os.fsencode(long))} bytes and the file "
            f"system allows {limit}; choose a shorter output name"
        )
    probe = ancestor / f".mil-write-probe~{os.getpid()}~{uuid.uuid4().hex[:8]}"
    try:
        probe.touch(exist_ok=False)
    except OSError as exc:
        raise InputError(
            f"cannot write in {ancestor} ({exc.strerror.lower()}); choose an output folder you can write to"
        ) from None
    probe.unlink(missing_ok=True)


def check_output_file(path: Path, overwrite: bool, example: str = "out.csv") -> None:
    """A file output: not a folder, absent unless `overwrite`, and writable."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give the file to write, e.g. {path / example}")
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; rerun with --overwrite or choose another output")
    check_writable(path)


def check_output_folder(
    path: Path, overwrite: bool, is_ours: Callable[[Path], bool], what: str = "run folder"
) -> None:
    """A folder output: absent or empty; or, with `overwrite`, an earlier result of the same command
    (`is_ours(path)`), never an arbitrary folder; and writable (its parent, where the staging folder goes)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file; give a folder for the {what} (-o)")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise InputError(f"{path} is not empty; choose another output folder or pass --overwrite")
        if not is_ours(path):
            raise InputError(
                f"{path} holds files that are not a {what}; --overwrite replaces only an earlier {what}, "
                "so choose a new or empty folder"
            )
    check_writable(path)


def _staging_label(out: Path) -> str:
    name = out.name
    if len(os.fsencode(name)) <= _LABEL_MAX:
        return name
    return (
        f"{os.fsencode(name)[:60].decode(errors='ignore')}-{hashlib.sha1(os.fsencode(name)).hexdigest()[:8]}"
    )


def _staging_name(out: Path, role: str) -> Path:
    return out.parent / f".{_staging_label(out)}.{role}~{host_tag()}~{os.getpid()}~{uuid.uuid4().hex[:8]}"


def sweep_stale(out: Path) -> list[Path]:
    """Remove the staging siblings of `out` left by dead processes on this host; an `old` one (a previous
    result moved aside by a `swap_in` that was killed before the new one landed) is put back if `out` is
    missing. Staging folders of live processes and of other hosts stay."""
    out = Path(out)
    prefix, host, swept = f".{_staging_label(out)}.", host_tag(), []
    if not out.parent.is_dir():
        return swept
    for entry in out.parent.iterdir():
        if not entry.name.startswith(prefix):
            continue
        parts = entry.name[len(prefix) :].split("~")
        if len(parts) != 4 or parts[0] not in ("tmp", "old") or parts[1] != host or not parts[2].isdigit():
            continue
        if pid_alive(int(parts[2])):
            continue
        if parts[0] == "old" and not out.exists():
            os.replace(entry, out)
        else:
            shutil.rmtree(entry, ignore_errors=True)
        swept.append(entry)
    return swept


def staged_dir(out: Path) -> Path:
    """A new, empty staging folder beside `out` (after sweeping dead ones); the caller fills it, then
    `swap_in(tmp, out)`, or removes it on failure."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(out)
    tmp = _staging_name(out, "tmp")
    tmp.mkdir()
    return tmp


def swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished staging folder onto `out`; an old `out` is moved aside first and deleted last, so
    a failure in between puts it back (and a kill in between leaves it for `sweep_stale` to restore)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    trash = _staging_name(out, "old")
    os.replace(out, trash)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(trash, out)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


__all__ = [
    "check_output_file",
    "check_output_folder",
    "check_writable",
    "host_tag",
    "pid_alive",
    "staged_dir",
    "swap_in",
    "sweep_stale",
]
