"""The one-stage core (torchvision RetinaNet on the two-stage core's backbones): levels, anchors, the focal loss on
a hand-computed two-anchor example, the label convention, and the `detector` record / results column."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark import results
from benchmark.config import resolve_config
from benchmark.errors import BenchError
from benchmark.testing import TINY_OVERRIDES
from methods import get_method
from methods.core import build_retinanet, one_stage_defaults


def _tiny(method="retinanet", **extra):
    return resolve_config(get_method(method), "cpu", "shapes", 0.3, {**TINY_OVERRIDES, **extra})


def test_paper_backbone_is_retinanet_r50_fpn_p3_to_p7_with_nine_anchors():
    cfg = resolve_config(get_method("retinanet"), "paper", "coco", 0.4, {"model.pretrained": False})
    assert cfg["train"]["lr"] == 0.01  # mmdet retinanet_r50_fpn_1x, not Faster R-CNN's 0.02
    with pytest.warns(UserWarning, match="from scratch"):
        model = build_retinanet(cfg["model"], 80, cfg["method"])
    model.eval()
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, 256, 256))
    assert [f.shape[-1] for f in feats.values()] == [32, 16, 8, 4, 2]  # strides 8 .. 128
    assert model.anchor_generator.num_anchors_per_location() == [9] * 5
    sizes = model.anchor_generator.sizes[0]  # P3: 32 x 2^(0, 1/3, 2/3)
    assert [round(s, 3) for s in sizes] == [32.0, 40.317, 50.797]
    assert model.head.classification_head.num_classes == 80  # no background column


def test_focal_loss_on_two_anchors_by_hand():
    """One object, two anchors: anchor 0 matches it (IoU 1), anchor 1 is background (IoU 0). Logits chosen; the
    focal loss is summed over anchors x classes and divided by the one positive (Lin et al. Eq. 5, alpha 0.25,
    gamma 2)."""
    cfg = _tiny()
    model = build_retinanet(cfg["model"], 2, cfg["method"])
    anchors = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])]
    logits = torch.tensor([[[1.0, -2.0], [0.5, -1.0]]])  # (image, anchor, class)
    head_outputs = {"cls_logits": logits, "bbox_regression": torch.zeros(1, 2, 4)}
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([2])}]  # suite label 2
    losses = model.compute_loss(targets, head_outputs, anchors)

    def fl(x, y, a=0.25, g=2.0):
        p = 1 / (1 + math.exp(-x))
        return -a * (1 - p) ** g * math.log(p) if y else -(1 - a) * p ** g * math.log(1 - p)

    # suite label 2 -> column 1: anchor 0 is positive in column 1 only
    want = fl(1.0, 0) + fl(-2.0, 1) + fl(0.5, 0) + fl(-1.0, 0)
    assert losses["classification"].item() == pytest.approx(want, rel=1e-6)
    assert losses["bbox_regression"].item() == pytest.approx(0.0, abs=1e-7)  # anchor == box: zero deltas


def test_focal_alpha_gamma_are_configurable():
    cfg = _tiny(**{"method.focal_gamma": 0.0, "method.focal_alpha": 0.5})
    model = build_retinanet(cfg["model"], 1, cfg["method"])
    anchors = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])]
    head_outputs = {"cls_logits": torch.zeros(1, 2, 1), "bbox_regression": torch.zeros(1, 2, 4)}
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1])}]
    loss = model.compute_loss(targets, head_outputs, anchors)["classification"]
    assert loss.item() == pytest.approx(0.5 * math.log(2) * 2, rel=1e-6)  # gamma 0: alpha-weighted BCE


def test_predictions_use_the_suites_labels_1_to_k():
    cfg = _tiny(**{"model.box_score_thresh": 0.0})
    model = build_retinanet(cfg["model"], 2, cfg["method"]).eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 64)])[0]
    assert len(out["labels"]) and set(out["labels"].tolist()) <= {1, 2}


def test_bad_one_stage_settings_are_one_line_errors():
    with pytest.raises(BenchError, match="same number of sizes"):
        cfg = _tiny(**{"model.anchor_sizes": [[8], [16, 24], [32, 48], [64, 96]]})
        build_retinanet(cfg["model"], 2, cfg["method"])
    with pytest.raises(BenchError, match="head_norm"):
        cfg = _tiny(**{"method.head_norm": "batch"})
        build_retinanet(cfg["model"], 2, cfg["method"])
    with pytest.raises(BenchError, match="bg_iou_thresh"):
        cfg = _tiny(**{"method.bg_iou_thresh": 0.6})
        build_retinanet(cfg["model"], 2, cfg["method"])


def test_detector_is_recorded_only_for_the_one_stage_core():
    two = resolve_config(get_method("faster_rcnn"), "cpu", "shapes", 0.3)
    one = resolve_config(get_method("retinanet"), "cpu", "shapes", 0.3)
    assert "detector" not in two["profile"]  # two-stage configs, hence cell ids, unchanged
    assert one["profile"]["detector"] == "one_stage"
    assert results.detector({"method_config": one}) == "one_stage"
    assert results.detector({"method_config": two}) == "two_stage"
    assert results.detector({"method_config": {}, "external": {"file": "x"}}) == ""
    with pytest.raises(BenchError, match="profile.detector cannot be overridden"):
        resolve_config(get_method("retinanet"), "cpu", "shapes", 0.3, {"profile.detector": "two_stage"})


def test_one_stage_defaults_are_the_published_values():
    d = one_stage_defaults("paper")
    assert (d["focal_alpha"], d["focal_gamma"], d["fg_iou_thresh"], d["bg_iou_thresh"]) == (0.25, 2.0, 0.5, 0.4)
    assert d["octave_scales"] == pytest.approx([1.0, 2 ** (1 / 3), 2 ** (2 / 3)])
    assert d["head_norm"] == "none" and one_stage_defaults("cpu")["head_norm"] == "group"


def test_group_norm_head_option():
    cfg = _tiny(**{"method.head_norm": "group"})
    model = build_retinanet(cfg["model"], 2, cfg["method"])
    norms = [m for m in model.head.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 8 and norms[0].num_groups == 16  # 4 convs x 2 towers; 16-channel tiny FPN
