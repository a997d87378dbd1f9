"""Run folders: refuse to clobber, build in a temp sibling, swap in at the end; and the provenance record.

A run is written to `.<name>.tmp-<uuid>` beside RUN and renamed into place only when complete, so a crash
(or Ctrl-C) mid-run leaves RUN exactly as it was: absent, empty, or the previous run with `--overwrite`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.bagstore import BagMeta, EncoderIdentity
from features.core.errors import InputError
from features.core.versions import versions


def check_out(out: Path, overwrite: bool) -> None:
    """Stop before any work if RUN holds something and `--overwrite` was not given."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is a file; choose another output folder (-o)")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: folder exists and is not empty; choose another -o or pass --overwrite")


def temp_dir(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished temp folder onto RUN; an old RUN is moved aside first and deleted last."""
    if out.exists():
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, trash)
        try:
            os.replace(tmp, out)
        except OSError:
            os.replace(trash, out)
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


def git_commit(cwd: Path | None = None) -> str | None:
    """HEAD of the git repository around the working directory, or None outside one (or without git)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (result.stdout.strip() or None) if result.returncode == 0 else None


def provenance(
    seed: int,
    encoder: EncoderIdentity,
    sample_meta: BagMeta | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a reader needs to trust or repeat a run: versions, seed, features, code, command."""
    features = None
    if sample_meta is not None:
        features = {
            k: getattr(sample_meta, k)
            for k in ("crop_um", "crop_px", "mpp", "mpp_source", "source_kind", "settings", "mil_version")
        }
        features["sample_slide"] = sample_meta.slide_id
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "versions": versions(),
        "encoder": asdict(encoder),
        "features": features,
        "git_commit": git_commit(),
        "command": shlex.join(sys.argv),
        **(extra or {}),
    }
