"""Per-instance attention averaged over fold models, its spread, the relative scale, and gradient x input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from features.bagstore import BagStore
from mil.explain.attention import ATTRIBUTION_METHOD, explain_patient, gradient_x_input
from mil.explain.cohort import Explainer
from mil.heads import create_head
from mil.training.data import read_patient_bag
from mil.training.predict import ensemble_outputs, load_run
from tests.mil.explain.cohort import get_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return get_tiny(tmp_path_factory)


def test_attention_is_the_mean_of_the_fold_models_with_their_spread(tiny):
    _, models, spec = load_run(tiny.abmil)
    store = BagStore(tiny.cells)
    bag = read_patient_bag(store, "P001", ["P001"])
    att = explain_patient(models, bag.features, spec.classes, "P001", bag.slides)
    per_model = np.stack(
        [o.attention[0].numpy() for o in ensemble_outputs(models, bag.features)]
    )  # M x 1 x N
    np.testing.assert_allclose(att.mean, per_model.mean(0), rtol=1e-6)
    np.testing.assert_allclose(att.sd, per_model.std(0), rtol=1e-5, atol=1e-9)
    assert att.rows == ["all"] and att.class_agnostic and att.method == "attention"
    assert att.mean.sum() == pytest.approx(1.0, abs=1e-5) and (att.sd > 0).any()
    # attention x N: 1 = uniform; one model alone has no spread
    np.testing.assert_allclose(att.relative(), att.mean * att.n, rtol=1e-5)
    single = explain_patient(models[:1], bag.features, spec.classes, "P001", bag.slides)
    assert not single.sd.any()
    assert att.row("APL") == att.row("healthy") == 0
    assert att.scores.shape == (3, att.n) and att.prediction.sum() == pytest.approx(1.0, abs=1e-5)


def test_per_class_head_has_one_row_per_class(tiny):
    ex = Explainer.open(tiny.clam_mb, tiny.slides)
    assert ex.patient_slides["P001"] == ["P001_s1"]  # slides mapped to patients through the run's labels
    _, att = ex.explain("P001")
    assert att.rows == ["AML", "APL", "healthy"] and not att.class_agnostic
    assert att.row("APL") == 1
    np.testing.assert_allclose(att.mean.sum(1), 1.0, atol=1e-5)


def test_head_without_attention_gets_gradient_x_input(tiny):
    ex = Explainer.open(tiny.mean_pool, tiny.cells)
    assert ex.method == ATTRIBUTION_METHOD
    _, att = ex.explain("P002")
    assert att.method == ATTRIBUTION_METHOD and att.rows == ["AML", "APL", "healthy"]
    assert att.mean.shape == (3, att.n) and np.isfinite(att.mean).all()
    # relative(): divided by the mean absolute value, so its mean |.| is 1 whatever the sign
    np.testing.assert_allclose(np.abs(att.relative()).mean(1), 1.0, rtol=1e-5)


def test_gradient_x_input_matches_a_per_instance_slow_twin():
    """The vectorised attribution (one backward per class over the whole bag) equals, instance by instance,
    x_i . d logit_c / d x_i computed from the full Jacobian."""
    torch.manual_seed(0)
    for name in ("mean_pool", "max_pool"):
        head = create_head(name, in_dim=6, n_outputs=3, dropout=0.0).eval()
        x = np.random.default_rng(1).normal(size=(7, 6)).astype(np.float32)
        fast = gradient_x_input(head, x)

        def logits(z: torch.Tensor, head=head) -> torch.Tensor:
            return head(z[None], torch.ones(1, len(z), dtype=torch.bool)).logits[0]

        jac = torch.autograd.functional.jacobian(logits, torch.from_numpy(x))  # C x N x D
        slow = np.array([[float(jac[c, i] @ torch.from_numpy(x[i])) for i in range(7)] for c in range(3)])
        np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-6)
    # max pooling: only each class's arg-max instance receives gradient (documented weakness)
    assert ((fast != 0).sum(1) <= 1).all()


def test_a_slide_keeps_the_patients_attention_unrenormalised(tiny):
    """Two slides of one patient: each slide's rows are the patient's attention restricted, not rescaled."""
    _, models, spec = load_run(tiny.abmil)
    store = BagStore(tiny.cells)
    bag = read_patient_bag(store, "P001+2", ["P001", "P002"])
    att = explain_patient(models, bag.features, spec.classes, "P001+2", bag.slides)
    first, second = att.slide_rows("P001"), att.slide_rows("P002")
    assert (first.start, second.stop) == (0, att.n)
    total = att.mean[0, first].sum() + att.mean[0, second].sum()
    assert total == pytest.approx(1.0, abs=1e-5) and att.mean[0, first].sum() < 0.99
