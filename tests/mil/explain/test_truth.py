"""Joining attention.csv to annotated cells: exactly by file, or by nearest x, y within a radius."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.core.errors import InputError
from mil.explain.truth import join_truth


def test_join_by_file_keeps_rows_and_order():
    att = pd.DataFrame({"file": ["b.png", "a.png", "sub/c.png", "d.png"], "att": [0.1, 0.2, 0.3, 0.4]})
    truth = pd.DataFrame(
        {"file": ["a.png", "b.png", "sub/c.png"], "cell_type": ["x", "y", "z"], "diagnostic": [1, 0, 1]}
    )
    out = join_truth(att, truth)
    assert list(out["file"]) == list(att["file"]) and list(out["att"]) == list(att["att"])
    assert list(out["truth_cell_type"].iloc[:3]) == ["y", "x", "z"] and pd.isna(
        out["truth_cell_type"].iloc[3]
    )
    assert "truth_file" not in out.columns


def test_join_by_file_refuses_a_duplicated_truth_row():
    truth = pd.DataFrame({"file": ["a.png", "a.png"], "diagnostic": [1, 0]})
    with pytest.raises(InputError, match="twice"):
        join_truth(pd.DataFrame({"file": ["a.png"]}), truth)


def test_join_by_position_matches_a_brute_force_twin():
    rng = np.random.default_rng(0)
    truth = pd.DataFrame({"x": rng.uniform(0, 1000, 300), "y": rng.uniform(0, 1000, 300)})
    truth["diagnostic"] = rng.integers(0, 2, len(truth))
    truth["region"] = "trail"
    att = pd.DataFrame({"x": rng.uniform(0, 1000, 200).round(), "y": rng.uniform(0, 1000, 200).round()})
    att["region"] = "particle"  # same column name on both sides: truth's is prefixed, nothing is overwritten
    radius = 20.0
    out = join_truth(att, truth, radius_px=radius)
    assert len(out) == len(att) and (out["region"] == "particle").all()
    d = np.hypot(
        att["x"].to_numpy()[:, None] - truth["x"].to_numpy()[None],
        att["y"].to_numpy()[:, None] - truth["y"].to_numpy()[None],
    )
    nearest, dist = d.argmin(1), d.min(1)
    hit = dist <= radius
    assert hit.any() and (~hit).any()
    np.testing.assert_array_equal(
        out["truth_diagnostic"].to_numpy()[hit], truth["diagnostic"].to_numpy()[nearest[hit]]
    )
    assert out["truth_diagnostic"][~hit].isna().all() and out["truth_dist_px"][~hit].isna().all()
    np.testing.assert_allclose(out["truth_dist_px"].to_numpy()[hit], dist[hit])


def test_join_by_position_needs_a_radius_and_coordinates():
    att, truth = pd.DataFrame({"x": [1], "y": [1]}), pd.DataFrame({"x": [1], "y": [2], "diagnostic": [1]})
    with pytest.raises(InputError, match="radius"):
        join_truth(att, truth)
    with pytest.raises(InputError, match="file"):
        join_truth(pd.DataFrame({"att": [1]}), truth, radius_px=3)
    empty = join_truth(att, truth.iloc[:0], radius_px=3)
    assert empty["truth_diagnostic"].isna().all()
