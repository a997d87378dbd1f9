"""The pooled-statistics prior and post-hoc calibration, on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mil.baselines.pooled_stats import QUANTILES as BASELINE_QUANTILES
from mil.baselines.pooled_stats import pooled_statistics
from mil.evaluate.calibration import brier, calibration_scores, ece
from mil.heads import create_head
from mil.tasks import TaskSpec, create_task
from mil.training.calibrate import CalibratedHead, fit_calibration
from mil.training.prior import QUANTILES, PriorHead, bag_statistics, fit_prior

BINARY = TaskSpec("classification", "y", ["0", "1"])


def test_bag_statistics_match_numpy_on_padded_bags():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(2, 9, 3)), dtype=torch.float32)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    stats = bag_statistics(x, mask)
    for b, n in ((0, 9), (1, 5)):
        real = x[b, :n].numpy()
        want = [real.mean(0), real.std(0), *np.quantile(real, (0.1, 0.5, 0.9), axis=0)]
        np.testing.assert_allclose(stats[b].numpy(), np.concatenate(want), rtol=1e-5, atol=1e-6)
        # the same numbers as the baseline's featuriser: one definition of the pooled statistics
        np.testing.assert_allclose(stats[b].numpy(), pooled_statistics(real).ravel(), rtol=1e-5, atol=1e-6)
    assert QUANTILES == BASELINE_QUANTILES


def test_prior_head_starts_as_the_baseline_and_keeps_attention():
    """Gate 0: logits are exactly the fitted linear model of the bag statistics; attention is the head's."""
    rng = np.random.default_rng(1)
    task = create_task(BINARY)
    y = np.repeat([0, 1], 20).astype(np.float32)
    bags = [rng.normal(size=(30, 4)) + 0.8 * yi for yi in y]
    stats = np.stack([bag_statistics(torch.as_tensor(b[None], dtype=torch.float32),
                                     torch.ones(1, 30, dtype=torch.bool))[0].numpy() for b in bags])  # fmt: skip
    mean, scale, weight, bias = fit_prior(task, stats.astype(np.float64), y, seed=0)
    head = create_head("abmil", 4, 2)
    model = PriorHead(head, *(torch.as_tensor(a) for a in (mean, scale, weight, bias))).eval()
    x = torch.as_tensor(np.stack(bags[:3]), dtype=torch.float32)
    mask = torch.ones(3, 30, dtype=torch.bool)
    with torch.no_grad():
        out = model(x, mask)
        expected = ((stats[:3] - mean) / scale) @ weight.T + bias
        np.testing.assert_allclose(out.logits.numpy(), expected, rtol=1e-4, atol=1e-4)
        assert torch.allclose(out.attention, head(x, mask).attention)
    assert (
        task.metric(y, torch.softmax(torch.as_tensor((stats - mean) / scale @ weight.T + bias), 1).numpy())
        > 0.95
    )


def test_temperature_undoes_overconfidence_and_keeps_the_ranking():
    rng = np.random.default_rng(2)
    task = create_task(BINARY)
    true_logit = rng.normal(size=400) * 1.5
    y = (rng.random(400) < 1 / (1 + np.exp(-true_logit))).astype(np.float32)
    logits = torch.as_tensor(
        np.stack([np.zeros(400), 4 * true_logit], 1), dtype=torch.float32
    )  # 4x too sharp
    cal = fit_calibration(task, logits, torch.as_tensor(y))
    assert 3.0 < cal.temperature < 5.5
    before, after = torch.softmax(logits, 1)[:, 1].numpy(), torch.softmax(cal.apply(logits), 1)[:, 1].numpy()
    assert ece(y, after) < ece(y, before) and brier(y, after) < brier(y, before)
    assert np.array_equal(np.argsort(before, kind="stable"), np.argsort(after, kind="stable"))
    survival = create_task(TaskSpec("survival", ["t", "e"], []))
    assert fit_calibration(survival, logits[:, :1], torch.zeros(400, 2)) is None


def test_calibrated_head_keeps_the_instance_score_decomposition():
    head = create_head("abmil", 5, 3).eval()
    from mil.training.calibrate import Calibration

    model = CalibratedHead(head, Calibration(2.5, [0.1, -0.2, 0.3])).eval()
    x, mask = torch.randn(2, 7, 5), torch.ones(2, 7, dtype=torch.bool)
    mask[0, 4:] = False
    with torch.no_grad():
        out = model(x, mask)
    torch.testing.assert_close(
        out.logits, (out.attention * out.instance_scores).sum(-1), atol=1e-5, rtol=1e-5
    )


def test_ece_and_brier_known_values():
    y = np.array([0, 0, 1, 1], float)
    assert brier(y, np.array([0, 0, 1, 1.0])) == 0 and ece(y, np.array([0, 0, 1, 1.0])) == 0
    assert ece(y, np.full(4, 0.9)) == np.float64(0.4)  # one bin: mean p 0.9, observed 0.5
    task = create_task(TaskSpec("classification", "y", ["a", "b", "c"]))
    df = pd.DataFrame({"y_true": ["a", "b", "c"], "prob_a": [0.8, 0.1, 0.2], "prob_b": [0.1, 0.6, 0.7],
                       "prob_c": [0.1, 0.3, 0.1]})  # fmt: skip
    scores = calibration_scores(task, df)  # top label: right, right, wrong at 0.8, 0.6, 0.7
    assert list(scores["series"]) == ["top class"]
    assert np.isclose(scores["brier"], ((0.8 - 1) ** 2 + (0.6 - 1) ** 2 + 0.7**2) / 3)


def test_a_few_separated_held_out_patients_do_not_sharpen_the_temperature_to_its_floor():
    # 12 validation patients that the model separates: maximum likelihood alone drives T to T_MIN (logits
    # x20); the prior on log T, weighed against 12 patients' loss, keeps T near 1 (the test fold's loss was 2x
    # the uncalibrated one on MUSK1 before it)
    from mil.training.calibrate import T_MIN

    task = create_task(BINARY)
    y = torch.tensor([0.0] * 6 + [1.0] * 6)
    margin = torch.linspace(0.5, 2.0, 12) * (2 * y - 1)
    logits = torch.stack([torch.zeros(12), margin], 1)
    cal = fit_calibration(task, logits, y)
    assert cal.temperature > 0.3 > T_MIN
    assert all(abs(b) < 1.0 for b in cal.bias)
    many = fit_calibration(task, logits.repeat(50, 1), y.repeat(50))  # the same evidence from 600 patients
    assert many.temperature < cal.temperature  # sharpens where the data say so


def test_calibrated_members_are_combined_by_their_mean_logit():
    # the calibration is affine, so the members' mean calibrated logit is the calibration of their mean logit:
    # one temperature fitted on single members' held-out logits applies to the ensemble as to one member
    from mil.training.calibrate import Calibration, ensemble_outputs_of

    task = create_task(TaskSpec("classification", "y", ["a", "b", "c"]))
    members = [torch.randn(7, 3, generator=torch.Generator().manual_seed(s)) * 3 for s in range(5)]
    cal = Calibration(1.7, [0.2, -0.1, 0.0])
    combined = ensemble_outputs_of(task, [cal.apply(m) for m in members], calibrated=True)
    expected = torch.softmax(cal.apply(torch.stack(members).mean(0)), 1)
    torch.testing.assert_close(combined, expected)
    averaged = ensemble_outputs_of(task, [cal.apply(m) for m in members], calibrated=False)
    torch.testing.assert_close(
        averaged, torch.stack([torch.softmax(cal.apply(m), 1) for m in members]).mean(0)
    )
    assert not torch.allclose(combined, averaged, atol=1e-3)


def test_validation_on_the_prior_keeps_the_baseline_start_unless_an_epoch_beats_it():
    # selection validation + prior: epoch 0 (the pooled-statistics baseline itself) is scored on the
    # validation patients; training that only makes it worse (lr 50) is thrown away, as cross-fitting does
    from mil.config import TrainConfig
    from mil.training.data import BagSet
    from mil.training.fit import FitSetup
    from mil.training.recipe import FoldParts, train_fold

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 20)
    bags = [rng.normal(size=(30, 4)).astype(np.float32) + 0.8 * c for c in y]
    offsets = torch.as_tensor(np.concatenate([[0], np.cumsum([len(b) for b in bags])]))
    data = BagSet([f"P{i}" for i in range(40)], torch.from_numpy(np.concatenate(bags)), offsets,
                  torch.as_tensor(y, dtype=torch.float32), [[(f"P{i}", 30)] for i in range(40)])  # fmt: skip
    parts = FoldParts(np.arange(0, 24), np.arange(24, 32), np.arange(32, 40))
    config = TrainConfig(selection="validation", prior="pooled_stats", calibration="none", epochs=4, patience=4,
                         lr=50.0, device="cpu", batch_size=4)  # fmt: skip
    fitted = train_fold(create_task(BINARY), data, parts, config, FitSetup(torch.device("cpu"), 0)).chosen
    assert fitted.best_epoch == 0 and len(fitted.history) == 4
    assert fitted.models[0].gate.detach().item() == 0.0  # the head's share of the kept model: none


def _bags_of(sizes: list[int], dim: int = 6, seed: int = 0):
    from mil.training.data import BagSet

    rng = np.random.default_rng(seed)
    y = np.array([i % 2 for i in range(len(sizes))])
    bags = [rng.normal(size=(n, dim)).astype(np.float32) * 2 + 0.7 * c for n, c in zip(sizes, y, strict=True)]
    offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(sizes)]))
    return BagSet([f"P{i}" for i in range(len(sizes))], torch.from_numpy(np.concatenate(bags)), offsets,
                  torch.as_tensor(y, dtype=torch.float32), [[(f"P{i}", n)] for i, n in enumerate(sizes)])  # fmt: skip


def test_precomputed_statistics_are_those_of_the_padded_batch():
    """The prior's statistics are computed once per bag (`add_statistics`) and handed to whole-bag batches:
    they must be what the head would compute from the batch (to float32 rounding of the padded sums: the
    quantiles exactly), and a subsampled batch gets none."""
    from mil.training.data import gather
    from mil.training.prior import add_statistics

    bags = _bags_of([37, 5, 120, 64, 1, 90])
    add_statistics(bags)
    index = torch.tensor([2, 0, 4, 5])
    batch = gather(bags, index, torch.device("cpu"))
    computed = bag_statistics(batch.x, batch.mask)
    torch.testing.assert_close(batch.statistics, computed, rtol=1e-6, atol=1e-6)
    assert torch.equal(batch.statistics[:, 12:], computed[:, 12:])  # q10, q50, q90 of the 6 features
    cut = gather(bags, index, torch.device("cpu"), keep=torch.tensor([10, 10, 10, 10]),
                 generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert cut.statistics is None  # bag 2 (120) and 5 (90) are cut to a sample: its own statistics apply


def test_training_and_prediction_with_precomputed_statistics_are_unchanged(monkeypatch):
    """Cross-fitted members with a prior, trained and applied once with the statistics precomputed and once
    computed at every forward pass (the cache switched off), give the same held-out logits."""
    from mil.config import TrainConfig
    from mil.training import prior, recipe
    from mil.training.fit import FitSetup, infer
    from mil.training.recipe import FoldParts, train_fold

    def run(cache: bool):
        data = _bags_of([30 + 7 * (i % 5) for i in range(40)], seed=1)
        monkeypatch.setattr(recipe, "add_statistics", prior.add_statistics if cache else lambda bags: None)
        inner = [np.arange(k, 32, 3) for k in range(3)]
        parts = FoldParts(np.arange(0, 32), np.arange(0, 0), np.arange(32, 40), inner)
        config = TrainConfig(selection="crossfit", inner_folds=3, prior="pooled_stats", calibration="none",
                             epochs=3, patience=3, device="cpu", batch_size=4)  # fmt: skip
        fitted = train_fold(create_task(BINARY), data, parts, config, FitSetup(torch.device("cpu"), 0)).chosen
        assert (data.statistics is not None) == cache
        return fitted.best_epoch, torch.cat([infer(m, data, np.arange(32, 40), torch.device("cpu"), 10**6)
                                             for m in fitted.models])  # fmt: skip

    with_cache, without = run(True), run(False)
    assert with_cache[0] == without[0] and with_cache[0] > 0  # training moved off the prior's start
    torch.testing.assert_close(with_cache[1], without[1], rtol=1e-5, atol=1e-5)
