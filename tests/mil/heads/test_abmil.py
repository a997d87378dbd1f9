"""abmil and gated_abmil (Ilse et al. 2018)."""

from __future__ import annotations

import pytest
import torch

from mil.heads import create_head
from tests.mil.heads import toy


def test_gated_and_plain_attention_differ() -> None:
    torch.manual_seed(0)
    plain = create_head("abmil", 6, 2).eval()
    torch.manual_seed(0)
    gated = create_head("gated_abmil", 6, 2).eval()
    assert plain.attention.gate is None and gated.attention.gate is not None
    assert sum(p.numel() for p in gated.parameters()) > sum(p.numel() for p in plain.parameters())
    x, mask = torch.randn(1, 9, 6), torch.ones(1, 9, dtype=torch.bool)
    with torch.no_grad():
        assert not torch.allclose(plain(x, mask).attention, gated(x, mask).attention)


@pytest.mark.parametrize("name", ["abmil", "gated_abmil"])
@pytest.mark.parametrize("pool_stats", [False, True])
def test_logits_are_the_attention_weighted_instance_scores(name: str, pool_stats: bool) -> None:
    """The linear classifier makes bag logits = sum_i a_i s_i exactly (plus, with pool_stats, the one
    bag-statistics term, the same for every cell); explanations rely on it."""
    head = create_head(name, 6, 3, pool_stats=pool_stats)
    x, mask = torch.randn(2, 8, 6), torch.ones(2, 8, dtype=torch.bool)
    mask[0, 5:] = False
    with torch.no_grad():
        head.train()(x * 3 + 1, mask)  # move the running statistics off the identity
        out = head.eval()(x, mask)
    extra = torch.zeros_like(out.logits)
    if pool_stats:
        from mil.heads.blocks import masked_mean_sd

        with torch.no_grad():
            extra = head.stats_classifier(head.stats_norm(masked_mean_sd(x, mask)))
    torch.testing.assert_close(
        out.logits, (out.attention * out.instance_scores).sum(-1) + extra, atol=1e-5, rtol=1e-5
    )


def test_pooled_statistics_are_standardised_by_running_statistics() -> None:
    """The stats branch sees per-bag mean and SD standardised over the bags seen in training: for a single
    repeated batch the running statistics converge to that batch's, so eval outputs have mean 0, SD 1."""
    from mil.heads.blocks import RunningNorm, masked_mean_sd

    x, mask = torch.randn(16, 10, 4) * 0.1 + torch.randn(16, 1, 4), torch.ones(16, 10, dtype=torch.bool)
    mask[3, 6:] = False
    stats = masked_mean_sd(x, mask)
    torch.testing.assert_close(stats[3, :4], x[3, :6].mean(0))
    torch.testing.assert_close(stats[3, 4:], x[3, :6].std(0, unbiased=False))
    norm = RunningNorm(8)
    assert torch.equal(norm.eval()(stats), stats)  # untrained: the identity
    for _ in range(300):
        norm.train()(stats)
    z = norm.eval()(stats)
    torch.testing.assert_close(z.mean(0), torch.zeros(8), atol=1e-3, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(8), atol=0.05, rtol=0)  # eps


def test_hidden_sizes_scale_with_the_input() -> None:
    assert create_head("abmil", 384, 2).embed[0].out_features == 256
    assert create_head("abmil", 64, 2).embed[0].out_features == 64
    head = create_head("abmil", 64, 2, hidden_dim=32, attention_dim=8, dropout=0.0)
    assert head.embed[0].out_features == 32 and head.attention.score.in_features == 8


@pytest.mark.parametrize("name", ["abmil", "gated_abmil"])
def test_learns_the_witness_and_attends_to_it(name: str) -> None:
    toy.check_learns(name)
