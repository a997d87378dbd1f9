"""The fused model (`mil.training.jobs.fuse`): a x the image-only logit + the covariates-only linear model, with
the one scale a fitted on held-out patients (`fit_image_scale`); on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mil.config import TrainConfig
from mil.heads import create_head
from mil.tasks import TaskSpec, create_task
from mil.training.calibrate import fit_image_scale
from mil.training.data import BagSet
from mil.training.fit import FitSetup, fit_fold, infer
from mil.training.jobs import fuse
from tests.train_helpers import single_thread  # noqa: F401

BINARY = TaskSpec("classification", "y", ["0", "1"])
SURVIVAL = TaskSpec("survival", ["time", "event"])


def two_class(score: np.ndarray) -> torch.Tensor:
    """Binary 2-class logits whose log-odds are `score`."""
    s = torch.as_tensor(score, dtype=torch.float32)[:, None]
    return torch.cat([-s / 2, s / 2], dim=1)


@pytest.mark.parametrize("kind", ["classification", "survival"])
def test_the_image_scale_undoes_an_over_or_under_confident_image_model(kind: str) -> None:
    rng = np.random.default_rng(0)
    n = 600
    truth = rng.normal(0, 1.5, n)  # the true log-odds / log-hazard
    if kind == "classification":
        task = create_task(BINARY)
        y = torch.as_tensor(rng.random(n) < 1 / (1 + np.exp(-truth)), dtype=torch.float32)

        def logits(score):
            return two_class(score)
    else:
        task = create_task(SURVIVAL)
        time = rng.exponential(np.exp(-truth))
        y = torch.as_tensor(np.stack([time, rng.random(n) < 0.8], axis=1), dtype=torch.float32)

        def logits(score):
            return torch.as_tensor(score, dtype=torch.float32)[:, None]

    offset = logits(np.zeros(n))
    over = fit_image_scale(task, logits(3 * truth), offset, y)  # 3x too sharp: a near 1/3
    under = fit_image_scale(task, logits(truth / 2), offset, y)  # 2x too soft: a near 2
    noise = fit_image_scale(task, logits(rng.normal(0, 1.5, n)), offset, y)  # nothing to read: a near 0
    assert 0.25 < over < 0.45 and 1.6 < under < 2.5 and noise < 0.2
    # the prior (centred on a = 1) binds when few patients are held out, not when many are
    few = fit_image_scale(task, logits(3 * truth[:8]), offset[:8], y[:8])
    assert over < few < 1.0
    assert (
        fit_image_scale(task, logits(truth[:0]), offset[:0], y[:0]) == 1.0
    )  # none held out: the prior's mode


def test_the_image_scale_is_fitted_beside_the_covariates_offset() -> None:
    """The offset is held fixed: where it already carries the image's evidence, a is smaller than without."""
    rng = np.random.default_rng(1)
    n = 600
    image, other = rng.normal(0, 1.5, n), rng.normal(0, 1.5, n)
    task = create_task(BINARY)
    y = torch.as_tensor(rng.random(n) < 1 / (1 + np.exp(-(image + other))), dtype=torch.float32)
    alone = fit_image_scale(task, two_class(image), two_class(np.zeros(n)), y)
    beside = fit_image_scale(task, two_class(image), two_class(other), y)
    assert 0.85 < beside < 1.2 and alone < beside  # with the other half of the evidence known, a is ~1


def bag_set(rng: np.random.Generator, y: np.ndarray, covariates: np.ndarray) -> BagSet:
    """Bags of 20 4-d cells; 20 % of a positive patient's cells shifted by 1.5 along feature 0."""
    bags = []
    for label in y:
        x = rng.normal(size=(20, 4)).astype(np.float32)
        x[rng.random(20) < 0.15 * label, 0] += 1.5
        bags.append(x)
    offsets = torch.as_tensor(np.concatenate([[0], np.cumsum([len(b) for b in bags])]), dtype=torch.int64)
    patients = [f"P{i:03d}" for i in range(len(y))]
    return BagSet(patients, torch.as_tensor(np.concatenate(bags)), offsets,
                  torch.as_tensor(y, dtype=torch.float32), [[(p, 20)] for p in patients],
                  torch.as_tensor(covariates, dtype=torch.float32))  # fmt: skip


def test_fuse_keeps_the_image_ranking_with_noise_covariates_and_weighs_a_real_one() -> None:
    from mil.tasks.base import binary_auc

    rng = np.random.default_rng(2)
    n = 400
    y = np.arange(n) % 2
    real = 1.5 * y + rng.normal(size=n)  # a blood count that carries the diagnosis
    noise = rng.normal(size=(n, 2))  # age and sex drawn at random
    data = bag_set(rng, y, np.column_stack([real, noise]))
    train, val, test = np.arange(0, 200), np.arange(200, 260), np.arange(260, n)
    task = create_task(BINARY)
    config = TrainConfig(
        target="y", epochs=15, patience=5, batch_size=16, device="cpu", head="abmil", lr=1e-2
    )
    setup = FitSetup(torch.device("cpu"), seed=0)
    torch.manual_seed(0)
    image_model = create_head("abmil", 4, 2)
    fit_fold(image_model, task, data, train, val, config, setup)
    logits = infer(image_model, data, test, setup.device, 10_000)
    image = logits[:, 1] - logits[:, 0]

    def fused_scores(columns: list[int]):
        part = BagSet(
            data.patients, data.features, data.offsets, data.y, data.slides, data.covariates[:, columns]
        )
        fused = fuse(image_model, task, part, train, val, config, setup)
        logits = infer(fused, part, test, setup.device, 10_000)
        return fused, logits[:, 1] - logits[:, 0]

    y_test = y[test]
    image_auc = binary_auc(y_test, image.numpy())
    assert image_auc > 0.75  # the image model learnt something to keep
    fused, score = fused_scores([1, 2])  # noise only: the image ranking is kept
    assert fused.image_scale > 0.3
    assert abs(binary_auc(y_test, score.numpy()) - image_auc) <= 0.01
    ranks = [np.argsort(np.argsort(v)) for v in (score.numpy(), image.numpy())]
    assert np.corrcoef(*ranks)[0, 1] > 0.97
    fused, score = fused_scores([0, 1, 2])  # a real covariate beside them: it gets the weight
    weight = fused.fusion.weight[1, :3] - fused.fusion.weight[0, :3]  # log-odds per unit of each column
    assert weight[0] > 0.5 and weight[0] > 2 * weight[1:].abs().max()
    assert binary_auc(y_test, score.numpy()) > image_auc + 0.05
    torch.testing.assert_close(  # the explanation's image part is the image model's, whatever the scale
        fused(data.features[None, :20], torch.ones(1, 20, dtype=torch.bool)).logits,
        image_model(data.features[None, :20], torch.ones(1, 20, dtype=torch.bool)).logits,
    )
