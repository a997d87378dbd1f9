"""`export_qc`: the store's per-slide QC as files a person opens: `<key>.json` and the `<key>.png` overview."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from features.bagstore.store import BagStore
from features.core.errors import InputError
from features.core.io import atomic_write, atomic_write_text
from features.core.outputs import check_writable


def export_qc(store: BagStore, out: Path, overwrite: bool = False) -> list[Path]:
    """Write every slide's QC summary (JSON) and overview (PNG, slides only) into `out`; returns the files.
    Existing files of the same names are refused unless `overwrite`, before anything is written."""
    from PIL import Image

    out = Path(out)
    keys = store.qc_keys()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; give a folder for the QC files")
    clashes = [p for k in keys for p in (out / f"{k}.json", out / f"{k}.png") if p.exists()]
    if clashes and not overwrite:
        raise InputError(
            f"{out}: {len(clashes)} QC file(s) exist ({clashes[0].name}, ...); rerun with --overwrite "
            "or pick another folder"
        )
    if keys:
        check_writable(out / f"{keys[0]}.json")  # a read-only folder is one line before any file is written
    written = []
    for key in keys:
        qc = store.read_qc_by_key(key)
        if qc.thumbnail is not None:
            buf = io.BytesIO()
            # compress_level 1: a 1024 px overview in ~0.1 s instead of ~1.5 s, for a file ~20 % larger.
            Image.fromarray(np.ascontiguousarray(qc.thumbnail)).save(buf, format="PNG", compress_level=1)
            png = out / f"{key}.png"
            atomic_write(png, lambda tmp, data=buf.getvalue(): tmp.write_bytes(data))
            written.append(png)
        summary = out / f"{key}.json"
        atomic_write_text(summary, json.dumps(qc.summary, indent=1))
        written.append(summary)
    return written
