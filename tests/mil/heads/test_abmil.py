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
def test_logits_are_the_attention_weighted_instance_scores(name: str) -> None:
    """The linear classifier makes bag logits = sum_i a_i s_i exactly; explanations rely on it."""
    head = create_head(name, 6, 3).eval()
    x, mask = torch.randn(2, 8, 6), torch.ones(2, 8, dtype=torch.bool)
    mask[0, 5:] = False
    with torch.no_grad():
        out = head(x, mask)
    torch.testing.assert_close(
        out.logits, (out.attention * out.instance_scores).sum(-1), atol=1e-5, rtol=1e-5
    )


def test_hidden_sizes_scale_with_the_input() -> None:
    assert create_head("abmil", 384, 2).embed[0].out_features == 256
    assert create_head("abmil", 64, 2).embed[0].out_features == 64
    head = create_head("abmil", 64, 2, hidden_dim=32, attention_dim=8, dropout=0.0)
    assert head.embed[0].out_features == 32 and head.attention.score.in_features == 8


@pytest.mark.parametrize("name", ["abmil", "gated_abmil"])
def test_learns_the_witness_and_attends_to_it(name: str) -> None:
    toy.check_learns(name)
