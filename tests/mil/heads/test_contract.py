"""The contract every registered head keeps (mil/heads/base.py), run over all of HEADS.

Padding in these batches holds large random values, not zeros, so a head that lets padding leak into a sum,
a softmax, a landmark or a conv grid fails the bag-alone comparison.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from typer.testing import CliRunner

from features.core.errors import ConfigError
from mil.heads import HEADS, HeadOutput, MILHead, create_head, head_params_model, validate_head_params

NAMES = HEADS.names()
IN_DIM = 12
ATOL = 1e-5


def make(name: str, n_outputs: int = 3, in_dim: int = IN_DIM, **params) -> MILHead:
    torch.manual_seed(0)
    return create_head(name, in_dim, n_outputs, **params).eval()


def pad_bags(bags: list[torch.Tensor], width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Each bag at random (order-keeping) positions of a row of `width`, the rest junk."""
    g = torch.Generator().manual_seed(seed)
    x = 10.0 * torch.randn(len(bags), width, bags[0].shape[1], generator=g)
    mask = torch.zeros(len(bags), width, dtype=torch.bool)
    for i, bag in enumerate(bags):
        positions = torch.randperm(width, generator=g)[: len(bag)].sort().values
        x[i, positions], mask[i, positions] = bag, True
    return x, mask


def test_registry_has_the_documented_heads() -> None:
    expected = {
        "mean_pool",
        "max_pool",
        "abmil",
        "gated_abmil",
        "clam_sb",
        "clam_mb",
        "transmil",
        "dsmil",
        "scemila",
    }
    assert set(NAMES) == expected


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_output_shapes_and_attention_normalisation(name: str, n_outputs: int) -> None:
    head = make(name, n_outputs)
    x, mask = pad_bags([torch.randn(n, IN_DIM) for n in (5, 1, 9)], width=11)
    with torch.no_grad():
        out = head(x, mask)
    assert isinstance(out, HeadOutput)
    assert out.logits.shape == (3, n_outputs) and torch.isfinite(out.logits).all()
    assert head.attention_kind in ("attention", "per_class_attention", "none")
    if head.attention_kind == "none":
        assert out.attention is None
    else:
        k = 1 if head.attention_kind == "attention" else n_outputs
        assert out.attention.shape == (3, k, 11)
        assert (out.attention >= 0).all()
        assert torch.allclose(out.attention.sum(-1), torch.ones(3, k), atol=ATOL)
        assert (out.attention.masked_select(~mask[:, None, :].expand_as(out.attention)) == 0).all()
    if out.instance_scores is not None:
        assert out.instance_scores.shape == (3, n_outputs, 11)
        assert (
            out.instance_scores.masked_select(~mask[:, None, :].expand_as(out.instance_scores)) == 0
        ).all()
    assert out.aux_losses == {}  # eval mode, no target
    # every head exposes its bag embedding: what FusedHead joins with the covariates
    assert out.pooled is not None and out.pooled.dim() == 2 and out.pooled.shape[0] == 3
    assert torch.isfinite(out.pooled).all()


@pytest.mark.parametrize("name", NAMES)
def test_bag_alone_equals_bag_padded_in_a_batch(name: str) -> None:
    head = make(name)
    g = torch.Generator().manual_seed(1)
    bags = [torch.randn(n, IN_DIM, generator=g) for n in (7, 1, 20, 13)]
    x, mask = pad_bags(bags, width=26)
    with torch.no_grad():
        batch = head(x, mask)
        for i, bag in enumerate(bags):
            alone = head(bag[None], torch.ones(1, len(bag), dtype=torch.bool))
            torch.testing.assert_close(batch.logits[i], alone.logits[0], atol=ATOL, rtol=1e-4)
            torch.testing.assert_close(batch.pooled[i], alone.pooled[0], atol=ATOL, rtol=1e-4)
            for field in ("attention", "instance_scores"):
                got, want = getattr(batch, field), getattr(alone, field)
                if want is not None:
                    torch.testing.assert_close(got[i][:, mask[i]], want[0], atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_all_padding_row_is_finite_and_does_not_disturb_the_others(name: str) -> None:
    head = make(name)
    x, mask = pad_bags([torch.randn(6, IN_DIM), torch.randn(4, IN_DIM)], width=8)
    mask[1] = False  # a row with no real instance at all
    with torch.no_grad():
        out = head(x, mask)
        first = head(x[:1, mask[0]], mask[:1, mask[0]])
    assert torch.isfinite(out.logits).all()
    for t in (out.attention, out.instance_scores):
        if t is not None:
            assert torch.isfinite(t).all() and (t[1] == 0).all()
    torch.testing.assert_close(out.logits[0], first.logits[0], atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("name", [n for n in NAMES if HEADS.get(n).factory.permutation_invariant])
def test_pooling_heads_are_permutation_invariant(name: str) -> None:
    head = make(name)
    x, mask = torch.randn(2, 15, IN_DIM), torch.ones(2, 15, dtype=torch.bool)
    perm = torch.randperm(15)
    with torch.no_grad():
        out, shuffled = head(x, mask), head(x[:, perm], mask)
    torch.testing.assert_close(out.logits, shuffled.logits, atol=ATOL, rtol=1e-4)
    if out.attention is not None:
        torch.testing.assert_close(out.attention[..., perm], shuffled.attention, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_training_step_reaches_every_parameter(name: str) -> None:
    """Train mode with a target: the task loss plus aux losses back-propagate into every parameter (no dead
    branch) and the aux losses are finite scalars."""
    head = make(name).train()
    x, mask = pad_bags([torch.randn(n, IN_DIM) for n in (12, 30, 17)], width=30)
    target = torch.tensor([0, 2, 1])
    out = head(x, mask, target)
    for value in out.aux_losses.values():
        assert value.dim() == 0 and torch.isfinite(value)
    (F.cross_entropy(out.logits, target) + sum(out.aux_losses.values())).backward()
    dead = [n for n, p in head.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not dead, f"{name}: no finite gradient for {dead}"


@pytest.mark.parametrize("name", NAMES)
def test_eval_is_deterministic(name: str) -> None:
    head = make(name)
    x, mask = torch.randn(2, 9, IN_DIM), torch.ones(2, 9, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(head(x, mask).logits, head(x, mask).logits, atol=0, rtol=0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_dim", [64, 384])
def test_defaults_fit_cytomorph_and_dinobloom_features(name: str, in_dim: int) -> None:
    """Defaults build for 64-d cytomorph and 384-d DinoBloom-S features; small inputs get small heads."""
    head = make(name, in_dim=in_dim)
    n_params = sum(p.numel() for p in head.parameters())
    assert n_params < (60_000 if in_dim == 64 else 1_500_000), n_params
    with torch.no_grad():
        out = head(torch.randn(2, 10, in_dim), torch.ones(2, 10, dtype=torch.bool))
    assert out.logits.shape == (2, 3)
    assert all(p.device.type == "cpu" for p in head.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_params_model_forbids_unknown_keys(name: str) -> None:
    model = head_params_model(name)
    assert issubclass(model, BaseModel) and model.model_config.get("extra") == "forbid"
    model()  # every param has a default
    with pytest.raises(ConfigError) as err:
        create_head(name, IN_DIM, 2, hidden_dimm=32)
    message = str(err.value)
    assert "\n" not in message and name in message and "hidden_dimm" in message and "hidden_dim" in message
    with pytest.raises(ConfigError, match="dropout"):
        validate_head_params(name, {"dropout": 1.5})


def test_unknown_head_and_bad_dims_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="abmil"):
        create_head("abmill", IN_DIM, 2)
    with pytest.raises(ConfigError, match="in_dim"):
        create_head("abmil", 0, 2)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_input_shapes_fail_with_the_shapes(name: str) -> None:
    head = make(name)
    with pytest.raises(ValueError, match=str(IN_DIM)):
        head(torch.randn(1, 4, IN_DIM + 1), torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        head(torch.randn(1, 4, IN_DIM), torch.ones(1, 4))


def test_mil_list_heads_shows_every_head_with_its_summary() -> None:
    from mil.cli import app

    result = CliRunner().invoke(app, ["list", "heads"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for entry in HEADS.entries():
        assert entry.name in result.output
        assert entry.summary and entry.summary[:30] in result.output


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("join_pooled", [False, True])
def test_fused_head_keeps_the_image_part_and_uses_the_covariates(name: str, join_pooled: bool) -> None:
    from mil.heads.fused import FusedHead

    head = make(name)
    torch.manual_seed(1)
    fused = FusedHead(head, n_covariates=4, join_pooled=join_pooled).eval()
    out = head(*pad_bags([torch.randn(3, IN_DIM)], width=3))
    assert fused.fusion.in_features == 4 + fused.embed[0].out_features + (
        out.pooled.shape[1] if join_pooled else 0
    )
    g = torch.Generator().manual_seed(2)
    bags = [torch.randn(n, IN_DIM, generator=g) for n in (6, 1, 15)]
    x, mask = pad_bags(bags, width=17)
    cov = torch.randn(3, 4, generator=g)
    with torch.no_grad():
        for p in fused.fusion.parameters():  # a trained fusion layer: non-zero everywhere
            p.copy_(torch.randn(p.shape, generator=g))
        image, out = head(x, mask), fused(x, mask, covariates=cov)
        other = fused(x, mask, covariates=cov + 1.0)
        for i, bag in enumerate(bags):  # a bag alone or padded: same fused logits
            alone = fused(bag[None], torch.ones(1, len(bag), dtype=torch.bool), covariates=cov[i : i + 1])
            torch.testing.assert_close(out.logits[i], alone.logits[0], atol=ATOL, rtol=1e-4)
        image_part = fused(x, mask)  # no covariates: the image part exactly, for explanations
    assert out.logits.shape == image.logits.shape
    assert not torch.allclose(out.logits, other.logits)  # the covariates move the prediction
    torch.testing.assert_close(image_part.logits, image.logits)
    for field in ("attention", "instance_scores", "pooled"):  # attention keeps its meaning and form
        want = getattr(image, field)
        if want is None:
            assert getattr(out, field) is None
        else:
            torch.testing.assert_close(getattr(out, field), want)
    fused.train()
    loss = fused(x, mask, covariates=cov).logits.square().sum()
    loss.backward()
    assert all(p.grad is not None for p in fused.fusion.parameters())


@pytest.mark.parametrize("kind", ["classification", "survival"])
def test_a_fused_head_started_from_a_linear_model_is_the_head_plus_that_models_logits(kind: str) -> None:
    """The fused head's start (`start_from_linear`): image logits + the fitted covariates-only model's own
    output on the same covariates, exactly (what `mil.training.fusion.fuse` fine-tunes from)."""
    from mil.baselines.linear import LogisticModel, RidgeCox
    from mil.heads.fused import FusedHead

    g = np.random.default_rng(3)
    cov = g.normal(2.0, 3.0, size=(40, 4))
    if kind == "survival":
        head, linear = create_head("abmil", IN_DIM, 1), RidgeCox(1.0)
        y = np.stack([g.exponential(10, 40), g.random(40) < 0.7], axis=1)
    else:
        head, linear = create_head("abmil", IN_DIM, 3), LogisticModel(1.0, 3)
        y = np.arange(40) % 3
    linear.fit(cov + np.outer(np.arange(40) % 3, [1.0, 0, 0, 0]), y)
    fused = FusedHead(head, n_covariates=4).eval()
    fused.start_from_linear(*linear.logit_weights())
    bags = [torch.randn(n, IN_DIM, generator=torch.Generator().manual_seed(n)) for n in (5, 9, 2)]
    x, mask = pad_bags(bags, width=9)
    c = torch.as_tensor(cov[:3], dtype=torch.float32)
    with torch.no_grad():
        got = fused(x, mask, covariates=c).logits - head(x, mask).logits
    want = linear.predict(cov[:3])
    if kind == "classification":  # the model's probabilities are the softmax of the logits it started from
        got, want = torch.softmax(got, dim=1), want
    torch.testing.assert_close(got, torch.as_tensor(want, dtype=torch.float32), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="must be 3 x 4"):
        FusedHead(create_head("abmil", IN_DIM, 3), n_covariates=4).start_from_linear(
            np.zeros(5), np.ones(5), np.zeros((3, 5)), np.zeros(3)
        )
