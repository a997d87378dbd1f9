"""attention.csv columns per head kind, and the smear overlay."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from features.bagstore import BagStore
from features.sources import open_instances
from mil.explain.cohort import Explainer
from mil.explain.overlay import plot_overlay, write_overlays
from mil.explain.tables import attention_frame, rank_column
from tests.mil.explain.cohort import get_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return get_tiny(tmp_path_factory)


def test_columns_for_a_class_agnostic_head(tiny):
    ex = Explainer.open(tiny.abmil, tiny.cells)
    _, att = ex.explain("P002")
    frame = attention_frame("P002", ex.store.read("P002"), att)
    assert list(frame.columns[:3]) == ["slide_id", "instance", "file"]
    assert {"att", "att_sd", "att_rel", "score_AML", "score_APL", "score_healthy"} <= set(frame.columns)
    assert "attribution_method" not in frame.columns and rank_column(att, "APL") == "att_rel"
    np.testing.assert_allclose(frame["att_rel"], frame["att"] * len(frame), rtol=1e-5)


def test_columns_for_per_class_attention_on_a_slide(tiny):
    ex = Explainer.open(tiny.clam_mb, tiny.slides)
    _, att = ex.explain("P002")
    frame = attention_frame("P002_s1", ex.store.read("P002_s1"), att)
    assert {"x", "y", "region", "area_um2", "att_APL", "att_APL_sd", "att_rel_APL", "score_APL"} <= set(
        frame.columns
    )
    assert set(frame["region"]) <= {"outside", "particle", "trail", "hemodiluted"}  # codes written as names
    assert rank_column(att, "healthy") == "att_rel_healthy"


def test_attribution_is_labelled(tiny):
    ex = Explainer.open(tiny.mean_pool, tiny.cells)
    _, att = ex.explain("P002")
    frame = attention_frame("P002", ex.store.read("P002"), att)
    assert (frame["attribution_method"] == "gradient_x_input").all() and "att_APL" in frame.columns


def test_overlay_draws_on_an_axis_and_writes_one_png_per_class(tiny, tmp_path):
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    thumb = np.full((50, 80, 3), 230, np.uint8)
    xy = np.array([[10.0, 10.0], [100.0, 60.0]])
    assert plot_overlay(ax, thumb, 2.0, xy, np.array([0.5, 3.0]), "att") is ax
    assert len(ax.collections) == 1 and len(fig.axes) == 2  # dots + colourbar
    paths = {"APL": tmp_path / "o_APL.png", "AML": tmp_path / "o_AML.png"}
    values = {"APL": np.array([0.5, 3.0]), "AML": np.array([-1.0, 1.0])}
    store = BagStore(tiny.slides)
    with open_instances(store.meta("P001_s1"), store.read("P001_s1")) as source:
        written = write_overlays(source.overview(), xy, values, paths, "P001_s1")
    assert written == list(paths.values()) and all(p.stat().st_size > 10_000 for p in written)
