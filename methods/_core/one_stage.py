"""The one-stage detection core: torchvision RetinaNet on the two-stage core's backbones (`methods._core.model`).

Backbones come from the same builders and `model` keys as Faster R-CNN, so a one-stage row differs from the
two-stage one by the detector only:
- `tiny` (the `cpu` profile): the same 4-stage conv net and FPN (P2..P5 + max-pool level); small images need the
  fine levels, so the levels stay those of the two-stage core.
- torchvision ResNets (the `paper` profile): RetinaNet's R50-FPN as in the papers' mmdet configs -- FPN on C3..C5
  plus P6/P7 from C5 (`add_extra_convs='on_input'`), strides 8..128; freezing and ImageNet initialisation are
  `model.py`'s (`resnet_fpn`, `_torchvision_net`, `_load_matching`: private helpers of model.py, imported, not copied).

Anchors: each level's `model.anchor_sizes` times the method's `octave_scales` (RetinaNet: base 4 x stride and
three scales 2^(0, 1/3, 2/3); the paper profile's [[32], ..., [512]] are exactly RetinaNet's bases at P3..P7),
with `model.aspect_ratios`. Head, focal loss, matcher (IoU >= 0.5 positive, < 0.4 negative, low-quality matches
kept) and box coder are torchvision's; `one_stage_defaults` lists the settings and their sources.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from benchmark.errors import BenchError
from methods._core.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESNETS,
    ResizeTransform,
    _load_matching,
    _load_state_dict,
    _torchvision_net,
    _trainable_layers,
    resnet_fpn,
    tiny_backbone,
)

# RetinaNet's published settings (Lin et al., ICCV 2017, arXiv 1708.02002 §4.1, §5.1; mmdet 2.x
# configs/_base_/models/retinanet_r50_fpn.py and configs/retinanet/retinanet_r50_fpn_1x_coco.py)
ONE_STAGE_SOURCES = {
    "focal_alpha": "0.25 (RetinaNet §5.1; mmdet retinanet_r50_fpn loss_cls alpha)",
    "focal_gamma": "2.0 (RetinaNet §5.1; mmdet retinanet_r50_fpn loss_cls gamma)",
    "octave_scales": "2^(0, 1/3, 2/3) x base 4*stride (RetinaNet §4.1; mmdet octave_base_scale 4, scales_per_octave "
                     "3); cpu profile: [1] (its anchor_sizes already list 2 sizes per level)",
    "fg_iou_thresh": "0.5 (RetinaNet §4.1; mmdet MaxIoUAssigner pos_iou_thr)",
    "bg_iou_thresh": "0.4 (RetinaNet §4.1; mmdet MaxIoUAssigner neg_iou_thr)",
    "topk_candidates": "1000 per level before NMS (RetinaNet §4.1 inference; mmdet test_cfg nms_pre)",
    "head_norm": "none: RetinaNet's head has no normalisation (§4.1); `group` puts GroupNorm(32) in its conv towers "
                 "(torchvision's RetinaNet v2 head), the cpu profile's default: its backbone trains from scratch "
                 "and without it RetinaNet barely learns in the cpu schedule (clean shapes, seed 0: AP 1.8 -> 6.5)",
    "lr": "paper profile 0.01 for batch 16 (mmdet retinanet_r50_fpn_1x_coco optimizer), via profile_overrides",
}


def one_stage_defaults(profile: str) -> dict:
    """The one-stage core's `method` keys for a profile (every one-stage method starts from these)."""
    octave = [1.0] if profile == "cpu" else [1.0, 2 ** (1 / 3), 2 ** (2 / 3)]
    return {"focal_alpha": 0.25, "focal_gamma": 2.0, "octave_scales": octave, "fg_iou_thresh": 0.5,
            "bg_iou_thresh": 0.4, "topk_candidates": 1000, "head_norm": "group" if profile == "cpu" else "none"}


def one_stage_profile_overrides(profile: str) -> dict:
    """The `train` changes RetinaNet's published recipe makes to the paper profile (lr 0.01, not 0.02)."""
    return {"train": {"lr": 0.01}} if profile == "paper" else {}


def _backbone(cfg: dict) -> tuple[nn.Module, dict | None, str | None]:
    """(backbone with FPN, detector weights to load after construction or None, weights path)."""
    name = cfg["backbone"]
    weights_path = cfg.get("weights")
    sd = detector_weights = None
    if weights_path:
        sd = _load_state_dict(weights_path)
        if any(k.startswith("backbone.") for k in sd):
            detector_weights = sd
    if name == "tiny":
        backbone = tiny_backbone(list(cfg["widths"]), cfg["fpn_channels"])
        if sd is not None and detector_weights is None:
            _load_matching(backbone.body, sd, weights_path, backbone=name)
        return backbone, detector_weights, weights_path
    if name not in RESNETS:
        raise BenchError(f"unknown model.backbone {name!r} (known: tiny, {', '.join(RESNETS)})")
    net = _torchvision_net(name, bool(cfg.get("pretrained")), weights_path)
    if sd is not None and detector_weights is None:
        _load_matching(net, sd, weights_path, backbone=name)
    c2 = net.inplanes // 8  # before resnet_fpn wraps it: 256 for ResNet-50/101/152, 64 for ResNet-18/34
    # resnet_fpn freezes the stem and early stages exactly as the two-stage core does; its body is then re-wrapped
    # to return C3..C5 only, under RetinaNet's FPN (P3..P5 + P6/P7 from C5)
    frozen = resnet_fpn(net, _trainable_layers(cfg, weights_path), cfg["fpn_channels"])
    c5 = c2 * 8
    backbone = BackboneWithFPN(frozen.body, {"layer2": "0", "layer3": "1", "layer4": "2"}, [c2 * 2, c2 * 4, c5],
                               cfg["fpn_channels"], extra_blocks=LastLevelP6P7(c5, cfg["fpn_channels"]))
    return backbone, detector_weights, weights_path


def num_levels(model_cfg: dict) -> int:
    """Feature levels the one-stage backbone gives: tiny 4 (P2..P5), ResNets 5 (P3..P7)."""
    return 4 if model_cfg["backbone"] == "tiny" else 5


def anchor_generator(model_cfg: dict, octave_scales) -> AnchorGenerator:
    """Per level: every size of `model.anchor_sizes` times every octave scale, at every aspect ratio."""
    sizes = [[float(s) * float(o) for s in level for o in octave_scales] for level in model_cfg["anchor_sizes"]]
    if len(sizes) != num_levels(model_cfg):
        raise BenchError(f"one-stage core with model.backbone={model_cfg['backbone']} has {num_levels(model_cfg)} "
                         f"feature levels but model.anchor_sizes lists {len(sizes)}")
    if len({len(level) for level in sizes}) != 1:
        raise BenchError("one-stage core: every level of model.anchor_sizes must list the same number of sizes "
                         f"(one shared head predicts them), got {model_cfg['anchor_sizes']}")
    ratios = tuple(float(r) for r in model_cfg["aspect_ratios"])
    return AnchorGenerator(tuple(tuple(level) for level in sizes), (ratios,) * len(sizes))


def check_one_stage(method_cfg: dict) -> None:
    """One-line errors for bad one-stage `method.*` values."""
    for key in ("focal_alpha", "fg_iou_thresh", "bg_iou_thresh"):
        v = method_cfg[key]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
            raise BenchError(f"method.{key} must be a number in [0, 1], got {v!r}")
    if method_cfg["bg_iou_thresh"] > method_cfg["fg_iou_thresh"]:
        raise BenchError("method.bg_iou_thresh must not exceed method.fg_iou_thresh")
    if not method_cfg["focal_gamma"] >= 0:
        raise BenchError(f"method.focal_gamma must be >= 0, got {method_cfg['focal_gamma']!r}")
    octave = method_cfg["octave_scales"]
    if not isinstance(octave, list) or not octave or not all(
            isinstance(o, (int, float)) and not isinstance(o, bool) and o > 0 for o in octave):
        raise BenchError(f"method.octave_scales must be a non-empty list of positive numbers, got {octave!r}")
    if method_cfg["head_norm"] not in ("none", "group"):
        raise BenchError(f"method.head_norm must be none or group, got {method_cfg['head_norm']!r}")
    if not (isinstance(method_cfg["topk_candidates"], int) and method_cfg["topk_candidates"] > 0):
        raise BenchError(f"method.topk_candidates must be a positive integer, got {method_cfg['topk_candidates']!r}")


class OneStageDetector(RetinaNet):
    """torchvision RetinaNet speaking the suite's label convention (labels 1..K, no background class).

    torchvision's sigmoid head uses a label as its column index; with K columns the labels are shifted to 0..K-1
    for the loss and back for the detections, so no never-positive background column is trained or predicted.
    Subclasses change the training loss by overriding `detection_loss` (targets with 0-based labels)."""

    def compute_loss(self, targets, head_outputs, anchors):
        targets = [{**t, "labels": t["labels"] - 1} for t in targets]
        return self.detection_loss(targets, head_outputs, anchors)

    def detection_loss(self, targets, head_outputs, anchors) -> dict:
        """torchvision's RetinaNet losses (focal classification, L1 box regression): `classification`,
        `bbox_regression`."""
        return RetinaNet.compute_loss(self, targets, head_outputs, anchors)

    def postprocess_detections(self, head_outputs, anchors, image_shapes):
        detections = super().postprocess_detections(head_outputs, anchors, image_shapes)
        for d in detections:
            d["labels"] = d["labels"] + 1
        return detections


def build_retinanet(model_cfg: dict, num_classes: int, method_cfg: dict | None = None,
                    cls: type[OneStageDetector] = OneStageDetector) -> OneStageDetector:
    """torchvision RetinaNet (or the subclass `cls`, e.g. with another loss) for `num_classes` object classes.

    `method_cfg` holds the one-stage keys of `one_stage_defaults` (missing ones take the `paper` values)."""
    m = {**one_stage_defaults("paper"), **(method_cfg or {})}
    check_one_stage(m)
    backbone, detector_weights, weights_path = _backbone(model_cfg)
    anchors = anchor_generator(model_cfg, m["octave_scales"])
    model = cls(
        backbone, num_classes,
        anchor_generator=anchors,
        score_thresh=model_cfg["box_score_thresh"], nms_thresh=model_cfg["box_nms_thresh"],
        detections_per_img=model_cfg["box_detections_per_img"], fg_iou_thresh=m["fg_iou_thresh"],
        bg_iou_thresh=m["bg_iou_thresh"], topk_candidates=m["topk_candidates"],
    )
    if m["head_norm"] == "group":
        from functools import partial

        from torchvision.models.detection.retinanet import RetinaNetHead

        groups = min(32, backbone.out_channels)
        model.head = RetinaNetHead(backbone.out_channels, anchors.num_anchors_per_location()[0], num_classes,
                                   norm_layer=partial(nn.GroupNorm, groups))
    set_focal(model, m["focal_alpha"], m["focal_gamma"])
    model.transform = ResizeTransform(model_cfg["min_size"], model_cfg["max_size"], IMAGENET_MEAN, IMAGENET_STD,
                                      upscale=bool(model_cfg.get("upscale", True)))
    if detector_weights is not None:
        _load_matching(model, detector_weights, weights_path, "backbone.body.", model_cfg["backbone"])
    return model


def set_focal(model: RetinaNet, alpha: float, gamma: float) -> None:
    """Use focal-loss alpha/gamma other than torchvision's hard-coded 0.25 / 2 in the classification head."""
    head = model.head.classification_head
    head.focal_alpha, head.focal_gamma = float(alpha), float(gamma)
    if (alpha, gamma) != (0.25, 2.0):
        head.compute_loss = _focal_compute_loss.__get__(head)


def _focal_compute_loss(self, targets, head_outputs, matched_idxs):
    """torchvision's RetinaNetClassificationHead.compute_loss with the head's own alpha and gamma."""
    from torchvision.ops import sigmoid_focal_loss

    losses = []
    cls_logits = head_outputs["cls_logits"]
    for targets_per_image, cls_logits_per_image, matched_idxs_per_image in zip(targets, cls_logits, matched_idxs):
        foreground = matched_idxs_per_image >= 0
        num_foreground = foreground.sum()
        gt = torch.zeros_like(cls_logits_per_image)
        gt[foreground, targets_per_image["labels"][matched_idxs_per_image[foreground]]] = 1.0
        valid = matched_idxs_per_image != self.BETWEEN_THRESHOLDS
        losses.append(sigmoid_focal_loss(cls_logits_per_image[valid], gt[valid], alpha=self.focal_alpha,
                                         gamma=self.focal_gamma, reduction="sum") / max(1, num_foreground))
    return sum(losses) / len(targets)


__all__ = ["ONE_STAGE_SOURCES", "OneStageDetector", "anchor_generator", "build_retinanet", "check_one_stage",
           "num_levels", "one_stage_defaults", "one_stage_profile_overrides"]
