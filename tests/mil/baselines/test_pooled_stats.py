"""`pooled_stats`: the five statistics per feature equal numpy's own, for any bag size and dtype, from memory
or streamed from a store."""

from __future__ import annotations

import numpy as np
import pytest

from features.bagstore import BagStore
from mil.baselines import BASELINES, create_baseline, describe_baseline
from mil.baselines.base import bags_from_store
from mil.baselines.pooled_stats import pooled_statistics
from tests.train_helpers import make_cohort


@pytest.mark.parametrize("n", [1, 2, 7, 2000])
def test_statistics_equal_numpys(n):
    bag = np.random.default_rng(n).normal(size=(n, 5)).astype(np.float32)
    stats = pooled_statistics(bag)
    assert stats.shape == (5, 5)
    np.testing.assert_allclose(stats[0], bag.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats[1], bag.std(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats[2:], np.quantile(bag, [0.1, 0.5, 0.9], axis=0), rtol=1e-6, atol=1e-6)


def test_float16_bags_and_a_one_cell_bag():
    bag = np.arange(12, dtype=np.float16).reshape(4, 3)
    np.testing.assert_allclose(
        pooled_statistics(bag)[2:], np.quantile(bag.astype(np.float32), [0.1, 0.5, 0.9], axis=0)
    )
    one = pooled_statistics(np.array([[1.0, -2.0]], np.float32))
    assert (
        one[1].tolist() == [0.0, 0.0] and one[2:].tolist() == [[1.0, -2.0]] * 3
    )  # SD 0, every quantile = the cell


def test_features_are_one_row_per_bag_with_named_columns():
    baseline = create_baseline("pooled_stats")
    bags = [np.full((3, 2), i, np.float32) for i in range(4)]
    found = baseline.features(iter(bags), dim=2)
    assert found.values.shape == (4, 10) and found.names[:3] == ["mean[0]", "mean[1]", "sd[0]"]
    assert found.names[-1] == "q90[1]" and found.values[:, 0].tolist() == [0, 1, 2, 3]
    assert (
        "pooled_stats" in BASELINES.names() and describe_baseline("pooled_stats") == "the pooled statistics"
    )
    assert describe_baseline("gone") == "the gone baseline"  # a name from an older run, not registered now


def test_streaming_from_the_store_equals_the_concatenated_bags(tmp_path):
    bags, _ = make_cohort(tmp_path, n_patients=8, n_instances=(5, 9))
    store = BagStore(bags)
    slides: dict[str, list[str]] = {}
    for meta in store.metas():
        slides.setdefault(meta.patient_id, []).append(meta.slide_id)
    patients = sorted(slides)
    assert any(len(s) == 2 for s in slides.values())  # the multi-slide case is exercised
    streamed = create_baseline("pooled_stats").features(bags_from_store(store, patients, slides), 16)
    for i, p in enumerate(patients):
        cells = np.concatenate([store.read_features(s) for s in slides[p]])
        np.testing.assert_allclose(streamed.values[i], pooled_statistics(cells).ravel())
