"""FreeAnchor's losses on a hand-computed two-anchor example, and its mean-max / saturated-linear pieces."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from benchmark.config import resolve_config
from benchmark.testing import TINY_OVERRIDES
from methods import get_method
from methods.free_anchor import free_anchor_loss, mean_max, saturated_linear


def test_mean_max_is_near_the_mean_when_unsure_and_the_max_when_one_is_confident():
    unsure = torch.tensor([[0.1, 0.2, 0.3]])
    sure = torch.tensor([[0.05, 0.05, 0.999]])
    assert mean_max(unsure).item() == pytest.approx(
        sum(p / (1 - p) for p in (0.1, 0.2, 0.3)) / sum(1 / (1 - p) for p in (0.1, 0.2, 0.3)))
    assert 0.2 < mean_max(unsure).item() < 0.3
    assert mean_max(sure).item() > 0.99


def test_saturated_linear_is_zero_below_thr_and_one_at_the_best_iou():
    iou = torch.tensor([[0.5, 0.6, 0.7, 0.8]])
    assert saturated_linear(iou, 0.6).tolist()[0] == pytest.approx([0.0, 0.0, 0.5, 1.0])


def test_two_anchor_losses_by_hand():
    """One object [0,0,10,10] of class 0; anchor 0 is the box itself, anchor 1 its top half [0,0,10,5] (IoU 0.5).
    Zero regression output, logits 1 and 0, bag = both anchors, thr 0.6, alpha 0.5, gamma 2, beta 0.11, weight
    0.75, coder weights (10, 10, 5, 5)."""
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    anchors = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]])]
    logits = [torch.tensor([[1.0], [0.0]])]
    deltas = [torch.zeros(2, 4)]
    pos, neg, n = free_anchor_loss(logits, deltas, anchors, [torch.tensor([[0.0, 0.0, 10.0, 10.0]])],
                                   [torch.tensor([0])], coder, topk=2, bbox_thr=0.6, alpha=0.5, gamma=2.0,
                                   beta=0.11, box_weight=0.75)
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # anchor 1's targets: dy = 10 * (5 - 2.5) / 5 = 5, dh = 5 * ln 2; smooth L1 (beta 0.11) = |d| - 0.055
    reg1 = (5 - 0.055) + (5 * math.log(2) - 0.055)
    p = [s(1.0) * 1.0, s(0.0) * math.exp(-0.75 * reg1)]  # P_cls x P_loc
    w = [1 / (1 - q) for q in p]
    bag = sum(wi * q for wi, q in zip(w, p)) / sum(w)
    assert n == 1
    assert pos.item() == pytest.approx(0.5 * -math.log(bag), rel=1e-5)
    # predicted boxes = anchors: IoU 1 and 0.5 -> P{a in A+} = 1 and 0; anchor 0 is no negative at all
    neg1 = s(0.0) * (1 - 0.0)
    want_neg = 0.5 * (neg1 ** 2 * -math.log(1 - neg1) + 1e-12 ** 2 * -math.log(1 - 1e-12))
    assert neg.item() == pytest.approx(want_neg, rel=1e-5)


def test_a_confident_second_anchor_lowers_the_positive_loss_but_not_an_unmatched_class():
    """Learning to match: raising the score of a well-localised bag member lowers the positive loss."""
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    anchors = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 9.0]])]
    common = dict(topk=2, bbox_thr=0.6, alpha=0.5, gamma=2.0, beta=0.11, box_weight=0.75)
    gt, lab = [torch.tensor([[0.0, 0.0, 10.0, 10.0]])], [torch.tensor([0])]
    low, _, _ = free_anchor_loss([torch.tensor([[-2.0], [-2.0]])], [torch.zeros(2, 4)], anchors, gt, lab, coder,
                                 **common)
    high, _, _ = free_anchor_loss([torch.tensor([[-2.0], [3.0]])], [torch.zeros(2, 4)], anchors, gt, lab, coder,
                                  **common)
    assert high.item() < low.item()


def test_model_reports_the_two_bag_losses_and_normalises_them():
    m = get_method("free_anchor")
    cfg = resolve_config(m, "cpu", "shapes", 0.3, TINY_OVERRIDES)
    assert (cfg["method"]["pre_anchor_topk"], cfg["method"]["bbox_thr"], cfg["method"]["focal_alpha"]) == (50, 0.6, 0.5)
    assert resolve_config(m, "paper", "coco", 0.4)["train"]["grad_clip"] == 35.0
    model = m.build_model(cfg, 2).train()
    t = [{"boxes": torch.tensor([[5.0, 5.0, 30.0, 30.0]]), "labels": torch.tensor([1])},
         {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], t)
    assert set(losses) == {"positive_bag_loss", "negative_bag_loss"}
    assert all(torch.isfinite(v) for v in losses.values())
