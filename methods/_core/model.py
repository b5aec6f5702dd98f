"""torchvision Faster R-CNN with FPN, backbone chosen by the `model` section of the run config.

Backbone families:
- `tiny`: 4 stages of 2x [conv3x3-BN-ReLU] (first conv of each stage stride 2), FPN on stages 2-4 + max-pool level
  (P2..P5, strides 4..32). Small enough to train on 2 CPU cores (the `cpu` profile). `model.pretrained=true` starts
  it from the suite's own weights (`methods/_core/weights/tiny_pretext.pth`, rebuilt by `methods._core.pretrain`),
  loaded exactly as a `model.weights` file is; `false` trains it from a random init.
- torchvision ResNets (`resnet50`, ...): the papers' ResNet-50-FPN with frozen BN and the first stages frozen,
  ImageNet-initialised from torchvision's weight enums or from a local file (`model.weights`).
- `mobilenet_v3_large`: torchvision's MobileNetV3-Large (frozen BN when initialised) with an FPN on its stride
  8/16/32 stages + a max-pool level, the same 4 levels as `tiny`: a small ImageNet backbone for real photos on CPU.

`model.weights_sha256` (filled in by `benchmark.config`) is checked against the file actually loaded, so a cell
never trains from other weights than the ones its config names.

`model.upscale = False` keeps images that already fit in min_size x max_size at their native size (the `cpu`
profile trains 128 px shapes at 128 px and downsizes 640x480 BCCD to 320x240).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from benchmark.errors import BenchError
from methods._core.roi_align import FastMultiScaleRoIAlign

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
MOBILENETS = ("mobilenet_v3_large",)
BACKBONES = ("tiny",) + RESNETS + MOBILENETS
CLASSIFIER_HEADS = ("fc.", "classifier.")  # ImageNet heads a backbone file may carry; never loaded
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class ResizeTransform(GeneralizedRCNNTransform):
    """torchvision's transform, optionally never enlarging an image that already fits the size limits."""

    def __init__(self, *args, upscale: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.upscale = upscale

    def resize(self, image, target=None):
        if not self.upscale:
            h, w = image.shape[-2:]
            scale = min(float(self.min_size[-1]) / min(h, w), float(self.max_size) / max(h, w))
            if scale >= 1.0:
                return image, target
        return super().resize(image, target)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def tiny_backbone(widths: list[int], fpn_channels: int) -> BackboneWithFPN:
    """4-stage conv net (strides 2/4/8/16) + FPN on stages 2-4 and a max-pool level: P2..P5 = '0','1','2','pool'."""
    if len(widths) != 4:
        raise BenchError(f"model.widths must list 4 stage widths, got {widths}")
    stages, cin = OrderedDict(), 3
    for i, w in enumerate(widths):
        stages[f"stage{i + 1}"] = nn.Sequential(*_conv_bn_relu(cin, w, 2), *_conv_bn_relu(w, w, 1))
        cin = w
    body = nn.Sequential(stages)
    return BackboneWithFPN(body, {"stage2": "0", "stage3": "1", "stage4": "2"}, list(widths[1:]), fpn_channels,
                           extra_blocks=LastLevelMaxPool())


def _load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise BenchError("weights file not found", path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with custom classes, ...
        first = (str(exc).strip().splitlines() or [""])[0]  # torch's own advice runs to several lines
        raise BenchError(f"cannot read weights ({type(exc).__name__}: {first}); expected a torch state dict or "
                         "checkpoint", path) from None
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise BenchError("not a state dict of tensors", path)
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _load_matching(module: nn.Module, sd: dict[str, torch.Tensor], path, body: str = "", backbone: str = "") -> int:
    """Load the entries whose name and shape match; a file that matches nothing is an error, not a no-op, and so is
    one that does not hold exactly the backbone's weights (names starting with `body`; a classifier head aside): a
    ResNet-18 or ResNet-101 file given to a ResNet-50 would otherwise load the layers that happen to fit and train
    the rest from random weights without a word. Heads may differ (a detector with another number of classes)."""
    own = module.state_dict()
    ok = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    if not ok:
        raise BenchError("no weight in this file matches the model (wrong backbone?)", path)

    def in_body(k: str) -> bool:
        return (k.startswith(body) and not k[len(body):].startswith(CLASSIFIER_HEADS)
                and not k.endswith("num_batches_tracked"))

    missing = [k for k in own if in_body(k) and k not in ok]
    extra = [k for k in sd if in_body(k) and k not in own]
    if missing or extra:
        what = (f"{len(missing)} of the {sum(map(in_body, own))} backbone weights are missing or shaped differently "
                f"(e.g. {missing[0]})" if missing else f"it has {len(extra)} backbone weights the model lacks "
                                                         f"(e.g. {extra[0]})")
        raise BenchError(f"weights do not fit model.backbone={backbone}: {what}; wrong backbone?", path)
    module.load_state_dict(ok, strict=False)
    return len(ok)


def _torchvision_net(name: str, pretrained: bool, weights_path) -> nn.Module:
    """A torchvision classification net: ImageNet-initialised (the enum's weights: torchvision's cache, else a
    download; or `weights_path` loaded later) with frozen BatchNorm, or, from scratch, with ordinary BatchNorm:
    frozen statistics of a random init normalise nothing."""
    import torchvision

    weights = None
    if pretrained and not weights_path:
        weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    norm = nn.BatchNorm2d if _from_scratch(pretrained, weights_path) else FrozenBatchNorm2d
    try:
        net = torchvision.models.get_model(name, weights=weights, norm_layer=norm)
    except (OSError, RuntimeError) as exc:  # offline machine, blocked download
        raise BenchError(f"cannot get ImageNet weights for {name} ({exc}); pass --weights PATH "
                         f"(a torchvision {name} state dict) or set model.pretrained=false") from None
    return net


def _from_scratch(pretrained, weights_path) -> bool:
    """No ImageNet weights and no `--weights` file: the backbone starts from a random init."""
    return not pretrained and not weights_path


def _trainable_layers(cfg: dict, weights_path) -> int:
    """`model.trainable_layers`, except from scratch: then every stage trains, as torchvision does; frozen randomly
    initialised stages would never learn."""
    layers = cfg["trainable_layers"]
    every = 6 if cfg["backbone"] in MOBILENETS else 5
    if not _from_scratch(cfg.get("pretrained"), weights_path) or layers == every:
        return layers
    warnings.warn(f"model.backbone={cfg['backbone']} from scratch (model.pretrained=false, no --weights): all "
                  f"{every} stages train with ordinary BatchNorm; model.trainable_layers={layers} applies to "
                  "initialised backbones only", stacklevel=3)
    return every


def resnet_fpn(net: nn.Module, trainable_layers: int, fpn_channels: int, levels: int = 4) -> BackboneWithFPN:
    """FPN on layer1..`levels` + a max-pool level (the paper's 4: P2..P6; the `cpu` profile's 3: strides 4..32, as
    `tiny`); stem and the first `5 - trainable_layers` stages frozen (paper: 3 -> stem+layer1)."""
    if not 0 <= trainable_layers <= 5:
        raise BenchError(f"model.trainable_layers must be in 0..5, got {trainable_layers}")
    train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers] + (["bn1"] if trainable_layers == 5 else [])
    for pname, p in net.named_parameters():
        if not any(pname.startswith(t) for t in train):
            p.requires_grad_(False)
    c2 = net.inplanes // 8
    if not 1 <= levels <= 4:
        raise BenchError(f"a ResNet FPN has 1-4 levels besides the pool level; model.roi_featmaps names {levels}")
    layers = range(1, levels + 1)
    return BackboneWithFPN(net, {f"layer{k}": str(k - 1) for k in layers}, [c2 * 2 ** (k - 1) for k in layers],
                           fpn_channels, extra_blocks=LastLevelMaxPool())


def mobilenet_fpn(net: nn.Module, trainable_layers: int, fpn_channels: int) -> BackboneWithFPN:
    """FPN on the ends of MobileNetV3's stride 8/16/32 stages + a max-pool level ('0','1','2','pool': the same 4
    levels as `tiny`); blocks before the last `trainable_layers` of its 6 stages frozen (torchvision's rule)."""
    feats = net.features
    starts = [0] + [i for i, b in enumerate(feats) if getattr(b, "_is_cn", False)] + [len(feats) - 1]
    if not 0 <= trainable_layers <= len(starts):
        raise BenchError(f"model.trainable_layers must be in 0..{len(starts)} for {type(net).__name__}, "
                         f"got {trainable_layers}")
    freeze_before = len(feats) if trainable_layers == 0 else starts[len(starts) - trainable_layers]
    for b in feats[:freeze_before]:
        b.requires_grad_(False)
    ends = [starts[3] - 1, starts[4] - 1, len(feats) - 1]  # last block at stride 8, at stride 16, the final conv
    return BackboneWithFPN(feats, {str(e): str(k) for k, e in enumerate(ends)},
                           [feats[e].out_channels for e in ends], fpn_channels, extra_blocks=LastLevelMaxPool())


def suite_weights(cfg: dict) -> Path | None:
    """The suite's pretrained `tiny` weights file when the config asks for them (tiny, pretrained, no file)."""
    from methods._core.weights import TINY_PRETEXT

    if cfg["backbone"] == "tiny" and cfg.get("pretrained") and not cfg.get("weights"):
        return TINY_PRETEXT
    return None


def _check_sha256(path, expected: str | None) -> None:
    if not expected:
        return
    from benchmark.io import sha256_file

    found = sha256_file(path)
    if found != expected:
        raise BenchError(f"weights file changed: sha256 {found[:12]}... but the run's config names "
                         f"{expected[:12]}... (model.weights_sha256)", path)


def build_faster_rcnn(model_cfg: dict, num_classes: int) -> FasterRCNN:
    """Faster R-CNN + FPN for `num_classes` object classes (background excluded)."""
    cfg = model_cfg
    name = cfg["backbone"]
    weights_path = cfg.get("weights") or suite_weights(cfg)
    detector_weights = None
    if weights_path:
        if not Path(weights_path).is_file() and suite_weights(cfg):
            raise BenchError("the suite's pretrained tiny weights are missing from this install; rebuild them with "
                             "`python -m methods._core.pretrain` or set model.pretrained=false", weights_path)
        sd = _load_state_dict(weights_path)
        _check_sha256(weights_path, cfg.get("weights_sha256"))
        if any(k.startswith("backbone.") for k in sd):
            detector_weights = sd  # a whole detector: loaded after construction
    if name == "tiny":
        backbone = tiny_backbone(list(cfg["widths"]), cfg["fpn_channels"])
        if weights_path and detector_weights is None:
            _load_matching(backbone.body, sd, weights_path, backbone=name)
    elif name in RESNETS + MOBILENETS:
        net = _torchvision_net(name, bool(cfg.get("pretrained")), weights_path)
        if weights_path and detector_weights is None:
            _load_matching(net, sd, weights_path, backbone=name)
        levels = len(cfg["roi_featmaps"])
        if name in RESNETS:
            backbone = resnet_fpn(net, _trainable_layers(cfg, weights_path), cfg["fpn_channels"], levels)
        elif levels != 3:
            raise BenchError(f"model.backbone={name} gives 3 FPN levels + pool; model.roi_featmaps names {levels} "
                             "(use ['0', '1', '2'] and 4 levels of model.anchor_sizes, as the cpu profile)")
        else:
            backbone = mobilenet_fpn(net, _trainable_layers(cfg, weights_path), cfg["fpn_channels"])
    else:
        raise BenchError(f"unknown model.backbone {name!r} (known: {', '.join(BACKBONES)})")

    anchor_sizes = tuple(tuple(int(s) for s in level) for level in cfg["anchor_sizes"])
    ratios = tuple(float(r) for r in cfg["aspect_ratios"])
    anchors = AnchorGenerator(anchor_sizes, (ratios,) * len(anchor_sizes))
    featmaps = list(cfg["roi_featmaps"])
    roi_pool = FastMultiScaleRoIAlign(featmaps, output_size=7, sampling_ratio=2)  # torchvision's, faster CPU backward
    ch = backbone.out_channels
    rep = cfg["representation_size"]
    model = FasterRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_head=TwoMLPHead(ch * 7 * 7, rep),
        box_predictor=FastRCNNPredictor(rep, num_classes + 1),
        rpn_pre_nms_top_n_train=cfg["rpn_pre_nms_top_n_train"],
        rpn_pre_nms_top_n_test=cfg["rpn_pre_nms_top_n_test"],
        rpn_post_nms_top_n_train=cfg["rpn_post_nms_top_n_train"],
        rpn_post_nms_top_n_test=cfg["rpn_post_nms_top_n_test"],
        box_batch_size_per_image=cfg["box_batch_size_per_image"],
        box_score_thresh=cfg["box_score_thresh"],
        box_nms_thresh=cfg["box_nms_thresh"],
        box_detections_per_img=cfg["box_detections_per_img"],
    )
    model.transform = ResizeTransform(cfg["min_size"], cfg["max_size"], IMAGENET_MEAN, IMAGENET_STD,
                                      upscale=bool(cfg.get("upscale", True)))
    if detector_weights is not None:
        _load_matching(model, detector_weights, weights_path, "backbone.body.", name)
    return model
