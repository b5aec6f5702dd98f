"""KL loss: hand-computed values, the direction it pushes alpha, and the Fast R-CNN wrapper's bookkeeping."""

import math

import pytest
import torch
import torch.nn.functional as F
from noisybox_kl_loss.loss import kl_fastrcnn_loss, kl_loss


def test_kl_loss_matches_hand_computed_values_on_both_branches():
    pred = torch.tensor([0.3, 0.0, 2.0, -1.0])
    target = torch.tensor([0.0, 0.0, -1.0, -1.0])
    alpha = torch.tensor([math.log(2.0), 0.0, -1.0, 1.0])
    # |d| = 0.3 <= 1: e^-a * d^2 / 2 + a / 2 = 0.5 * 0.045 + ln(2) / 2
    # d = 0, alpha = 0: 0
    # |d| = 3 > 1: e^-a * (|d| - 1/2) + a / 2 = e * 2.5 - 0.5
    # d = 0, alpha = 1: 0 + 1/2
    expected = torch.tensor([0.0225 + math.log(2.0) / 2, 0.0, math.e * 2.5 - 0.5, 0.5])
    assert torch.allclose(kl_loss(pred, alpha, target), expected, atol=1e-6)


def test_kl_loss_with_zero_alpha_is_smooth_l1():
    torch.manual_seed(0)
    pred, target = torch.randn(50) * 2, torch.randn(50) * 2
    assert torch.allclose(kl_loss(pred, torch.zeros(50), target), F.smooth_l1_loss(pred, target, reduction="none"))


@pytest.mark.parametrize("error, direction", [(3.0, +1), (0.1, -1)])
def test_gradient_raises_alpha_for_a_large_error_and_lowers_it_for_a_small_one(error, direction):
    alpha = torch.zeros(1, requires_grad=True)
    kl_loss(torch.tensor([error]), alpha, torch.zeros(1)).sum().backward()
    # d/d alpha = -e^-alpha * smoothL1(d) + 1/2: -2.0 for d = 3, +0.495 for d = 0.1; descent moves against it
    expected = -(error - 0.5 if error > 1 else error ** 2 / 2) + 0.5
    assert alpha.grad.item() == pytest.approx(expected)
    assert math.copysign(1, -alpha.grad.item()) == direction
    # and a few descent steps settle alpha at log(2 * smoothL1(d)), the minimiser of the loss
    opt = torch.optim.SGD([alpha], lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        kl_loss(torch.tensor([error]), alpha, torch.zeros(1)).sum().backward()
        opt.step()
    sl1 = error - 0.5 if error > 1 else error ** 2 / 2
    assert alpha.item() == pytest.approx(math.log(2 * sl1), abs=1e-3)


def test_fastrcnn_loss_uses_own_class_of_positive_rois_and_divides_by_all_sampled_rois():
    # 3 RoIs over 2 images, 3 classes incl. background: RoI 0 is class 2, RoI 1 background, RoI 2 class 1.
    logits = torch.zeros(3, 3)
    deltas = torch.zeros(3, 12)
    log_var = torch.zeros(3, 12)
    deltas[0, 8:12] = torch.tensor([0.5, 0.0, 0.0, 0.0])  # class-2 slot of RoI 0: error 0.5 -> 0.125
    deltas[0, 4:8] = 7.0  # another class's slot: must be ignored
    deltas[1, :] = 9.0  # background RoI: must be ignored
    deltas[2, 4:8] = torch.tensor([0.0, 2.0, 0.0, 0.0])  # class-1 slot of RoI 2: error 2 -> 1.5
    log_var[2, 4:8] = torch.tensor([0.0, math.log(3.0), 0.0, 0.0])  # -> 1.5 / 3 + ln(3) / 2
    labels = [torch.tensor([2, 0]), torch.tensor([1])]
    targets = [torch.zeros(2, 4), torch.zeros(1, 4)]
    cls, box = kl_fastrcnn_loss(logits, deltas, log_var, labels, targets)
    assert cls.item() == pytest.approx(math.log(3.0))
    assert box.item() == pytest.approx((0.125 + 0.5 + math.log(3.0) / 2) / 3)
