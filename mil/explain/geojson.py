"""Cells as a QuPath-importable GeoJSON FeatureCollection (File > Import objects from file, QuPath >= 0.4).

The conventions are QuPath's own (qupath.lib.io.PathObjectTypeAdapters): a FeatureCollection of Features whose
`geometry` is in level-0 pixels with the origin at the top left of the full-resolution image, whose
`properties.objectType` is "detection" (QuPath creates a detection object; 0.2/0.3 spelled it `object_type`,
which 0.4+ still reads with a warning), and whose `properties.measurements` is a flat {name: number} object
(the 0.4+ form; QuPath also reads the older [{name, value}] list). Measurement values must be finite numbers,
so NaN entries are left out of a cell's measurements rather than written as invalid JSON.

With a cell model (`mil heatmap --cells`), each detection also carries QuPath's `classification` object,
`{"name": <cell_type>, "color": [r, g, b]}` (the 0.4+ layout; the name is attention.csv's `cell_type` as
written), so QuPath colours and counts the detections by type, and `cell_type_p` among its measurements.

Each cell is a small circle polygon (so QuPath draws, selects and colours it like any detection, e.g. with
Measure > Show measurement maps on `att_rel_APL`) of the cell's equivalent radius where the bag has
`area_um2`, else `DEFAULT_RADIUS_UM`.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_RADIUS_UM = 5.0
N_VERTICES = 16


def circles(xy: np.ndarray, radius_px: np.ndarray, n_vertices: int = N_VERTICES) -> np.ndarray:
    """N x (V + 1) x 2 closed rings (first vertex repeated last, as GeoJSON requires), counter-clockwise."""
    angles = np.linspace(0.0, 2 * np.pi, n_vertices, endpoint=False)
    unit = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # V x 2
    ring = (
        np.asarray(xy, np.float64)[:, None, :] + np.asarray(radius_px, np.float64)[:, None, None] * unit[None]
    )
    return np.concatenate([ring, ring[:, :1]], axis=1)


def cells_geojson(
    frame: pd.DataFrame,
    mpp: float | None,
    measurements: list[str],
    seed: int = 0,
    colours: dict[str, tuple[int, int, int]] | None = None,
) -> dict:
    """A FeatureCollection of the cells of one attention.csv frame (needs `x`, `y`; uses `area_um2` if present).

    `measurements` are the frame's numeric columns to attach to each cell (attention per class, spread,
    relative attention, scores); `instance` is always attached so a QuPath object maps back to its CSV row.
    With a `cell_type` column, each cell gets a QuPath `classification` coloured by `colours` (type -> RGB).
    Object ids are UUIDs seeded by `seed` (QuPath >= 0.4 keeps them), so a rerun writes the same file.
    """
    xy = frame[["x", "y"]].to_numpy(np.float64)
    mpp = mpp or 0.25
    if "area_um2" in frame.columns:
        radius_um = np.sqrt(np.clip(frame["area_um2"].to_numpy(np.float64), 1.0, None) / np.pi)
    else:
        radius_um = np.full(len(frame), DEFAULT_RADIUS_UM)
    rings = np.round(circles(xy, radius_um / mpp), 1).tolist()
    rng = np.random.default_rng(seed)
    ids = [
        str(uuid.UUID(bytes=bytes(b), version=4)) for b in rng.integers(0, 256, (len(frame), 16), np.uint8)
    ]
    properties = _properties(frame, measurements, colours)
    features = [
        {
            "type": "Feature",
            "id": ids[i],
            "geometry": {"type": "Polygon", "coordinates": [rings[i]]},
            "properties": properties[i],
        }
        for i in range(len(frame))
    ]
    return {"type": "FeatureCollection", "features": features}


def _properties(
    frame: pd.DataFrame, measurements: list[str], colours: dict[str, tuple[int, int, int]] | None
) -> list[dict]:
    """Each cell's QuPath properties: a detection, its finite measurements, and its type's classification."""
    names = ["instance", *measurements]
    values = frame[names].to_numpy(np.float64)
    finite = np.isfinite(values)
    properties = [
        {
            "objectType": "detection",
            "measurements": {n: float(v) for n, v, ok in zip(names, values[i], finite[i], strict=True) if ok},
        }
        for i in range(len(frame))
    ]
    if "cell_type" in frame.columns:
        colours = colours or {}
        for props, name in zip(properties, frame["cell_type"].astype(str), strict=True):
            props["classification"] = {"name": name, "color": list(colours.get(name, (128, 128, 128)))}
    return properties


def write_geojson(collection: dict, path: Path) -> Path:
    from features.core.io import atomic_write_text

    atomic_write_text(Path(path), json.dumps(collection, separators=(",", ":"), allow_nan=False))
    return Path(path)
