"""clam_sb and clam_mb (Lu et al. 2021), above all the instance clustering loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mil.heads import create_head
from mil.heads.clam import smooth_top1_svm
from tests.mil.heads import toy

NAMES = ["clam_sb", "clam_mb"]


def naive_instance_loss(head, attention, h, mask, target) -> torch.Tensor:
    """CLAM's loss the slow way (one bag, one class at a time, as CLAM's inst_eval / inst_eval_out), with the
    two-class smooth SVM written out: loss(y) = log(1 + exp(s_other + 1 - s_y))."""
    weight, bias = head.instance_classifiers.weight, head.instance_classifiers.bias
    per_bag = []
    for b in range(h.shape[0]):
        real = mask[b]
        k = min(head.params.k_sample, int(real.sum()) // 2)
        if k == 0:
            continue
        hb, terms = h[b][real], []
        for c in range(head.n_outputs):
            a = attention[b, c if attention.shape[1] > 1 else 0][real]
            top, bottom = hb[a.topk(k).indices], hb[(-a).topk(k).indices]
            if int(target[b]) == c:
                logits = torch.cat([top, bottom]) @ weight[c] + bias[c]
                labels = torch.tensor([1] * k + [0] * k)
            elif head.params.subtyping:
                logits, labels = top @ weight[c] + bias[c], torch.zeros(k, dtype=torch.long)
            else:
                continue
            s_y, s_other = (
                logits.gather(1, labels[:, None])[:, 0],
                logits.gather(1, 1 - labels[:, None])[:, 0],
            )
            terms.append(F.softplus(s_other + 1.0 - s_y).mean())
        per_bag.append(torch.stack(terms).mean())
    return torch.stack(per_bag).mean()


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 20, 6, generator=g)
    mask = torch.ones(4, 20, dtype=torch.bool)
    mask[0, 5:] = False  # k clipped to 5 // 2 = 2
    mask[1, 1:] = False  # one instance: no pseudo-labels
    mask[2, ::3] = False  # padding inside the row
    x[~mask] = 30.0  # junk padding
    return x, mask, torch.tensor([0, 1, 2, 1])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("subtyping", [True, False])
def test_instance_loss_matches_the_per_bag_reference(name: str, subtyping: bool) -> None:
    torch.manual_seed(0)
    head = create_head(name, 6, 3, dropout=0.0, subtyping=subtyping).train()
    x, mask, target = batch()
    out = head(x, mask, target)
    expected = naive_instance_loss(head, out.attention, head.embed(x), mask, target)
    torch.testing.assert_close(out.aux_losses["instance"], head.params.inst_loss_weight * expected)


@pytest.mark.parametrize("name", NAMES)
def test_aux_loss_only_in_training_with_a_target(name: str) -> None:
    head = create_head(name, 6, 3)
    x, mask, target = batch()
    assert "instance" in head.train()(x, mask, target).aux_losses
    assert head.train()(x, mask).aux_losses == {}
    with torch.no_grad():
        assert head.eval()(x, mask, target).aux_losses == {}


@pytest.mark.parametrize("name", NAMES)
def test_padding_does_not_change_the_instance_loss(name: str) -> None:
    """Batch loss = mean of the single-bag losses (bags without pseudo-labels left out)."""
    torch.manual_seed(0)
    head = create_head(name, 6, 3, dropout=0.0).train()
    x, mask, target = batch()
    together = head(x, mask, target).aux_losses["instance"]
    alone = [head(x[i : i + 1, mask[i]], mask[i : i + 1, mask[i]], target[i : i + 1]) for i in (0, 2, 3)]
    torch.testing.assert_close(together, torch.stack([o.aux_losses["instance"] for o in alone]).mean())
    single = head(x[1:2, :1], mask[1:2, :1], target[1:2]).aux_losses["instance"]
    assert single.item() == 0.0  # a one-instance bag has no top/bottom pair


def test_weight_and_loss_kind_params() -> None:
    torch.manual_seed(0)
    x, mask, target = batch()
    losses = {}
    for kind, weight in [("svm", 1.0), ("svm", 0.5), ("ce", 1.0)]:
        torch.manual_seed(0)
        head = create_head("clam_sb", 6, 3, dropout=0.0, inst_loss=kind, inst_loss_weight=weight).train()
        losses[kind, weight] = head(x, mask, target).aux_losses["instance"]
    torch.testing.assert_close(losses["svm", 0.5], 0.5 * losses["svm", 1.0])
    assert not torch.allclose(losses["ce", 1.0], losses["svm", 1.0])


def test_smooth_svm_values() -> None:
    """tau log sum_j exp((s_j + [j != y] - s_y) / tau), tau = alpha = 1: a smoothed hinge with margin 1."""
    logits = torch.tensor([[5.0, -5.0], [0.0, 0.0]])
    loss = smooth_top1_svm(logits, torch.tensor([0, 1]))
    torch.testing.assert_close(loss[0], torch.log1p(torch.exp(torch.tensor(-9.0))))  # margin 10 >> 1: ~0
    torch.testing.assert_close(loss[1], torch.log(torch.tensor(1.0 + torch.e)))  # log(1 + e^{0 + 1 - 0})


def test_single_output_has_no_instance_loss() -> None:
    head = create_head("clam_sb", 6, 1).train()
    x, mask, _ = batch()
    out = head(x, mask, torch.zeros(4, dtype=torch.long))
    assert out.logits.shape == (4, 1) and out.aux_losses == {}


def test_mb_has_one_attention_branch_per_class() -> None:
    sb, mb = create_head("clam_sb", 6, 4).eval(), create_head("clam_mb", 6, 4).eval()
    x, mask, _ = batch()
    x, mask = x[:2], mask[:2]
    with torch.no_grad():
        assert sb(x, mask).attention.shape == (2, 1, 20)
        assert mb(x, mask).attention.shape == (2, 4, 20)
    assert mb.attention_kind == "per_class_attention" and sb.attention_kind == "attention"


@pytest.mark.parametrize("name", NAMES)
def test_logits_are_the_attention_weighted_instance_scores(name: str) -> None:
    head = create_head(name, 6, 3).eval()
    x, mask, _ = batch()
    with torch.no_grad():
        out = head(x, mask)
    torch.testing.assert_close(
        out.logits, (out.attention * out.instance_scores).sum(-1), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("name", NAMES)
def test_learns_the_witness_and_attends_to_it(name: str) -> None:
    toy.check_learns(name)


def test_target_must_be_class_indices() -> None:
    head = create_head("clam_sb", 6, 3).train()
    x, mask, _ = batch()
    with pytest.raises(ValueError, match="class index"):
        head(x, mask, torch.zeros(4, 3))
