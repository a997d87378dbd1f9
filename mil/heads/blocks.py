"""Pieces shared by the heads: the one masking helper, masked softmax/mean, attention pooling, per-class
linear layers and Nyström attention. Shapes: B bags, N instances (T tokens for transformers), D/L features,
K attention rows, C classes. `mask` is True for real instances (see `mil.heads.base`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


def fill_padding(scores: Tensor, mask: Tensor) -> Tensor:
    """Scores with padded positions set to the dtype minimum (the ONE masking helper).

    `mask` must broadcast to `scores`. The dtype minimum rather than -inf: a softmax or max over a row that is
    all padding then sees equal finite numbers (uniform weights, a finite max) instead of -inf - (-inf) = NaN.
    Callers zero the padded outputs afterwards, so the uniform weights of such a row never leak.
    """
    return scores.masked_fill(~mask, torch.finfo(scores.dtype).min)


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over real positions; exactly 0 on padding; an all-padding row is all 0 (never NaN)."""
    return torch.softmax(fill_padding(scores, mask), dim=dim) * mask


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """B x N x D -> B x D, the mean over real instances (0 for an all-padding row)."""
    weights = mask.to(x.dtype) / mask.sum(1, keepdim=True).clamp_min(1).to(x.dtype)
    return torch.einsum("bn,bnd->bd", weights, x)


def masked_mean_sd(x: Tensor, mask: Tensor) -> Tensor:
    """B x N x D -> B x 2D: per-bag mean and SD (population) of every feature over the real instances."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean[:, None, :]) ** 2, mask)
    return torch.cat([mean, var.clamp_min(0).sqrt()], dim=1)


class RunningNorm(nn.Module):
    """Standardise bag-level vectors by running (exponentially averaged) statistics, updated in training mode
    and frozen in eval mode; no gradient flows through the statistics.

    Why not BatchNorm: MIL trains on a few bags per step (often one), where batch statistics are undefined or
    noise. Why at all: the per-bag mean of a z-scored feature varies across patients by ~0.05-0.3, so a
    linear layer on it needs large weights, which weight decay forbids; standardised, the pooled statistics
    are on the scale of a logistic regression's inputs. The first steps use bias-corrected averages (as Adam
    does), so even step one normalises with the statistics of the bags seen so far.
    """

    def __init__(self, dim: int, momentum: float = 0.05, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("mean_acc", torch.zeros(dim))
        self.register_buffer("square_acc", torch.zeros(dim))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, v: Tensor) -> Tensor:
        if self.training:
            with torch.no_grad():
                m = self.momentum
                self.steps += 1
                self.mean_acc.mul_(1 - m).add_(m * v.mean(0))
                self.square_acc.mul_(1 - m).add_(m * (v * v).mean(0))
        correction = 1 - (1 - self.momentum) ** self.steps.clamp_min(1).float()
        mean, square = self.mean_acc / correction, self.square_acc / correction
        sd = (square - mean * mean).clamp_min(0).add(self.eps).sqrt()
        seen = self.steps > 0  # never trained: the identity, not a division by sqrt(eps)
        return (v - torch.where(seen, mean, 0.0)) / torch.where(seen, sd, 1.0)


def embedding(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Instance embedding Linear -> ReLU -> Dropout (the `fc` of ABMIL and CLAM), applied to each instance."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Dropout(dropout))


class AttentionScorer(nn.Module):
    """Ilse et al. 2018 attention scores, one row per branch: B x N x L -> B x K x N (before softmax).

    a_k(h) = w_k^T tanh(V h)                  (gated=False)
    a_k(h) = w_k^T (tanh(V h) * sigmoid(U h))  (gated=True: the sigmoid gate lets the tanh branch, which is
    nearly linear around 0, express "ignore this instance" without saturating)
    """

    def __init__(self, in_dim: int, attention_dim: int, n_branches: int, gated: bool, dropout: float):
        super().__init__()
        self.tanh_branch = nn.Sequential(nn.Linear(in_dim, attention_dim), nn.Tanh(), nn.Dropout(dropout))
        self.gate = (
            nn.Sequential(nn.Linear(in_dim, attention_dim), nn.Sigmoid(), nn.Dropout(dropout))
            if gated
            else None
        )
        self.score = nn.Linear(attention_dim, n_branches)

    def forward(self, h: Tensor) -> Tensor:
        a = self.tanh_branch(h)
        if self.gate is not None:
            a = a * self.gate(h)
        return self.score(a).transpose(1, 2)


def attention_pool(scores: Tensor, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax over real instances, then the weighted sum: scores B x K x N, h B x N x L ->
    (attention B x K x N, pooled B x K x L)."""
    attention = masked_softmax(scores, mask[:, None, :])
    return attention, attention @ h


class PerClassLinear(nn.Module):
    """C independent linear maps, one per class, applied in one einsum (no Python loop over classes).

    `forward(x)`: x B x C x ... x I (class axis 1, class c uses map c) -> B x C x ... x O.
    `forward_shared(h)`: h B x N x I (the same instances for every class) -> B x C x N x O, without
    materialising C copies of h (matters for 200k-instance bags).
    """

    def __init__(self, n_classes: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = in_dim**-0.5  # nn.Linear's default init range
        self.weight = nn.Parameter(torch.empty(n_classes, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_classes, out_dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias.view(1, self.bias.shape[0], *([1] * (x.dim() - 3)), self.bias.shape[1])
        return torch.einsum("bc...i,cio->bc...o", x, self.weight) + bias

    def forward_shared(self, h: Tensor) -> Tensor:
        return torch.einsum("bni,cio->bcno", h, self.weight) + self.bias[None, :, None, :]


def iterative_pinv(a: Tensor, iterations: int) -> Tensor:
    """Moore-Penrose pseudo-inverse of the ... x m x m landmark kernel by the iteration used in Nyströmformer
    (Razavi et al. 2014): Z <- Z (13I - AZ (15I - AZ (7I - AZ))) / 4, Z0 = A^T / (max row sum * max col sum).

    The scale is taken per matrix (torch's reference implementation takes one max over the whole batch, so a
    bag's output would depend on the other bags). Zero rows/columns (landmarks a small bag does not have) stay
    zero, so such a bag gets the pseudo-inverse of its own valid block.
    """
    a32 = a.float()
    abs_a = a32.abs()
    scale = abs_a.sum(-1).amax(-1) * abs_a.sum(-2).amax(-1)
    z = a32.transpose(-1, -2) / scale.clamp_min(torch.finfo(a32.dtype).tiny)[..., None, None]
    eye = torch.eye(a.shape[-1], device=a.device, dtype=a32.dtype)
    for _ in range(iterations):
        az = a32 @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z.to(a.dtype)


@dataclass
class NystromState:
    """The pieces of one Nyström attention pass that `NystromAttention.propagate` needs to push an attention
    row back through the layer (references to tensors the forward made anyway; no copies)."""

    q: Tensor  # B x h x T x d
    k: Tensor  # B x h x T x d
    q_l: Tensor  # B x h x m x d, landmark queries, scaled by 1/sqrt(d)
    k_l: Tensor  # B x h x m x d, landmark keys, scaled by 1/sqrt(d)
    pinv: Tensor  # B x h x m x m
    log_norm: Tensor  # B x h x m x 1, log-sum-exp over tokens of the third kernel's rows
    mask: Tensor  # B x T
    valid: Tensor  # B x 1 x 1 x m, landmarks the bag has
    pad_tokens: bool
    pad_landmarks: bool


class NystromAttention(nn.Module):
    """Multi-head self-attention approximated with m landmarks (Nyströmformer, Xiong et al. 2021):

        softmax(Q K^T) V  ~  softmax(Q K~^T) pinv(softmax(Q~ K~^T)) softmax(Q~ K^T) V

    where Q~, K~ are the means of m contiguous segments of the (real) tokens. Cost and memory are O(T m), so a
    200k-instance bag fits; tokens are processed in chunks of `chunk_tokens` (the token softmax of the third
    kernel runs as an online log-sum-exp across chunks), which bounds the T x m kernels.

    Masks: segments are cut from each bag's own real tokens (token of rank r among n real ones goes to segment
    floor(r * m_b / n), m_b = min(m, n)), landmarks average real tokens only, and every softmax is masked, so a
    bag gives the same output alone or padded in a batch. A bag with n <= m tokens gets one landmark per token,
    which makes the approximation exact up to the pseudo-inverse iterations.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        n_landmarks: int,
        pinv_iterations: int = 6,
        dropout: float = 0.0,
        chunk_tokens: int = 16384,
    ):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} must be divisible by n_heads {n_heads}")
        self.n_heads, self.n_landmarks, self.pinv_iterations = n_heads, n_landmarks, pinv_iterations
        self.chunk_tokens = chunk_tokens
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def _heads(self, t: Tensor) -> Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)

    def _landmarks(self, t: Tensor, segment: Tensor, counts: Tensor) -> Tensor:
        """Segment means: t B x T x D, segment B x T in [0, m] (m = dump slot for padding) -> B x h x m x d."""
        b, n, d = t.shape
        m = self.n_landmarks
        flat = (torch.arange(b, device=t.device)[:, None] * (m + 1) + segment).reshape(-1)
        sums = t.new_zeros(b * (m + 1), d).index_add(0, flat, t.reshape(b * n, d))
        means = sums.view(b, m + 1, d)[:, :m] / counts.clamp_min(1)[..., None].to(t.dtype)
        return self._heads(means)

    @staticmethod
    def _kernel_1(st: NystromState, s: int, e: int) -> Tensor:
        """softmax over landmarks of Q K~^T for tokens s:e -> B x h x c x m. Invalid landmarks get weight 0
        after the fill; w's rows for them are 0 anyway, so no re-masking is needed."""
        logits = st.q[:, :, s:e] @ st.k_l.transpose(-1, -2)
        return torch.softmax(fill_padding(logits, st.valid) if st.pad_landmarks else logits, dim=-1)

    @staticmethod
    def _kernel_3_logits(st: NystromState, s: int, e: int) -> Tensor:
        """Q~ K^T for tokens s:e (B x h x m x c), padded tokens at the dtype minimum."""
        logits = st.q_l @ st.k[:, :, s:e].transpose(-1, -2)
        return fill_padding(logits, st.mask[:, None, None, s:e]) if st.pad_tokens else logits

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, NystromState]:
        """x: B x T x D tokens, mask: B x T (True = real) -> (B x T x D, state for `propagate`).
        Output rows of padded tokens hold junk: ignore them."""
        b, n, dim = x.shape
        m, step = self.n_landmarks, self.chunk_tokens
        scale = (dim // self.n_heads) ** -0.5
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)

        n_real = mask.sum(1)
        m_b = n_real.clamp(max=m)
        rank = mask.cumsum(1) - 1
        segment = torch.where(mask, rank * m_b[:, None] // n_real.clamp_min(1)[:, None], m)
        counts = torch.zeros(b, m + 1, device=x.device).scatter_add_(1, segment, mask.float())[:, :m]
        q_l, k_l = self._landmarks(q, segment, counts), self._landmarks(k, segment, counts)
        valid = (torch.arange(m, device=x.device)[None] < m_b[:, None])[:, None, None, :]  # B x 1 x 1 x m
        # 1/sqrt(d) is applied once per kernel, to its small landmark factor. One host sync per layer lets full
        # bags (200k-cell inference) skip the masked fills over T x m kernels.
        st = NystromState(
            self._heads(q),
            self._heads(k),
            q_l * scale,
            k_l * scale,
            q_l,
            q_l[..., :1],
            mask,
            valid,
            pad_tokens=not bool(mask.all()),
            pad_landmarks=not bool(valid.all()),
        )
        v = self._heads(v)
        kernel_2 = masked_softmax(q_l @ st.k_l.transpose(-1, -2), valid) * valid.transpose(-1, -2)
        st.pinv = iterative_pinv(kernel_2, self.pinv_iterations)

        # softmax over all tokens of Q~ K^T / sqrt(d), times V, one chunk at a time (online log-sum-exp).
        # Padded tokens underflow to exactly 0 once a real token has set the running max.
        run_max = torch.full_like(st.log_norm, torch.finfo(q_l.dtype).min)
        run_sum, context = torch.zeros_like(run_max), torch.zeros_like(q_l)
        for s in range(0, n, step):
            logits = self._kernel_3_logits(st, s, s + step)
            new_max = torch.maximum(run_max, logits.amax(-1, keepdim=True))
            p = torch.exp(logits - new_max)
            correction = torch.exp(run_max - new_max)
            run_sum = run_sum * correction + p.sum(-1, keepdim=True)
            context = context * correction + p @ v[:, :, s : s + step]
            run_max = new_max
        st.log_norm = run_max + run_sum.log()
        w = st.pinv @ (context / run_sum)  # B x h x m x d

        out = x.new_empty(b, n, dim)
        for s in range(0, n, step):
            out[:, s : s + step] = (self._kernel_1(st, s, s + step) @ w).transpose(1, 2).reshape(b, -1, dim)
        return self.to_out(out), st

    def propagate(self, st: NystromState, r: Tensor) -> Tensor:
        """r @ A for a row r (B x T) over this layer's output tokens, A = the head-averaged (approximate)
        attention matrix of the forward pass that made `st`: weights over its input tokens, B x T.
        Used for attention rollout; O(T m), recomputing two kernels chunk by chunk. Nyström rows are not
        guaranteed non-negative, so the result can hold small negative values."""
        n, step = r.shape[1], self.chunk_tokens
        u = sum(r[:, None, None, s : s + step] @ self._kernel_1(st, s, s + step) for s in range(0, n, step))
        u = u @ st.pinv  # B x h x 1 x m
        out = r.new_empty(r.shape)
        for s in range(0, n, step):
            kernel_3 = torch.exp(self._kernel_3_logits(st, s, s + step) - st.log_norm)
            out[:, s : s + step] = (u @ kernel_3).mean(1)[:, 0]
        return out
