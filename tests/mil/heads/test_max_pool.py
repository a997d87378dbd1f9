"""max_pool: per-instance classifier, max over real instances."""

from __future__ import annotations

import torch

from mil.heads import create_head
from tests.mil.heads import toy


def test_logits_are_the_max_over_real_instances_only() -> None:
    head = create_head("max_pool", 6, 2).eval()
    x, mask = torch.randn(2, 7, 6), torch.ones(2, 7, dtype=torch.bool)
    mask[1, 3:] = False
    x[1, 3:] = 100.0  # padding that would win the max if it leaked
    with torch.no_grad():
        out = head(x, mask)
        alone = head(x[1:, :3], mask[1:, :3])
    assert out.instance_scores.shape == (2, 2, 7)
    torch.testing.assert_close(out.logits[0], out.instance_scores[0].amax(-1))
    torch.testing.assert_close(out.logits[1], out.instance_scores[1, :, :3].amax(-1))
    torch.testing.assert_close(out.logits[1], alone.logits[0])


def test_learns_the_witness_toy_problem() -> None:
    toy.check_learns("max_pool")
