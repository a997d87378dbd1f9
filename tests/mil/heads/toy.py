"""A toy MIL problem for the per-head learnability tests: a bag is positive iff it holds a witness instance.

Instances are Gaussian noise except feature 0, which is 0 everywhere and 3 on the single witness of a positive
bag (a one-hot marker, like one diagnostic cell among normal ones). Bags have different sizes, so the batch is
padded and the mask matters; the padding holds large random values, so a head that lets padding leak in
learns from noise and fails. A head that finds the witness reaches ~100% accuracy; mean pooling sees only a
3/n signal on feature 0 (still separable, as feature 0 is exactly 0 without a witness) and learns slower.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mil.heads import MILHead

DIM = 8
WITNESS = 3.0  # marker value of the witness on feature 0 (0 elsewhere); noise features have unit variance


@dataclass
class ToyBags:
    x: torch.Tensor  # B x N x DIM
    mask: torch.Tensor  # B x N, True = real
    y: torch.Tensor  # B, 1 = witness present
    witness: torch.Tensor  # B, index of the witness (-1 for negative bags)


def witness_bags(n_bags: int, seed: int, max_instances: int = 16) -> ToyBags:
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(4, max_instances + 1, (n_bags,), generator=g)
    mask = torch.arange(max_instances)[None, :] < sizes[:, None]
    x = torch.randn(n_bags, max_instances, DIM, generator=g)
    x[..., 0] = 0.0
    x[~mask] = 5.0 * torch.randn(int((~mask).sum()), DIM, generator=g)
    y = torch.randperm(n_bags, generator=g) % 2
    witness = torch.where(y == 1, (torch.rand(n_bags, generator=g) * sizes).long(), -1)
    rows = torch.nonzero(y == 1)[:, 0]
    x[rows, witness[rows], 0] = WITNESS
    return ToyBags(x, mask, y, witness)


@contextmanager
def one_thread() -> Iterator[None]:
    """These toy models are so small that op dispatch dominates; a second intra-op thread only adds
    synchronisation (3-5x slower on a busy 2-core runner). Restores the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(head: MILHead, bags: ToyBags, steps: int = 100, lr: float = 1e-2, seed: int = 0) -> None:
    """Full-batch Adam on CE + the head's aux losses (what the trainer does, minus everything else)."""
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(head.parameters(), lr=lr)
    head.train()
    with one_thread():
        for _ in range(steps):
            out = head(bags.x, bags.mask, bags.y)
            loss = F.cross_entropy(out.logits, bags.y) + sum(out.aux_losses.values())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    head.eval()


@torch.no_grad()
def accuracy(head: MILHead, bags: ToyBags) -> float:
    return (head.eval()(bags.x, bags.mask).logits.argmax(1) == bags.y).float().mean().item()


@torch.no_grad()
def witness_top_attention(head: MILHead, bags: ToyBags) -> float:
    """Share of positive bags whose most attended instance is the witness (per-class heads: the positive
    class's attention row)."""
    attention = head.eval()(bags.x, bags.mask).attention
    row = attention[:, 1] if attention.shape[1] > 1 else attention[:, 0]
    positive = bags.y == 1
    return (row[positive].argmax(1) == bags.witness[positive]).float().mean().item()


def check_learns(name: str, **params) -> MILHead:
    """Train `name` on 128 toy bags (100 full-batch Adam steps), check > 0.9 accuracy on 256 new ones and, for
    attention heads, that the witness is the most attended instance in > 90% of the positive ones."""
    from mil.heads import create_head

    torch.manual_seed(0)
    head = create_head(name, DIM, 2, **params)
    train(head, witness_bags(128, seed=1))
    test = witness_bags(256, seed=2)
    acc = accuracy(head, test)
    assert acc > 0.9, f"{name}: toy accuracy {acc:.3f}"
    if head.attention_kind != "none":
        top = witness_top_attention(head, test)
        assert top > 0.9, f"{name}: witness is the top-attended instance in only {top:.3f} of positive bags"
    return head
