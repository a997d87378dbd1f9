"""The differential count: Clopper-Pearson intervals, what counts in the percentages, the derived measures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from mil.cells.count import clopper_pearson, count_types, differentials, interval_words
from mil.cells.vocabulary import load_vocabulary, own_vocabulary


@pytest.mark.parametrize("k, n", [(0, 10), (1, 10), (5, 10), (10, 10), (40, 200), (3, 500)])
def test_clopper_pearson_matches_scipys_exact_interval(k, n):
    lo, hi = clopper_pearson(np.array([k]), np.array([n]))
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    np.testing.assert_allclose([lo[0], hi[0]], [ref.low, ref.high], atol=1e-9)


def test_no_cells_has_no_interval():
    lo, hi = clopper_pearson(np.array([0]), np.array([0]))
    assert np.isnan(lo[0]) and np.isnan(hi[0])


def test_interval_words_for_a_200_cell_count():
    words = interval_words(200)
    lo, hi = (100 * v[0] for v in clopper_pearson(np.array([40]), np.array([200])))
    assert f"{lo:.1f}-{hi:.1f} %" in words and "200 counted cells" in words and "± 6 points" in words


CLASSES = ["blast", "promyelocyte", "segmented_neutrophil", "dysplastic_neutrophil", "erythroblast", "lymphocyte",
           "artefact", "platelet"]  # fmt: skip


def test_percentages_leave_out_uncounted_classes_and_measures_follow_the_roles():
    counts = np.array([[30, 10, 20, 5, 25, 10, 40, 7]])
    (row,) = differentials(counts, ["S1"], ["P1"], CLASSES, load_vocabulary("munich21"))
    assert row.n_cells == 147 and row.n_counted == 100  # artefacts and platelets counted as cells only
    assert row.counts["artefact"] == 40 and "artefact" not in row.pct
    assert row.pct["blast"].value == pytest.approx(30.0)
    lo, hi = clopper_pearson(np.array([30]), np.array([100]))
    assert (row.pct["blast"].lo, row.pct["blast"].hi) == pytest.approx((100 * lo[0], 100 * hi[0]))
    assert row.measures["blast_pct"].value == pytest.approx(30.0)
    assert row.measures["dysplastic_neutrophil_pct"].value == pytest.approx(100 * 5 / 25)
    me = row.measures["me_ratio"]
    assert (me.numerator, me.denominator) == (65, 25) and me.value == pytest.approx(65 / 25)


def test_a_measure_the_classes_cannot_give_is_absent():
    classes = ["lymphocyte", "monocyte", "blast"]
    (row,) = differentials(np.array([[5, 5, 0]]), ["S"], ["P"], classes, load_vocabulary("munich21"))
    assert row.measures["blast_pct"].value == 0.0  # blasts are in the model: 0 is a count
    assert "me_ratio" not in row.measures and "dysplastic_neutrophil_pct" not in row.measures
    (own,) = differentials(np.array([[5, 5]]), ["S"], ["P"], ["a", "b"], own_vocabulary(["a", "b"]))
    assert own.measures == {} and own.n_counted == 10


def test_count_types_counts_every_cell():
    assert count_types(np.array([0, 2, 2, 1, 2]), 4).tolist() == [1, 1, 3, 0]
