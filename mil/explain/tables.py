"""attention.csv: one row per instance of one slide, and its column names (defined here once).

Columns, in order:
    slide_id, instance        the bag row (0-based) of this slide in the bag store
    file | x, y               cell folders: the image path relative to the patient folder; slides: level-0 px
    region, ... (obs)         the bag's per-instance columns; region codes are written as names
    att_<name>                attention for output <name>, mean over the fold models (a K = 1 head: `att`)
    att_<name>_sd             its spread over the fold models
    att_rel_<name>            attention x N of the patient's bag (1 = uniform; comparable across slides)
    score_<name>              the instance's own class logit, where the head has one (mean over models)
    attribution_method        only for heads without attention: the values are attributions, not attention

Attention is the patient's, restricted to this slide's rows and not renormalised (see `mil.explain.attention`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.bagstore import Bag
from mil.explain.attention import ATTRIBUTION_METHOD, PatientAttention


def att_column(row: str, agnostic: bool, kind: str = "") -> str:
    """`att`, `att_sd`, `att_rel` for a K = 1 head; `att_<row>`, `att_<row>_sd`, `att_rel_<row>` otherwise."""
    if kind == "rel":
        return "att_rel" if agnostic else f"att_rel_{row}"
    return ("att" if agnostic else f"att_{row}") + ("_sd" if kind == "sd" else "")


def rank_column(att: PatientAttention, name: str) -> str:
    """The attention.csv column to rank cells by for output `name` (relative, comparable across slides)."""
    return att_column(att.rows[att.row(name)], att.class_agnostic, "rel")


def attention_frame(slide_id: str, bag: Bag, att: PatientAttention) -> pd.DataFrame:
    """The attention.csv rows of one slide of the patient explained by `att`."""
    rows = att.slide_rows(slide_id)
    n = rows.stop - rows.start
    if len(bag.features) != n:
        raise ValueError(f"{slide_id}: bag has {len(bag.features)} instances, the explanation {n}")
    cols: dict[str, object] = {"slide_id": slide_id, "instance": np.arange(n)}
    if bag.paths is not None:
        cols["file"] = np.asarray(bag.paths, dtype=object)
    if bag.coords is not None:
        cols["x"], cols["y"] = bag.coords[:, 0], bag.coords[:, 1]
    for name, values in bag.obs.items():
        cols[name] = _region_names(values) if name == "region" else values
    agnostic = att.class_agnostic
    rel = att.relative()
    for k, row in enumerate(att.rows):
        cols[att_column(row, agnostic)] = att.mean[k, rows]
        cols[att_column(row, agnostic, "sd")] = att.sd[k, rows]
        cols[att_column(row, agnostic, "rel")] = rel[k, rows]
    if att.scores is not None:
        for c, name in enumerate(att.names):
            cols[f"score_{name}"] = att.scores[c, rows]
    if att.method == ATTRIBUTION_METHOD:
        cols["attribution_method"] = att.method
    return pd.DataFrame(cols)


def _region_names(codes: np.ndarray) -> np.ndarray:
    if not np.issubdtype(np.asarray(codes).dtype, np.integer):
        return codes
    from features.smear.qc import REGIONS

    names = np.array([*REGIONS, "unknown"], dtype=object)
    return names[np.clip(codes.astype(np.int64), 0, len(REGIONS))]
