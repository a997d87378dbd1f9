"""Overlays and QuPath GeoJSON for a bag of microscope fields: one of each per field, in that field's pixels.

A fields bag holds a patient's cells from many small photographs (`features.sources.fields`); every cell keeps
its field (`paths`) and its centre in that field's own pixels (`coords`). So where a slide gets one overlay of
the smear and one `cells.geojson`, a fields bag gets, per field F:

    fields/<F key>/overlay_<row>.png    the photograph with its cells as dots coloured by attention
    fields/<F key>/overlay_celltype.png with a cell model: its cells coloured by type
    fields/<F key>/cells.geojson        its cells as QuPath detections (open the field image in QuPath, then
                                        File > Import objects from file)

`<F key>` is the field's path relative to the patient folder, made safe as a folder name
(`features.bagstore.bag_key`). The drawing is `mil.explain.overlay.plot_overlay`, the GeoJSON
`mil.explain.geojson.cells_geojson`, with the field's own mpp (recorded per field in the bag's QC).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from features.bagstore import Bag, BagMeta, bag_key
from features.sources.instances import OVERVIEW_PX as THUMB_MAX_PX
from mil.explain.geojson import cells_geojson, write_geojson
from mil.explain.overlay import DOT_UM, plot_overlay, plot_type_overlay


def write_field_views(
    meta: BagMeta,
    bag: Bag,
    frame: pd.DataFrame,
    values: dict[str, np.ndarray],
    folder: Path,
    label: str,
    measurements: list[str],
    colours: dict[str, tuple[int, int, int]] | None = None,
) -> list[str]:
    """Write every field's overlays and GeoJSON under `folder/fields/`; returns the paths written, relative to
    `folder`. Each field is read once. With a `cell_type` column in `frame`, a type overlay too (`colours`)."""
    from features.core.errors import SlideError
    from features.core.io import atomic_write
    from features.smear.imageops import block_mean
    from features.sources.fields import field_mpps, read_field_image

    if bag.paths is None or bag.coords is None:
        raise SlideError(meta.slide_id, "bag has no field paths or coords; cannot draw its fields")
    mpps = field_mpps(meta.qc)
    names = np.asarray(bag.paths, dtype=object)
    written: list[str] = []
    for name in dict.fromkeys(names.tolist()):
        rows = np.flatnonzero(names == name)
        path = Path(meta.source_path) / str(name)
        if not path.is_file():
            raise SlideError(str(path), "field image not found; move it back or re-extract")
        mpp = mpps.get(str(name), meta.mpp) or meta.mpp
        rgb = read_field_image(path)
        k = max(1, int(np.ceil(max(rgb.shape[:2]) / THUMB_MAX_PX)))
        thumb = block_mean(rgb, k)
        out = folder / "fields" / bag_key(str(name))
        out.mkdir(parents=True, exist_ok=True)
        xy, dot_px = bag.coords[rows], DOT_UM / (mpp * k)
        panels = [(f"overlay_{row}.png", row, v[rows], False) for row, v in values.items()]
        if "cell_type" in frame.columns:
            types = frame["cell_type"].to_numpy(object)[rows]
            panels.append(("overlay_celltype.png", "cell types", types, True))
        for file, what, data, typed in panels:
            fig = Figure(figsize=_figsize(thumb, typed), layout="constrained")
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            if typed:
                plot_type_overlay(ax, thumb, float(k), xy, data, colours or {}, dot_px)
            else:
                plot_overlay(ax, thumb, float(k), xy, data, label, dot_px)
            ax.set_title(f"{meta.slide_id} / {name}: {what}")
            target = out / file
            atomic_write(
                target,
                lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=90, pil_kwargs={"compress_level": 3}),
            )
            written.append(target.relative_to(folder).as_posix())
        geojson = cells_geojson(frame.iloc[rows], mpp, measurements, colours=colours)
        written.append(write_geojson(geojson, out / "cells.geojson").relative_to(folder).as_posix())
    return written


def _figsize(thumb: np.ndarray, typed: bool) -> tuple[float, float]:
    """5 in high, as wide as the field's aspect, plus room for the types' legend or the colour bar."""
    aspect = thumb.shape[1] / max(1, thumb.shape[0])
    margin = 3.0 if typed else 1.5
    return min(10.5 + margin, 5.0 * aspect + margin), 5.0


__all__ = ["write_field_views"]
