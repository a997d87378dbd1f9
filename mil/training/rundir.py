"""Run folders: refuse to clobber, build in a temp sibling, swap in at the end; and the provenance record.

A run is written to a staging sibling `.<name>.tmp~<host>~<pid>~<tag>` of RUN and renamed into place only when
complete, so a crash (or Ctrl-C) mid-run leaves RUN exactly as it was: absent, empty, or the previous run with
`--overwrite`; the next run on RUN sweeps what a killed one left (`features.core.outputs`).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.bagstore import BagMeta, EncoderIdentity
from features.core.errors import InputError
from features.core.outputs import check_output_folder, staged_dir
from features.core.outputs import swap_in as swap_in  # re-exported: train and heatmap swap their folders in
from features.core.versions import versions


def is_run(path: Path) -> bool:
    """Whether `path` is a finished `mil train` run (what `--overwrite` may replace)."""
    return (path / "config.yaml").is_file() and (path / "splits.json").is_file()


def check_out(
    out: Path, overwrite: bool, is_ours: Callable[[Path], bool] = is_run, what: str = "run folder"
) -> None:
    """Stop before any work if RUN cannot be written, holds something and `--overwrite` was not given, or
    holds something that is not an earlier result of the same command (see `features.core.outputs`)."""
    check_output_folder(out, overwrite, is_ours, what)


def refuse_run_file(run: Path, path: Path) -> None:
    """An output never replaces a file of the run it reads, even with `--overwrite`: the run's out-of-fold
    predictions.csv, metrics and models are what `mil evaluate`, `mil report` and `mil heatmap` read."""
    path = Path(path)
    if path.is_file() and path.resolve().is_relative_to(Path(run).resolve()):
        raise InputError(f"{path} is a file of run {run}; write to a new file outside the run's own files")


def refuse_inputs(out: Path, inputs: dict[str, Path | None], room_inside: tuple[str, ...] = ("run",)) -> None:
    """An output is never one of the inputs the command reads, nor inside one (a bag store, a cell model
    folder), nor a folder holding one, even with `--overwrite`: `-o bags.zarr/zarr.json` would destroy the
    store, `-o labels.csv` the labels. `inputs` maps what each input is ("bag store") to its path. Inputs
    named in `room_inside` (a run) may take new outputs inside them: `refuse_run_file` keeps their own files."""
    target = Path(out).resolve()
    for what, path in inputs.items():
        if path is None:
            continue
        source = Path(path).resolve()
        if target == source:
            where = "is"
        elif target.is_relative_to(source):
            if what in room_inside:
                continue
            where = "lies inside"
        elif source.is_relative_to(target):
            where = "holds"
        else:
            continue
        raise InputError(
            f"{out} {where} the {what} {path} that this command reads; write the output outside its inputs"
        )


def temp_dir(out: Path) -> Path:
    """The staging folder of RUN; staging folders of killed runs on the same RUN are swept first."""
    return staged_dir(out)


def git_commit(cwd: Path | None = None) -> str | None:
    """HEAD of the git checkout that holds mil's own source (or of `cwd`'s repository), None where mil is not
    run from a checkout (an installed wheel) or git is missing. Why not the working directory: a run started
    inside the user's own project repository would record that repository's commit as mil's."""
    folder = Path(cwd) if cwd is not None else Path(__file__).resolve().parents[1]
    try:
        if cwd is None:  # mil's source must be tracked there, not a site-packages copy inside some repository
            tracked = subprocess.run(
                ["git", "ls-files", "--error-unmatch", "__init__.py"],
                cwd=folder, capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
            if tracked.returncode != 0:
                return None
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=False
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
