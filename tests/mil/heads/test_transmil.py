"""transmil (Shao et al. 2021): shapes that are not squares, what order does and does not change, learnability."""

from __future__ import annotations

import pytest
import torch

from features.core.errors import ConfigError
from mil.heads import create_head
from tests.mil.heads import toy


@pytest.mark.parametrize("n", [1, 2, 7, 10, 16, 50])
def test_any_bag_size_including_one_and_non_squares(n: int) -> None:
    head = create_head("transmil", 12, 3).eval()
    with torch.no_grad():
        out = head(torch.randn(2, n, 12), torch.ones(2, n, dtype=torch.bool))
    assert out.logits.shape == (2, 3) and torch.isfinite(out.logits).all()
    torch.testing.assert_close(out.attention.sum(-1), torch.ones(2, 1))
    if n == 1:
        assert (out.attention == 1).all()


def test_order_matters_only_through_the_grid_and_the_landmark_segments() -> None:
    """TransMIL is not permutation invariant: PPEG lays instances on a grid in the order given, and Nyström
    landmarks average contiguous segments. With the PPEG convolutions zeroed (PPEG = identity) and no more
    instances than landmarks (one landmark per token), the rest is plain attention and is invariant."""
    torch.manual_seed(0)
    head = create_head("transmil", 12, 3, n_landmarks=32).eval()
    x, mask = torch.randn(1, 30, 12), torch.ones(1, 30, dtype=torch.bool)
    perm = torch.randperm(30)
    with torch.no_grad():
        assert not torch.allclose(head(x, mask).logits, head(x[:, perm], mask).logits, atol=1e-4)
        for conv in head.ppeg.convs:
            conv.weight.zero_()
            conv.bias.zero_()
        out, shuffled = head(x, mask), head(x[:, perm], mask)
    torch.testing.assert_close(out.logits, shuffled.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.attention[..., perm], shuffled.attention, atol=1e-5, rtol=1e-4)


def test_params() -> None:
    head = create_head("transmil", 384, 2)
    assert head.classifier.in_features == 256 and head.layers[0].attention.n_heads == 8
    assert head.layers[0].attention.n_landmarks == 128
    assert create_head("transmil", 8, 2).layers[0].attention.n_heads == 1  # small dims keep >= 8 per head
    assert len(create_head("transmil", 12, 2, n_layers=3).layers) == 2  # + the CLS-only last layer
    with pytest.raises(ConfigError, match="divisible"):
        create_head("transmil", 12, 2, hidden_dim=20, n_heads=8)


def test_learns_the_witness_and_the_rollout_attends_to_it() -> None:
    toy.check_learns("transmil")
