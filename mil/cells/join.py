"""Place a cell-label table (`mil.cells.labels`) on the bags of a store: one label per bag row, or none.

How a row finds its cell, by what the table has: `instance` (the bag row itself); `file` (cell images: the
path below the patient folder; fields: the field's file, then the nearest cell in it); `x, y` (the nearest
stored cell centre within `radius_um`, as `mil.explain.truth.join_truth` joins truth to attention). With a
`nucleated` column (synth truth) the nucleated cells are placed first, and a stored cell that matched none of
them may take a red cell or platelet within half the radius: a detection on a red cell is an artefact to
learn, but a nucleated cell beside a red cell must keep its own type.

Nothing is dropped silently: stored cells no row reached stay unlabelled and are counted; rows that reached
no stored cell are counted (`place_labels`), and the caller lists slides the store does not hold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.bagstore import Bag, BagMeta
from features.core.errors import InputError
from mil.explain.truth import join_truth

UNLABELLED = ""


def bag_layout(bag: Bag) -> str:
    """ "fields" (paths and coords), "cells" (paths) or "slides" (coords): which synth truth table fits."""
    if bag.paths is not None and bag.coords is not None:
        return "fields"
    return "cells" if bag.paths is not None else "slides"


def place_labels(table: pd.DataFrame, bag: Bag, meta: BagMeta, radius_um: float) -> tuple[np.ndarray, int]:
    """(N names, rows that reached no cell) for one bag from its rows of the label table."""
    n = len(bag.features)
    if "layout" in table.columns:
        table = table[table["layout"] == bag_layout(bag)]
    names = np.full(n, UNLABELLED, dtype=object)
    table = table[table["cell_type"].astype(str) != ""]
    if table.empty:
        return names, 0
    if "instance" in table.columns and table["instance"].notna().all():
        rows = table["instance"].to_numpy(np.int64)
        bad = (rows < 0) | (rows >= n)
        if bad.any():
            raise InputError(
                f"{meta.slide_id}: label row names instance {int(rows[bad][0])}, the bag has {n} cells (0..{n - 1})"
            )
        names[rows] = table["cell_type"].to_numpy(object)
        return names, 0
    if "file" in table.columns and bag.paths is not None:
        if bag.coords is None:  # one image per cell
            joined = join_truth(
                pd.DataFrame({"file": np.asarray(bag.paths, dtype=object)}), table[["file", "cell_type"]]
            )
            hit = joined["truth_cell_type"].notna().to_numpy()
            names[hit] = joined["truth_cell_type"].to_numpy(object)[hit]
            return names, len(table) - int(hit.sum())
        return _place_in_fields(table, bag, meta, radius_um, names)
    if {"x", "y"} <= set(table.columns) and bag.coords is not None:
        return _place_by_position(table, bag.coords, _radius_px(meta, radius_um), names)
    raise InputError(
        f"{meta.slide_id}: the labels locate cells by {', '.join(c for c in ('file', 'instance', 'x', 'y') if c in table.columns)}, "
        f"but this bag has {'file paths' if bag.paths is not None else 'positions'}; give the matching column"
    )


def _radius_px(meta: BagMeta, radius_um: float) -> float:
    if not meta.mpp:
        raise InputError(f"{meta.slide_id}: bag has no mpp, so labels by position (x, y) cannot be placed")
    return radius_um / meta.mpp


def _place_by_position(table: pd.DataFrame, xy: np.ndarray, radius_px: float, names: np.ndarray):
    cells = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]})
    first, second = table, table.iloc[:0]
    if "nucleated" in table.columns:
        nucleated = table["nucleated"].fillna(1).astype(int) == 1
        first, second = table[nucleated], table[~nucleated]
    hit = np.zeros(len(names), bool)
    taken_by_first = 0
    for part, radius in ((first, radius_px), (second, radius_px / 2)):
        if part.empty or hit.all():
            continue
        open_ = np.flatnonzero(~hit)
        joined = join_truth(cells.iloc[open_], part[["x", "y", "cell_type"]].reset_index(drop=True), radius)
        got = joined["truth_cell_type"].notna().to_numpy()
        names[open_[got]] = joined["truth_cell_type"].to_numpy(object)[got]
        hit[open_[got]] = True
        if part is first:
            taken_by_first = int(got.sum())
    # nucleated rows no stored cell took: not detected, outside the counting regions, or the radius is small
    return names, max(0, len(first) - taken_by_first)


def _place_in_fields(table, bag: Bag, meta: BagMeta, radius_um: float, names: np.ndarray):
    if not {"x", "y"} <= set(table.columns):
        raise InputError(
            f"{meta.slide_id}: a fields bag needs labels with file and x, y (the cell in its field)"
        )
    radius_px = _radius_px(meta, radius_um)
    files = np.asarray(bag.paths, dtype=object)
    unplaced = 0
    for name, rows in table.groupby("file", sort=False):
        index = np.flatnonzero(files == name)
        sub = names[index].copy()
        sub, missed = _place_by_position(rows, bag.coords[index], radius_px, sub)
        names[index] = sub
        unplaced += missed
    return names, unplaced
