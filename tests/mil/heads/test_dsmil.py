"""dsmil: dual-stream MIL (Li et al. 2021)."""

from __future__ import annotations

import torch

from mil.heads import create_head
from tests.mil.heads import toy


def test_instance_scores_and_attention_shapes() -> None:
    head = create_head("dsmil", 6, 3).eval()
    assert head.attention_kind == "per_class_attention"
    x, mask = torch.randn(2, 9, 6), torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    with torch.no_grad():
        out = head(x, mask)
    assert out.instance_scores.shape == (2, 3, 9) and out.attention.shape == (2, 3, 9)
    assert (out.instance_scores[1, :, 5:] == 0).all()


def test_critical_instance_ignores_padding_and_the_max_stream_enters_the_logits() -> None:
    """Padding with a huge instance score must not become the critical instance; the fused logit moves by
    half of any change in the max instance score."""
    torch.manual_seed(0)
    head = create_head("dsmil", 6, 2).eval()
    x, mask = torch.randn(1, 6, 6), torch.ones(1, 6, dtype=torch.bool)
    mask[0, 4:] = False
    x[0, 4:] = 50.0 * head.instance_classifier.weight[0].detach().sign()
    with torch.no_grad():
        padded = head(x, mask)
        alone = head(x[:, :4], mask[:, :4])
        torch.testing.assert_close(padded.logits, alone.logits)
        head.instance_classifier.bias.add_(1.0)  # every instance score + 1, attention unchanged
        shifted = head(x[:, :4], mask[:, :4])
    torch.testing.assert_close(shifted.logits - alone.logits, torch.full((1, 2), 0.5))


def test_learns_the_witness_and_attends_to_it() -> None:
    toy.check_learns("dsmil")
