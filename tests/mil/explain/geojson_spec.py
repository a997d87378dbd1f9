"""A checker of the two contracts our GeoJSON must meet: RFC 7946 (the GeoJSON format) and QuPath's object layout
(qupath.lib.io.PathObjectTypeAdapters, QuPath >= 0.4). Each returns a list of problems, empty when the file is
valid; written here because neither a JSON-schema package nor QuPath is available offline."""

from __future__ import annotations

import math
from typing import Any

GEOMETRY_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                  "GeometryCollection"}  # fmt: skip
QUPATH_OBJECT_TYPES = {"annotation", "detection", "cell", "tile", "tma_core", "root"}


def _position(p: Any) -> bool:
    return (
        isinstance(p, list)
        and len(p) in (2, 3)
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in p)
    )


def rfc7946_problems(doc: Any) -> list[str]:
    """RFC 7946 §3: FeatureCollection of Features; Polygons are arrays of closed linear rings of >= 4 positions."""
    problems = []
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        return ["top level is not a FeatureCollection object"]
    if "crs" in doc:
        problems.append("'crs' member (removed in RFC 7946)")
    if not isinstance(doc.get("features"), list):
        return problems + ["'features' is not an array"]
    for i, f in enumerate(doc["features"]):
        where = f"feature {i}"
        if not isinstance(f, dict) or f.get("type") != "Feature":
            problems.append(f"{where}: not a Feature object")
            continue
        if "geometry" not in f or "properties" not in f:
            problems.append(f"{where}: a Feature must have 'geometry' and 'properties' members")
        if "id" in f and not isinstance(f["id"], str | int | float):
            problems.append(f"{where}: id is neither a string nor a number")
        if f.get("properties") is not None and not isinstance(f["properties"], dict):
            problems.append(f"{where}: properties is neither an object nor null")
        g = f.get("geometry")
        if g is None:
            continue
        if not isinstance(g, dict) or g.get("type") not in GEOMETRY_TYPES:
            problems.append(f"{where}: geometry type {getattr(g, 'get', lambda _: None)('type')!r}")
            continue
        if g["type"] == "Polygon":
            rings = g.get("coordinates")
            if not isinstance(rings, list) or not rings:
                problems.append(f"{where}: Polygon coordinates are not a non-empty array of rings")
                continue
            for ring in rings:
                if not isinstance(ring, list) or len(ring) < 4 or not all(_position(p) for p in ring):
                    problems.append(f"{where}: a linear ring needs >= 4 positions of 2-3 finite numbers")
                elif ring[0] != ring[-1]:
                    problems.append(f"{where}: linear ring not closed (first != last position)")
    return problems


def qupath_problems(doc: dict, classified: bool) -> list[str]:
    """QuPath's layout: properties.objectType; measurements a flat {name: number}; classification
    {"name": str, "color": [r, g, b]} with 0-255 integers (required when `classified`)."""
    problems = []
    for i, f in enumerate(doc.get("features", [])):
        props = f.get("properties") or {}
        where = f"feature {i}"
        if props.get("objectType") not in QUPATH_OBJECT_TYPES:
            problems.append(f"{where}: objectType {props.get('objectType')!r}")
        m = props.get("measurements", {})
        if not isinstance(m, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and math.isfinite(v) for k, v in m.items()
        ):
            problems.append(f"{where}: measurements are not a flat object of finite numbers")
        c = props.get("classification")
        if c is None:
            if classified:
                problems.append(f"{where}: no classification")
            continue
        if not isinstance(c, dict) or set(c) != {"name", "color"}:
            problems.append(f"{where}: classification is not {{name, color}}")
            continue
        if not isinstance(c["name"], str) or not c["name"]:
            problems.append(f"{where}: classification name is not a non-empty string")
        color = c["color"]
        if not (isinstance(color, list) and len(color) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in color
        )):  # fmt: skip
            problems.append(f"{where}: classification color is not [r, g, b] of integers 0-255")
    return problems
