"""mean_pool: the no-attention baseline."""

from __future__ import annotations

import torch

from mil.heads import create_head
from tests.mil.heads import toy


def test_logits_are_the_mean_of_instance_scores() -> None:
    head = create_head("mean_pool", 6, 3).eval()
    x, mask = torch.randn(2, 7, 6), torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False
    with torch.no_grad():
        out = head(x, mask)
    mean = out.instance_scores.sum(-1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(out.logits, mean, atol=1e-5, rtol=1e-5)
    assert out.attention is None and head.attention_kind == "none"


def test_learns_the_witness_toy_problem() -> None:
    toy.check_learns("mean_pool")
