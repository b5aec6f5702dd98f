"""CPU parity of the detector components the `paper` recipe switches on, against outside references on identical
inputs: torchvision's `roi_align` (forward and gradient, the sparse CPU backward included), hand-computed DeltaXYXY
codes, the L1 / smooth-L1 losses, mmdet's anchor formula, frozen-statistics BatchNorm, aspect-ratio grouped batches
and invalid padding anchors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from methods._core.roi_align import FastMultiScaleRoIAlign, roi_align_fast_backward


def _rois(n: int, h: int, w: int, scale: float, seed: int) -> torch.Tensor:
    """Boxes in image pixels over a feature map of h x w at `scale`: tiny, huge, crossing every border, degenerate."""
    g = torch.Generator().manual_seed(seed)
    img_w, img_h = w / scale, h / scale
    x1 = torch.rand(n, generator=g) * img_w * 1.2 - 0.1 * img_w
    y1 = torch.rand(n, generator=g) * img_h * 1.2 - 0.1 * img_h
    bw = torch.rand(n, generator=g) ** 2 * img_w
    bh = torch.rand(n, generator=g) ** 2 * img_h
    boxes = torch.stack([x1, y1, x1 + bw, y1 + bh], 1)
    boxes[0] = torch.tensor([3.0, 3.0, 3.0, 3.0])  # zero size
    boxes[1] = torch.tensor([-5.0, -5.0, img_w + 5, img_h + 5])  # whole image and beyond
    batch = torch.randint(0, 2, (n, 1), generator=g).float()
    return torch.cat([batch, boxes], 1)


@pytest.mark.parametrize("aligned,ratio", [(True, 0), (True, 2), (False, 0), (False, 2)])
def test_roi_align_forward_and_gradient_match_torchvision(aligned, ratio):
    """The sparse CPU backward (used whenever features need a gradient) against torchvision's own op."""
    torch.manual_seed(0)
    scale = 0.25
    feats = torch.randn(2, 5, 13, 17)
    rois = _rois(40, 13, 17, scale, seed=1)
    a = feats.clone().requires_grad_(True)
    b = feats.clone().requires_grad_(True)
    out_fast = roi_align_fast_backward(a, rois, (7, 7), scale, ratio, aligned)
    out_ref = roi_align(b, rois, (7, 7), scale, ratio, aligned=aligned)
    torch.testing.assert_close(out_fast, out_ref)
    grad = torch.randn_like(out_ref)
    out_fast.backward(grad)
    out_ref.backward(grad)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)  # float32, another summation order
    assert a.grad.abs().sum().item() > 0


def test_aligned_and_adaptive_differ_from_the_torchvision_default():
    """The switch changes numbers (a half-pixel shift, more samples on large RoIs): not a no-op."""
    feats = torch.randn(1, 3, 20, 20)
    rois = torch.tensor([[0.0, 8.0, 8.0, 72.0, 60.0]])
    legacy = roi_align(feats, rois, (7, 7), 0.25, 2, aligned=False)
    mmcv = roi_align_fast_backward(feats, rois, (7, 7), 0.25, 0, True)
    assert (legacy - mmcv).abs().max().item() > 1e-3


def test_multiscale_pool_passes_aligned_and_ratio():
    """`FastMultiScaleRoIAlign` with aligned/adaptive equals torchvision per level (one level holds all RoIs)."""
    feats = {"0": torch.randn(1, 4, 32, 32, requires_grad=True)}
    boxes = [torch.tensor([[1.0, 2.0, 30.0, 40.0], [10.0, 10.0, 100.0, 90.0]])]
    pool = FastMultiScaleRoIAlign(["0"], 7, 0, aligned=True)
    out = pool(feats, boxes, [(128, 128)])
    ref = roi_align(feats["0"], [boxes[0]], (7, 7), 0.25, 0, aligned=True)
    torch.testing.assert_close(out, ref)


# ---- DeltaXYXY (mmdet DeltaXYXYBBoxCoder of the OA-MIL fork) ------------------------------------------------------
def test_delta_xyxy_codes_against_hand_computed_values():
    from methods._core.geometry import XYXYBoxCoder

    proposal = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # pw = 20, ph = 40
    gt = torch.tensor([[12.0, 16.0, 33.0, 70.0]])
    # dx1 = 2/20, dy1 = -4/40, dx2 = 3/20, dy2 = 10/40; RCNN stds 0.1, RPN stds 1.0
    rcnn, rpn = XYXYBoxCoder((0.1,) * 4), XYXYBoxCoder((1.0,) * 4)
    torch.testing.assert_close(rcnn.encode_single(gt, proposal), torch.tensor([[1.0, -1.0, 1.5, 2.5]]))
    torch.testing.assert_close(rpn.encode_single(gt, proposal), torch.tensor([[0.1, -0.1, 0.15, 0.25]]))
    torch.testing.assert_close(rcnn.decode_single(torch.tensor([[1.0, -1.0, 1.5, 2.5]]), proposal), gt)
    # class-specific codes (K = 2): each group of 4 decodes on its own
    two = rcnn.decode(torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 1.5, 2.5]]), [proposal])
    torch.testing.assert_close(two, torch.stack([proposal, gt], 1))


# ---- L1 vs smooth-L1 --------------------------------------------------------------------------------------------
def test_rcnn_box_loss_l1_and_smooth_l1_on_a_fixed_batch():
    """Three sampled RoIs, two positive (classes 1 and 2): only each positive's own-class codes count, summed and
    divided by all 3 sampled RoIs (torchvision's fastrcnn_loss; mmdet's avg_factor)."""
    from methods._core.model import rcnn_losses

    logits = torch.zeros(3, 3)
    reg = torch.zeros(3, 12)
    reg[0, 4:8] = torch.tensor([0.05, -0.5, 0.0, 0.0])  # RoI 0, class 1
    reg[2, 8:12] = torch.tensor([2.0, 0.0, 0.0, 0.0])  # RoI 2, class 2
    reg[1] = 7.0  # a negative: never counted
    labels = [torch.tensor([1, 0, 2])]
    targets = [torch.zeros(3, 4)]
    l1 = rcnn_losses(logits, reg, labels, targets, "l1")["loss_box_reg"].item()
    sl1 = rcnn_losses(logits, reg, labels, targets, "smooth_l1")["loss_box_reg"].item()
    beta = 1 / 9
    assert l1 == pytest.approx((0.05 + 0.5 + 2.0) / 3)
    assert sl1 == pytest.approx((0.5 * 0.05 ** 2 / beta + (0.5 - beta / 2) + (2.0 - beta / 2)) / 3)
    # torchvision's own loss is the smooth-L1 one
    from torchvision.models.detection.roi_heads import fastrcnn_loss

    assert fastrcnn_loss(logits, reg, labels, targets)[1].item() == pytest.approx(sl1)


def _tiny_cfg(**model):
    from benchmark.config import resolve_config
    from methods import get_method

    return resolve_config(get_method("faster_rcnn"), "cpu", "shapes", overrides={f"model.{k}": v
                                                                                 for k, v in model.items()})


def test_config_switches_reach_the_detector():
    from methods._core.geometry import XYXYBoxCoder
    from methods._core.model import CoreRoIHeads, CoreRPN, MinIoUMatcher, UnroundedAnchorGenerator, build_faster_rcnn

    cfg = _tiny_cfg(box_coder="xyxy", rpn_box_loss="l1", rcnn_box_loss="l1", roi_align_aligned=True,
                    roi_sampling_ratio=0, valid_anchors_only=True, rpn_min_pos_iou=0.3, round_anchors=False)
    m = build_faster_rcnn(cfg["model"], 3)
    assert isinstance(m.rpn, CoreRPN) and m.rpn.box_loss == "l1" and m.rpn.valid_anchors_only
    assert isinstance(m.rpn.box_coder, XYXYBoxCoder) and m.rpn.box_coder.stds == (1.0,) * 4
    assert isinstance(m.rpn.proposal_matcher, MinIoUMatcher) and m.rpn.proposal_matcher.min_pos_iou == 0.3
    assert isinstance(m.rpn.anchor_generator, UnroundedAnchorGenerator)
    assert isinstance(m.roi_heads, CoreRoIHeads) and m.roi_heads.box_loss == "l1"
    assert m.roi_heads.box_coder.stds == (0.1,) * 4
    pool = m.roi_heads.box_roi_pool
    assert pool.aligned and pool.sampling_ratio == 0
    # one training step runs and every loss is finite
    m.train()
    images = [torch.rand(3, 96, 128), torch.rand(3, 128, 80)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[5.0, 20.0, 70.0, 120.0]]), "labels": torch.tensor([2])}]
    losses = m(images, targets)
    assert all(torch.isfinite(v).item() for v in losses.values())
    sum(losses.values()).backward()
    # the defaults leave torchvision's modules in place
    plain = build_faster_rcnn(_tiny_cfg()["model"], 3)
    assert type(plain.rpn).__name__ == "RegionProposalNetwork" and type(plain.roi_heads).__name__ == "RoIHeads"


# ---- anchors: mmdet's AnchorGenerator formula -------------------------------------------------------------------
def _mmdet_anchors(stride: int, scale: float, ratios: list[float], feat_hw: tuple[int, int]) -> torch.Tensor:
    """mmdet 2.x `AnchorGenerator` (docs: base_size = stride, center_offset = 0): h_ratios = sqrt(ratios),
    w_ratios = 1 / h_ratios, ws = base_size * w_ratios * scale, hs = base_size * h_ratios * scale, base anchors
    [-ws/2, -hs/2, ws/2, hs/2] (no rounding), shifted by (x * stride, y * stride) over the feature grid, locations
    outer and base anchors inner."""
    out = []
    for y in range(feat_hw[0]):
        for x in range(feat_hw[1]):
            for r in ratios:
                hr = math.sqrt(r)
                ws, hs = stride * (1 / hr) * scale, stride * hr * scale
                out.append([x * stride - ws / 2, y * stride - hs / 2, x * stride + ws / 2, y * stride + hs / 2])
    return torch.tensor(out, dtype=torch.float64)


def test_unrounded_anchors_follow_mmdets_formula():
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    from methods._core.model import UnroundedAnchorGenerator

    ratios = [0.5, 1.0, 2.0]
    strides = [4, 8, 16, 32, 64]
    sizes = tuple((8.0 * s,) for s in strides)  # scale 8: the paper recipe's anchor sizes 32..512
    gen = UnroundedAnchorGenerator(sizes, (tuple(ratios),) * 5)
    # an 800 x 1216 batch: P6 has 13 x 19 cells, whose stride torchvision computes as 800 // 13 = 61, mmdet as 64
    grids = [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)]
    images = ImageList(torch.zeros(1, 3, 800, 1216), [(800, 1216)])
    feats = [torch.zeros(1, 1, h, w) for h, w in grids]
    got = gen(images, feats)[0].double()
    want = torch.cat([_mmdet_anchors(s, 8.0, ratios, g) for s, g in zip(strides, grids)])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-3)  # float32 anchors
    rounded = AnchorGenerator(tuple((int(s[0]),) for s in sizes), (tuple(ratios),) * 5)(images, feats)[0].double()
    assert (rounded - want).abs().max().item() > 1.0  # torchvision: rounded base anchors, P6 stride 61


# ---- BatchNorm: statistics frozen, gamma / beta trained ------------------------------------------------------
def test_norm_eval_bn_trains_affine_with_frozen_statistics(tmp_path):
    import torchvision

    from methods._core.model import EvalBatchNorm2d, _torchvision_net, resnet_fpn

    path = tmp_path / "r18.pth"
    ref = torchvision.models.resnet18()
    for m in ref.modules():  # non-trivial statistics, as ImageNet weights have
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    torch.save(ref.state_dict(), path)
    net = _torchvision_net("resnet18", False, str(path), affine_trainable=True)
    net.load_state_dict(torch.load(path), strict=False)
    backbone = resnet_fpn(net, 3, 32)
    bn = net.layer2[0].bn1
    assert isinstance(bn, EvalBatchNorm2d)
    before = bn.running_mean.clone()
    backbone.train()
    x = torch.rand(2, 3, 64, 64)
    out = backbone(x)
    sum(v.sum() for v in out.values()).backward()
    torch.testing.assert_close(bn.running_mean, before)  # statistics frozen in training mode
    assert bn.weight.requires_grad and bn.weight.grad is not None and bn.weight.grad.abs().sum().item() > 0
    assert not net.layer1[0].bn1.weight.requires_grad and not net.bn1.weight.requires_grad  # frozen stages
    # numerically: training-mode output = normalisation with the running statistics (eval mode)
    y = torch.randn(2, bn.num_features, 5, 5)
    ref_out = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    torch.testing.assert_close(bn(y), ref_out)


# ---- mmdet init --------------------------------------------------------------------------------------------------
def test_mmdet_init_of_the_box_head_and_fpn():
    from methods._core.model import build_faster_rcnn

    torch.manual_seed(0)
    m = build_faster_rcnn(_tiny_cfg(init="mmdet", representation_size=256)["model"], 20)
    pred = m.roi_heads.box_predictor
    assert pred.cls_score.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert pred.bbox_pred.weight.std().item() == pytest.approx(0.001, rel=0.1)
    assert pred.cls_score.bias.abs().sum().item() == 0 and pred.bbox_pred.bias.abs().sum().item() == 0
    fc6 = m.roi_heads.box_head.fc6
    bound = math.sqrt(6 / (fc6.in_features + fc6.out_features))  # xavier-uniform
    assert fc6.weight.abs().max().item() <= bound and fc6.weight.abs().max().item() > 0.9 * bound
    assert fc6.bias.abs().sum().item() == 0
    conv = m.backbone.fpn.layer_blocks[0][0]
    fan_in, fan_out = conv.in_channels * 9, conv.out_channels * 9
    assert conv.weight.abs().max().item() <= math.sqrt(6 / (fan_in + fan_out))


# ---- RPN: invalid padding anchors, min_pos_iou -------------------------------------------------------------------
def test_anchors_over_padding_are_never_sampled():
    from torchvision.models.detection.image_list import ImageList

    from methods._core.model import build_faster_rcnn, valid_anchor_mask

    m = build_faster_rcnn(_tiny_cfg(valid_anchors_only=True)["model"], 2)
    rpn = m.rpn
    # image 0 is 64 x 64 inside a 64 x 160 batch canvas: the anchors at x >= 64 lie over its padding
    images = ImageList(torch.zeros(2, 3, 64, 160), [(64, 64), (64, 160)])
    feats = m.backbone(images.tensors)
    anchors = rpn.anchor_generator(images, list(feats.values()))
    targets = [{"boxes": torch.tensor([[20.0, 10.0, 60.0, 50.0]])}, {"boxes": torch.tensor([[90.0, 8.0, 150.0, 60.0]])}]
    rpn._image_sizes = images.image_sizes
    labels, _ = rpn.assign_targets_to_anchors(anchors, targets)
    invalid = ~valid_anchor_mask(anchors[0], (64, 64), 32)
    assert invalid.sum().item() > 100 and not (~valid_anchor_mask(anchors[1], (64, 160), 32)).any()
    assert (labels[0][invalid] == -1).all()
    torch.manual_seed(0)
    for _ in range(20):
        pos, neg = rpn.fg_bg_sampler(labels)
        assert not ((pos[0] | neg[0]).bool() & invalid).any()
        assert neg[0].sum().item() > 0
    # torchvision's RPN samples easy negatives over the padding
    rpn.valid_anchors_only = False
    labels_tv, _ = rpn.assign_targets_to_anchors(anchors, targets)
    assert (labels_tv[0][invalid] == 0).sum().item() > 100


def test_rpn_low_quality_matches_need_min_pos_iou():
    from torchvision.models.detection._utils import Matcher

    from methods._core.model import MinIoUMatcher

    iou = torch.tensor([[0.2, 0.1, 0.0], [0.1, 0.6, 0.1]])  # GT 0's best anchor reaches only 0.2
    tv = Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou)
    mm = MinIoUMatcher(0.7, 0.3, 0.3)(iou)
    assert tv.tolist() == [0, 1, -1]  # anchor 0 is GT 0's best (0.2): torchvision makes it positive
    assert mm.tolist() == [-1, 1, -1]  # mmdet (min_pos_iou 0.3): negative; GT 1's best (0.6) still positive


# ---- data: aspect-ratio groups, empty images, unclipped boxes ----------------------------------------------------
def test_aspect_ratio_groups_make_single_orientation_batches():
    from methods._core.data import TrainOrder

    groups = [0] * 7 + [1] * 12
    order = TrainOrder(19, 4, data_seed=3, groups=groups)
    assert order.pass_length == 8 + 12  # each group padded to a multiple of the batch
    for it in range(order.pass_length // 4 * 2):  # two passes
        batch = [i for i, _, _ in order.global_batch(it)]
        assert len({groups[i] for i in batch}) == 1, batch
    first_pass = [i for it in range(5) for i, _, _ in order.global_batch(it)]
    assert set(first_pass) == set(range(19))
    plain = TrainOrder(19, 4, data_seed=3)  # without groups: the stream as before (mixed batches)
    assert plain.pass_length == 19
    assert any(len({groups[i] for i, _, _ in plain.global_batch(it)}) == 2 for it in range(4))


def test_filter_empty_gt_and_unclipped_boxes():
    from benchmark.datasets.core import DetectionDataset
    from methods._core.data import DetectionImages, TrainOrder

    ds = DetectionDataset.from_coco({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 50, "height": 40},
                   {"id": 2, "file_name": "b.jpg", "width": 50, "height": 40}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [40.0, 5.0, 20.0, 10.0], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "a"}]})
    clipped = DetectionImages(ds)
    raw = DetectionImages(ds, clip_gt=False)
    assert clipped._targets[0]["boxes"].tolist() == [[40.0, 5.0, 50.0, 15.0]]
    assert raw._targets[0]["boxes"].tolist() == [[40.0, 5.0, 60.0, 15.0]]  # mmdet: not clipped
    assert raw.with_boxes() == [0]
    order = TrainOrder(2, 1, data_seed=0, indices=raw.with_boxes())
    assert {order.global_batch(it)[0][0] for it in range(6)} == {0}
