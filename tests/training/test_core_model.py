"""Detector construction: the cpu tiny-FPN and the paper ResNet-50-FPN (no download), local weights."""

import pytest
import torch
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign, roi_align

from benchmark.config import resolve_config
from benchmark.errors import BenchError
from methods import get_method
from methods._core.model import build_faster_rcnn
from methods._core.roi_align import FastMultiScaleRoIAlign


def _cfg(profile, **model):
    cfg = resolve_config(get_method("faster_rcnn"), profile, "coco")["model"]
    if "weights" in model or "pretrained" in model:  # the recorded sha256 is of the profile's own start
        cfg.pop("weights_sha256", None)
    cfg.update(model)
    return cfg


def test_cpu_model_matches_the_prototype_recipe():
    m = build_faster_rcnn(_cfg("cpu"), num_classes=4)
    assert m.roi_heads.box_predictor.cls_score.out_features == 5
    assert m.backbone.out_channels == 64
    assert m.rpn.anchor_generator.sizes == ((8, 12), (16, 24), (32, 48), (64, 96))
    assert m.rpn.anchor_generator.num_anchors_per_location() == [6, 6, 6, 6]
    assert m.roi_heads.fg_bg_sampler.batch_size_per_image == 128
    pool = m.roi_heads.box_roi_pool  # torchvision's pooler with the sparse CPU backward (tests below)
    assert isinstance(pool, FastMultiScaleRoIAlign) and pool.sampling_ratio == 2 and pool.output_size == (7, 7)
    widths = [s[0].out_channels for s in m.backbone.body.children()]
    assert widths == [32, 48, 96, 160]
    m.eval()
    with torch.no_grad():
        feats = m.backbone(torch.rand(1, 3, 128, 128))
    assert {k: tuple(v.shape[-2:]) for k, v in feats.items()} == {"0": (32, 32), "1": (16, 16), "2": (8, 8),
                                                                   "pool": (4, 4)}


def test_paper_model_freezes_stem_and_stage1_with_frozen_bn(tmp_path):
    import torchvision

    path = tmp_path / "r50.pth"  # a local ImageNet-style backbone file, as offline users pass it
    torch.save(torchvision.models.resnet50().state_dict(), path)
    m = build_faster_rcnn(_cfg("fair", weights=str(path)), num_classes=20)
    body = m.backbone.body
    assert not any(p.requires_grad for p in body.conv1.parameters())
    assert not any(p.requires_grad for p in body.layer1.parameters())
    assert all(p.requires_grad for p in body.layer2.parameters())
    assert isinstance(body.bn1, FrozenBatchNorm2d)
    assert m.transform.min_size == (800,) and m.transform.max_size == 1333
    assert m.roi_heads.fg_bg_sampler.batch_size_per_image == 512
    assert m.roi_heads.box_predictor.cls_score.out_features == 21


def test_a_resnet_from_scratch_trains_every_stage_with_batchnorm():
    """No ImageNet weights (model.pretrained=false, no --weights): frozen BatchNorm would keep the random init's
    statistics and the frozen stem would never learn; every stage trains with ordinary BatchNorm (torchvision)."""
    with pytest.warns(UserWarning, match="from scratch"):
        m = build_faster_rcnn(_cfg("fair", pretrained=False), num_classes=20)
    body = m.backbone.body
    assert all(p.requires_grad for p in body.parameters())
    assert isinstance(body.bn1, torch.nn.BatchNorm2d) and not any(
        isinstance(x, FrozenBatchNorm2d) for x in body.modules())


def test_local_backbone_weights_are_loaded(tmp_path):
    import torchvision

    net = torchvision.models.resnet18()
    torch.nn.init.constant_(net.layer3[0].conv1.weight, 0.125)
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    m = build_faster_rcnn(_cfg("fair", backbone="resnet18", weights=str(path)), num_classes=3)
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
    pickled = tmp_path / "config.pth"  # a pickle torch's weights_only loader refuses, with a long explanation
    import datetime
    import pickle

    pickled.write_bytes(pickle.dumps(datetime.date(2024, 1, 1), protocol=2))
    with pytest.raises(BenchError, match="cannot read weights .*expected a torch state dict") as info:
        build_faster_rcnn(_cfg("cpu", weights=str(pickled)), 2)
    assert "\n" not in str(info.value)
    other = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3)}, other)
    with pytest.raises(BenchError, match="matches the model"):
        build_faster_rcnn(_cfg("cpu", weights=str(other)), 2)


# ---- RoIAlign with the sparse CPU backward (the core box head and SSD-Det's refiner) ---------------------------
@pytest.mark.parametrize("sr", [1, 2])
def test_fast_roi_align_backward_matches_torchvision(sr):
    from methods._core.roi_align import roi_align_fast_backward

    torch.manual_seed(sr)
    feat = torch.randn(3, 5, 13, 17, requires_grad=True)
    n = 200
    xy = torch.rand(n, 2) * torch.tensor([80.0, 60.0]) - 10  # partly outside the 68 x 52 image, both sides
    wh = torch.rand(n, 2) * 40 + 0.2  # includes RoIs thinner than one feature cell
    rois = torch.cat([torch.randint(0, 3, (n, 1)).float(), xy, xy + wh], 1)
    g = torch.randn(n, 5, 7, 7)
    a = roi_align(feat, rois, (7, 7), 0.25, sr)
    b = roi_align_fast_backward(feat, rois, (7, 7), 0.25, sr)
    assert torch.equal(a, b)
    (ga,) = torch.autograd.grad((a * g).sum(), feat)
    (gb,) = torch.autograd.grad((b * g).sum(), feat)
    assert torch.allclose(ga, gb, atol=1e-5)
    empty = roi_align_fast_backward(feat, rois[:0], (7, 7), 0.25, sr)
    (ge,) = torch.autograd.grad(empty.sum(), feat, allow_unused=False)
    assert (ge == 0).all()


@pytest.mark.parametrize("sizes", [(1, 600), (1, 60), (460, 600)], ids=["all-levels", "small-only", "large-only"])
def test_fast_multiscale_pooler_matches_torchvision(sizes):
    """Mixed sizes go through the per-level scatter; RoIs all on one level (the first, or the last) are pooled in
    one call on that level's map."""
    torch.manual_seed(0)
    feats = {k: torch.randn(2, 4, s, s, requires_grad=True) for k, s in (("0", 32), ("1", 16), ("2", 8))}
    boxes = []
    lo, hi = sizes
    for _ in range(2):
        xy = torch.rand(150, 2) * 120 - 5
        boxes.append(torch.cat([xy, xy + torch.rand(150, 2) * (hi - lo) + lo], 1))
    outs = []
    for cls in (MultiScaleRoIAlign, FastMultiScaleRoIAlign):
        pooler = cls(["0", "1", "2"], 7, 2)
        out = pooler(feats, boxes, [(128, 128)] * 2)
        w = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
        grads = torch.autograd.grad((out * w).sum(), list(feats.values()), allow_unused=True)
        outs.append((out, [torch.zeros_like(f) if g is None else g for f, g in zip(feats.values(), grads)]))
    levels = set(pooler.map_levels(boxes).tolist())
    assert levels == ({0, 1, 2} if sizes == (1, 600) else {0} if sizes == (1, 60) else {2})
    assert torch.equal(outs[0][0], outs[1][0])
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(outs[0][1], outs[1][1]))
