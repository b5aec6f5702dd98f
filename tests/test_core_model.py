"""Detector construction: the cpu tiny-FPN and the paper ResNet-50-FPN (no download), local weights."""

import pytest
import torch
from torchvision.ops import FrozenBatchNorm2d

from benchmark.config import resolve_config
from benchmark.errors import BenchError
from methods import get_method
from methods._core.model import build_faster_rcnn


def _cfg(profile, **model):
    cfg = resolve_config(get_method("faster_rcnn"), profile, "coco")["model"]
    cfg.update(model)
    return cfg


def test_cpu_model_matches_the_prototype_recipe():
    m = build_faster_rcnn(_cfg("cpu"), num_classes=4)
    assert m.roi_heads.box_predictor.cls_score.out_features == 5
    assert m.backbone.out_channels == 64
    assert m.rpn.anchor_generator.sizes == ((8, 12), (16, 24), (32, 48), (64, 96))
    assert m.rpn.anchor_generator.num_anchors_per_location() == [6, 6, 6, 6]
    assert m.roi_heads.fg_bg_sampler.batch_size_per_image == 128
    widths = [s[0].out_channels for s in m.backbone.body.children()]
    assert widths == [32, 48, 96, 160]
    m.eval()
    with torch.no_grad():
        feats = m.backbone(torch.rand(1, 3, 128, 128))
    assert {k: tuple(v.shape[-2:]) for k, v in feats.items()} == {"0": (32, 32), "1": (16, 16), "2": (8, 8),
                                                                   "pool": (4, 4)}


def test_paper_model_freezes_stem_and_stage1_with_frozen_bn():
    m = build_faster_rcnn(_cfg("paper", pretrained=False), num_classes=20)
    body = m.backbone.body
    assert not any(p.requires_grad for p in body.conv1.parameters())
    assert not any(p.requires_grad for p in body.layer1.parameters())
    assert all(p.requires_grad for p in body.layer2.parameters())
    assert isinstance(body.bn1, FrozenBatchNorm2d)
    assert m.transform.min_size == (800,) and m.transform.max_size == 1333
    assert m.roi_heads.fg_bg_sampler.batch_size_per_image == 512
    assert m.roi_heads.box_predictor.cls_score.out_features == 21


def test_local_backbone_weights_are_loaded(tmp_path):
    import torchvision

    net = torchvision.models.resnet18()
    torch.nn.init.constant_(net.layer3[0].conv1.weight, 0.125)
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    m = build_faster_rcnn(_cfg("paper", backbone="resnet18", weights=str(path)), num_classes=3)
    assert torch.all(m.backbone.body.layer3[0].conv1.weight == 0.125)


def test_full_detector_weights_are_loaded_except_mismatched_heads(tmp_path):
    src = build_faster_rcnn(_cfg("cpu"), num_classes=4)
    torch.nn.init.constant_(src.backbone.fpn.inner_blocks[0][0].weight, 0.5)
    path = tmp_path / "det.pth"
    torch.save({"model": src.state_dict()}, path)
    m = build_faster_rcnn(_cfg("cpu", weights=str(path)), num_classes=2)  # different class count
    assert torch.all(m.backbone.fpn.inner_blocks[0][0].weight == 0.5)
    assert m.roi_heads.box_predictor.cls_score.out_features == 3


def test_bad_weights_files_are_clear_errors(tmp_path):
    with pytest.raises(BenchError, match="weights file not found"):
        build_faster_rcnn(_cfg("cpu", weights=str(tmp_path / "nope.pth")), 2)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(BenchError, match="cannot read weights"):
        build_faster_rcnn(_cfg("cpu", weights=str(junk)), 2)
    other = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3)}, other)
    with pytest.raises(BenchError, match="matches the model"):
        build_faster_rcnn(_cfg("cpu", weights=str(other)), 2)
