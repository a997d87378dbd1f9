"""scemila: SCEMILA's one-attention-per-class head (Hehr et al. 2023)."""

from __future__ import annotations

import torch

from mil.heads import create_head
from tests.mil.heads import toy


def test_one_attention_row_per_class() -> None:
    head = create_head("scemila", 6, 4).eval()
    assert head.attention_kind == "per_class_attention"
    with torch.no_grad():
        out = head(torch.randn(2, 9, 6), torch.ones(2, 9, dtype=torch.bool))
    assert out.attention.shape == (2, 4, 9) and out.instance_scores.shape == (2, 4, 9)
    assert not torch.allclose(out.attention[:, 0], out.attention[:, 1])


def test_each_class_is_scored_by_its_own_classifier() -> None:
    """Changing class 2's classifier changes logit 2 and nothing else."""
    head = create_head("scemila", 6, 3).eval()
    x, mask = torch.randn(2, 9, 6), torch.ones(2, 9, dtype=torch.bool)
    with torch.no_grad():
        before = head(x, mask).logits
        head.fc2.weight[2].add_(1.0)
        after = head(x, mask).logits
    torch.testing.assert_close(before[:, :2], after[:, :2])
    assert not torch.allclose(before[:, 2], after[:, 2])


def test_instance_scores_are_the_logits_of_one_instance_bags() -> None:
    head = create_head("scemila", 6, 3).eval()
    x = torch.randn(1, 5, 6)
    with torch.no_grad():
        scores = head(x, torch.ones(1, 5, dtype=torch.bool)).instance_scores
        singles = torch.stack(
            [head(x[:, i : i + 1], torch.ones(1, 1, dtype=torch.bool)).logits[0] for i in range(5)]
        )
    torch.testing.assert_close(scores[0], singles.T, atol=1e-5, rtol=1e-5)


def test_learns_the_witness_and_attends_to_it() -> None:
    toy.check_learns("scemila")
