"""In-memory bags and padded batches: right rows, right masks, subsampling without replacement, full eval."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from features.bagstore import BagStore
from mil.training.data import eval_batches, gather, load_bags, read_patient_bag, train_batches
from tests.train_helpers import make_cohort

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    bags, _ = make_cohort(tmp_path_factory.mktemp("data"), n_patients=15, n_instances=(3, 40))
    store = BagStore(bags)
    slides: dict[str, list[str]] = {}
    for m in store.metas():
        slides.setdefault(m.patient_id, []).append(m.slide_id)
    patients = sorted(slides)
    y = np.arange(len(patients)) % 3
    return store, patients, slides, load_bags(store, patients, slides, y)


def bag_of(store, slides, patient):
    return np.concatenate([store.read_features(s) for s in sorted(slides[patient])])


def test_bags_concatenate_each_patients_slides(loaded):
    store, patients, slides, data = loaded
    two = [p for p in patients if len(slides[p]) == 2]
    assert two
    for i, p in enumerate(patients):
        rows = data.features[data.offsets[i] : data.offsets[i + 1]].numpy()
        np.testing.assert_array_equal(rows, bag_of(store, slides, p))
        assert [s for s, _ in data.slides[i]] == sorted(slides[p])
    bag = read_patient_bag(store, two[0], slides[two[0]])
    np.testing.assert_array_equal(bag.features, bag_of(store, slides, two[0]))
    assert bag.slides[1][1] == bag.slides[0][2] == len(store.read_features(sorted(slides[two[0]])[0]))
    half = load_bags(store, patients, slides, None, torch.float16)
    assert half.features.dtype == torch.float16 and half.nbytes() * 2 == data.nbytes()


def test_full_batch_pads_with_zeros_and_mask(loaded):
    store, patients, slides, data = loaded
    index = torch.tensor([0, 3, 5])
    batch = gather(data, index, CPU)
    sizes = data.sizes[index]
    assert batch.x.shape == (3, int(sizes.max()), data.dim) and batch.mask.sum(1).tolist() == sizes.tolist()
    for b, i in enumerate(index.tolist()):
        n = int(sizes[b])
        np.testing.assert_array_equal(batch.x[b, :n].numpy(), bag_of(store, slides, patients[i]))
        assert torch.all(batch.x[b, n:] == 0)


def test_subsampling_draws_distinct_instances_in_order(loaded):
    store, patients, slides, data = loaded
    index = torch.arange(len(patients))
    keep = torch.full((len(patients),), 7)
    batch = gather(data, index, CPU, keep, torch.Generator().manual_seed(0))
    assert batch.x.shape[1] == 7
    for b, p in enumerate(patients):
        full = bag_of(store, slides, p)
        n = min(7, len(full))
        assert int(batch.mask[b].sum()) == n
        # each kept row is a distinct row of this patient's bag, in the bag's order
        rows = [int(np.flatnonzero((full == row).all(1))[0]) for row in batch.x[b, :n].numpy()]
        assert rows == sorted(set(rows))
    again = gather(data, index, CPU, keep, torch.Generator().manual_seed(0))
    assert torch.equal(batch.x, again.x)


def test_train_epoch_visits_every_bag_once_and_caps_size(loaded):
    _, patients, _, data = loaded
    index = np.arange(0, len(patients), 1)
    seen, widths = Counter(), []
    for batch in train_batches(data, index, 4, torch.Generator().manual_seed(1), CPU, max_instances=10):
        seen.update(batch.index.tolist())
        widths.append(batch.x.shape[1])
        assert len(batch.index) <= 4
    assert seen == Counter(index.tolist()) and max(widths) <= 10


def test_balanced_sampling_evens_out_classes(loaded):
    _, _, _, data = loaded
    index = np.array([0, 1, 2, 3, 4, 5, 6, 9, 12])  # classes by y = i % 3: 0 x5 (0,3,6,9,12), 1 x2, 2 x2
    y = data.y[index].numpy().astype(int)
    weights = 1.0 / np.bincount(y)[y]
    drawn = Counter()
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        for batch in train_batches(data, index, 3, g, CPU, sample_weights=weights):
            drawn.update(data.y[batch.index].int().tolist())
    shares = np.array([drawn[c] for c in range(3)]) / sum(drawn.values())
    assert np.allclose(shares, 1 / 3, atol=0.03)


def test_eval_batches_cover_all_instances_within_budget(loaded):
    _, patients, _, data = loaded
    index = np.arange(len(patients))
    seen = []
    for batch in eval_batches(data, index, CPU, max_batch_instances=60):
        assert batch.mask.sum(1).tolist() == data.sizes[batch.index].tolist()
        assert len(batch.index) == 1 or batch.x.shape[0] * batch.x.shape[1] <= 60
        seen += batch.index.tolist()
    assert sorted(seen) == index.tolist()


def test_eval_budget_is_cache_sized_on_the_cpu_unless_configured():
    from mil.config import TrainConfig
    from mil.training.fit import eval_batch_instances

    assert eval_batch_instances(TrainConfig(), CPU) == 16384
    assert eval_batch_instances(TrainConfig(), torch.device("cuda")) == 262144
    assert eval_batch_instances(TrainConfig(eval_batch_instances=100), CPU) == 100


def test_half_precision_bags_gather_as_float32_with_zero_padding(loaded):
    store, patients, slides, data = loaded
    half = load_bags(store, patients, slides, None, torch.float16)
    index = torch.tensor([1, 4])
    batch = gather(half, index, CPU)
    assert batch.x.dtype == torch.float32
    full = gather(data, index, CPU)
    torch.testing.assert_close(batch.x, full.x, atol=1e-2, rtol=1e-2)
    assert torch.equal(batch.mask, full.mask) and torch.all(batch.x[~batch.mask] == 0)
