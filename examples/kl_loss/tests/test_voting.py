"""Variance voting on hand-built boxes, corner-delta coding, and the head's inference path end to end."""

import math

import pytest
import torch
from noisybox_kl_loss.head import CornerBoxCoder, KLPredictor, KLRoIHeads
from noisybox_kl_loss.voting import variance_voting

A = [0.0, 0.0, 10.0, 10.0]
B = [1.0, 0.0, 11.0, 10.0]  # IoU(A, B) = 90 / 110
P_B = math.exp(-((1 - 90 / 110) ** 2) / 0.02)  # B's IoU weight when voting for A


def _vote(var_a, var_b, labels_b=1):
    return variance_voting(torch.tensor([A]), torch.tensor([1]), torch.tensor([A, B]),
                           torch.log(torch.tensor([[var_a] * 4, [var_b] * 4])), torch.tensor([1, labels_b]), 0.02)[0]


def test_voting_moves_the_box_towards_the_confident_neighbour():
    confident_b = _vote(1.0, 0.01)
    w = P_B / 0.01  # A's own weight is 1 / 1
    assert confident_b[0].item() == pytest.approx(w * 1.0 / (1 + w), rel=1e-5)  # x1: 0 -> ~0.95
    assert confident_b[2].item() == pytest.approx((10.0 + w * 11.0) / (1 + w), rel=1e-5)
    assert confident_b[1].item() == pytest.approx(0.0) and confident_b[3].item() == pytest.approx(10.0)
    unsure_b = _vote(1.0, 100.0)
    assert unsure_b[0].item() == pytest.approx((P_B / 100) / (1 + P_B / 100), rel=1e-5)  # stays near 0
    assert confident_b[0] > 0.9 > 0.01 > unsure_b[0] > 0


def test_voting_ignores_other_classes_and_disjoint_boxes():
    assert torch.equal(_vote(1.0, 0.01, labels_b=2), torch.tensor(A))
    far = variance_voting(torch.tensor([A]), torch.tensor([1]), torch.tensor([A, [20.0, 20.0, 30.0, 30.0]]),
                          torch.log(torch.tensor([[1.0] * 4, [1e-6] * 4])), torch.tensor([1, 1]), 0.02)
    assert torch.allclose(far, torch.tensor([A]))


def test_voting_is_stable_for_extreme_variances():
    out = variance_voting(torch.tensor([A]), torch.tensor([1]), torch.tensor([A, B]),
                          torch.tensor([[80.0] * 4, [-80.0] * 4]), torch.tensor([1, 1]), 0.02)
    assert torch.isfinite(out).all() and torch.allclose(out, torch.tensor([B]), atol=1e-4)


def test_corner_coder_round_trips_and_scales_variance_to_pixels():
    coder = CornerBoxCoder((10.0, 10.0, 5.0, 5.0))
    proposals = torch.tensor([[0.0, 0.0, 20.0, 10.0]])
    gt = torch.tensor([[2.0, 1.0, 24.0, 9.0]])
    deltas = coder.encode([gt], [proposals])[0]
    assert torch.allclose(deltas, torch.tensor([[10 * 2 / 20, 10 * 1 / 10, 5 * 4 / 20, 5 * -1 / 10]]))
    assert torch.allclose(coder.decode(deltas, [proposals])[:, 0], gt)
    # alpha = 0 (unit variance of a delta) is (w / weight)^2 pixels^2 per coordinate
    lv = coder.log_variance_in_pixels(torch.zeros(1, 4), [proposals])[0, 0]
    assert torch.allclose(lv.exp(), torch.tensor([4.0, 1.0, 16.0, 4.0]))


def _heads(var_vote: bool) -> KLRoIHeads:
    predictor = KLPredictor(torch.nn.Linear(4, 2), torch.nn.Linear(4, 8), 1e-4)
    return KLRoIHeads(None, None, predictor, fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=4,
                      positive_fraction=0.25, bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5,
                      detections_per_img=10, var_vote=var_vote, sigma_t=0.02)


def test_head_inference_keeps_the_top_box_after_nms_and_votes_it_towards_the_confident_one():
    proposals = [torch.tensor([A, B])]  # both 10 px wide: alpha = 0 -> 1 px^2 (weight 10), log(0.01) -> 0.01 px^2
    logits = torch.tensor([[0.0, 3.0], [0.0, 2.0]])  # A scores higher, both are class 1
    deltas = torch.zeros(2, 8)  # decoded boxes = proposals
    log_var = torch.zeros(2, 8)
    log_var[1, 4:] = math.log(0.01)
    boxes, scores, labels = _heads(True).postprocess_with_variance(logits, deltas, log_var, proposals, [(20, 20)])
    assert labels[0].tolist() == [1] and len(boxes[0]) == 1  # NMS removed B
    w = P_B / 0.01
    assert boxes[0][0].tolist() == pytest.approx([w / (1 + w), 0.0, (10 + 11 * w) / (1 + w), 10.0], rel=1e-5)
    plain, _, _ = _heads(False).postprocess_with_variance(logits, deltas, log_var, proposals, [(20, 20)])
    assert plain[0][0].tolist() == A
