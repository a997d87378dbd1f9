"""Shared pieces: the masking helper, masked softmax/mean, the Nyström attention and its pseudo-inverse."""

from __future__ import annotations

import pytest
import torch

from mil.heads.blocks import (
    NystromAttention,
    fill_padding,
    iterative_pinv,
    masked_mean,
    masked_softmax,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fill_uses_the_dtype_minimum_not_minus_infinity(dtype: torch.dtype) -> None:
    scores = torch.zeros(2, 3, dtype=dtype)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    filled = fill_padding(scores, mask)
    assert filled[0, 1] == torch.finfo(dtype).min and torch.isfinite(filled).all()


def test_masked_softmax_all_padding_row_is_zero_with_finite_gradient() -> None:
    scores = torch.randn(2, 4, requires_grad=True)
    mask = torch.tensor([[True, True, False, True], [False, False, False, False]])
    p = masked_softmax(scores, mask)
    assert (p[1] == 0).all() and p[0, 2] == 0
    torch.testing.assert_close(p[0].sum(), torch.tensor(1.0))
    (p * torch.randn(2, 4)).sum().backward()
    assert torch.isfinite(scores.grad).all()


def test_masked_mean() -> None:
    x = torch.arange(12.0).view(2, 3, 2)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    torch.testing.assert_close(masked_mean(x, mask), torch.tensor([[2.0, 3.0], [0.0, 0.0]]))


def test_iterative_pinv_matches_linalg_and_keeps_missing_landmarks_zero() -> None:
    a = torch.softmax(torch.randn(3, 6, 6), -1)
    torch.testing.assert_close(iterative_pinv(a, 20), torch.linalg.pinv(a), atol=1e-3, rtol=1e-3)
    block = torch.zeros(1, 6, 6)
    block[0, :4, :4] = a[0, :4, :4] / a[0, :4, :4].sum(-1, keepdim=True)
    z = iterative_pinv(block, 20)
    assert (z[0, 4:] == 0).all() and (z[0, :, 4:] == 0).all()
    torch.testing.assert_close(z[0, :4, :4], torch.linalg.pinv(block[0, :4, :4]), atol=1e-3, rtol=1e-3)


def _tokens(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 40, 16, generator=g)
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[0, 25:] = False
    mask[1, ::4] = False
    x[~mask] = 50.0
    return x, mask


def test_nystrom_chunked_equals_one_chunk() -> None:
    """The online log-sum-exp across chunks gives the one-chunk result (what bounds memory at 200k)."""
    torch.manual_seed(0)
    big = NystromAttention(16, n_heads=2, n_landmarks=8)
    small = NystromAttention(16, n_heads=2, n_landmarks=8, chunk_tokens=7)
    small.load_state_dict(big.state_dict())
    x, mask = _tokens()
    with torch.no_grad():
        a, _ = big(x, mask)
        b, _ = small(x, mask)
    torch.testing.assert_close(a[mask], b[mask], atol=1e-5, rtol=1e-4)


def test_nystrom_with_one_landmark_per_token_is_exact_attention() -> None:
    torch.manual_seed(0)
    attn = NystromAttention(16, n_heads=2, n_landmarks=64, pinv_iterations=30)
    x, mask = _tokens()
    with torch.no_grad():
        approx, _ = attn(x, mask)
        q, k, v = (attn._heads(f(x)) for f in (attn.to_q, attn.to_k, attn.to_v))
        weights = masked_softmax(q @ k.transpose(-1, -2) / 8**0.5, mask[:, None, None, :])
        exact = attn.to_out((weights @ v).transpose(1, 2).reshape(3, 40, 16))
    torch.testing.assert_close(approx[mask], exact[mask], atol=1e-3, rtol=1e-3)


def test_propagate_is_a_row_times_the_explicit_attention_matrix() -> None:
    """Slow twin: build A = mean_h softmax(Q K~^T) pinv softmax(Q~ K^T) explicitly and compare r @ A."""
    torch.manual_seed(0)
    attn = NystromAttention(16, n_heads=2, n_landmarks=8, chunk_tokens=9)
    x, mask = _tokens()
    with torch.no_grad():
        _, st = attn(x, mask)
        kernel_1 = masked_softmax(st.q @ st.k_l.transpose(-1, -2), st.valid)
        kernel_3 = masked_softmax(st.q_l @ st.k.transpose(-1, -2), mask[:, None, None, :])
        matrix = (kernel_1 @ st.pinv @ kernel_3).mean(1)  # B x T x T
        r = torch.softmax(torch.randn(3, 40), -1) * mask
        torch.testing.assert_close(
            attn.propagate(st, r), (r[:, None, :] @ matrix)[:, 0], atol=1e-5, rtol=1e-4
        )
