"""Cells as QuPath GeoJSON: detections with closed circle polygons in level-0 px and attention measurements."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from mil.explain.geojson import cells_geojson, circles, write_geojson


def test_circles_are_closed_rings_of_the_given_radius():
    rings = circles(np.array([[100.0, 50.0], [0.0, 0.0]]), np.array([4.0, 10.0]), n_vertices=12)
    assert rings.shape == (2, 13, 2)
    np.testing.assert_array_equal(rings[:, 0], rings[:, -1])
    radii = np.hypot(*(rings[:, :-1] - np.array([[100.0, 50.0], [0.0, 0.0]])[:, None]).transpose(2, 0, 1))
    np.testing.assert_allclose(radii, [[4.0] * 12, [10.0] * 12])


def test_feature_collection_follows_qupath_conventions(tmp_path):
    frame = pd.DataFrame(
        {"instance": [0, 1], "x": [1000, 2000], "y": [500, 600], "area_um2": [np.pi * 25, np.pi * 36],
         "att_APL": [0.7, 0.3], "att_rel_APL": [1.4, 0.6], "score_APL": [np.nan, 2.0]}
    )  # fmt: skip
    fc = cells_geojson(frame, mpp=0.25, measurements=["att_APL", "att_rel_APL", "score_APL"])
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 2
    f0, f1 = fc["features"]
    assert f0["type"] == "Feature" and f0["properties"]["objectType"] == "detection"
    ring = np.array(f0["geometry"]["coordinates"][0])
    assert f0["geometry"]["type"] == "Polygon" and (ring[0] == ring[-1]).all()
    # radius 5 µm at 0.25 µm/px = 20 level-0 px around (1000, 500)
    np.testing.assert_allclose(np.hypot(ring[:, 0] - 1000, ring[:, 1] - 500), 20, atol=0.1)
    assert f0["properties"]["measurements"] == {
        "instance": 0.0,
        "att_APL": 0.7,
        "att_rel_APL": 1.4,
    }  # NaN left out
    assert f1["properties"]["measurements"]["score_APL"] == 2.0
    path = write_geojson(fc, tmp_path / "cells.geojson")
    assert json.loads(path.read_text()) == fc  # strict JSON (allow_nan=False) round-trips
    again = cells_geojson(frame, mpp=0.25, measurements=["att_APL"])
    assert [f["id"] for f in again["features"]] == [f["id"] for f in fc["features"]]  # seeded UUIDs
