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

The mmdet 2.x detector the OA-MIL and SSD-Det papers ran differs from torchvision's in small ways; each is a
`model` key (`benchmark.config.OPTIONAL_KEYS`, defaults = torchvision's detector) so the `paper` recipe can switch
it on and the `fair` recipe can keep one shared choice: `box_coder` (DeltaXYXY), `rpn_box_loss`/`rcnn_box_loss`
(L1), `roi_align_aligned`/`roi_sampling_ratio` (mmcv RoIAlign), `norm_eval_affine_trainable` (BN statistics
frozen, gamma/beta trained), `init` (mmdet's head/FPN init), `valid_anchors_only` (anchors over padding never
sampled), `rpn_min_pos_iou`, `round_anchors` and `fpn_p6` (a conv P6 on C5, `add_extra_convs='on_input'`).
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool

from benchmark.config import option
from benchmark.errors import BenchError
from methods._core.geometry import XYXYBoxCoder
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


class EvalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose running statistics never update (always normalised with them, as in eval mode) while its
    affine gamma/beta stay trainable: mmdet's ResNet with `norm_eval=True` and `norm_cfg.requires_grad=True`.
    (torchvision's `FrozenBatchNorm2d` freezes gamma/beta as well.)"""

    def train(self, mode: bool = True):
        super().train(mode)
        self.training = False  # statistics frozen in training mode too
        return self


def _torchvision_net(name: str, pretrained: bool, weights_path, affine_trainable: bool = False) -> nn.Module:
    """A torchvision classification net: ImageNet-initialised (the enum's weights: torchvision's cache, else a
    download; or `weights_path` loaded later) with frozen BatchNorm, or, from scratch, with ordinary BatchNorm:
    frozen statistics of a random init normalise nothing. `affine_trainable`: frozen statistics but trainable
    gamma/beta (`EvalBatchNorm2d`, mmdet's norm_eval)."""
    import torchvision

    weights = None
    if pretrained and not weights_path:
        weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    norm = nn.BatchNorm2d if _from_scratch(pretrained, weights_path) else (
        EvalBatchNorm2d if affine_trainable else FrozenBatchNorm2d)
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


class LastLevelP6Conv(ExtraFPNBlock):
    """P6 = 3x3 stride-2 conv on C5 (mmdet FPN `add_extra_convs='on_input'`, one extra level), optionally normed
    like the other FPN convs (SSD-Det's GroupNorm FPN); torchvision's `LastLevelMaxPool` max-pools P5 instead."""

    def __init__(self, in_channels: int, out_channels: int, norm_layer=None):
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=norm_layer is None)
        self.norm = norm_layer(out_channels) if norm_layer is not None else nn.Identity()
        self.in_channels, self.out_channels = in_channels, out_channels
        nn.init.kaiming_uniform_(self.p6.weight, a=1)  # torchvision's FPN conv init (`init=mmdet` re-inits)
        if self.p6.bias is not None:
            nn.init.constant_(self.p6.bias, 0)

    def forward(self, results, x, names):
        results.append(self.norm(self.p6(x[-1])))
        names.append("pool")  # the level name torchvision's max-pool block gives P6
        return results, names


def resnet_fpn(net: nn.Module, trainable_layers: int, fpn_channels: int, levels: int = 4,
               fpn_p6: str = "maxpool") -> BackboneWithFPN:
    """FPN on layer1..`levels` + a sixth level (the paper's 4: P2..P6; the `cpu` profile's 3: strides 4..32, as
    `tiny`); stem and the first `5 - trainable_layers` stages frozen (paper: 3 -> stem+layer1). `fpn_p6`: the extra
    level max-pools the last one (`maxpool`, torchvision) or is a conv on the last stage (`conv_on_input`, mmdet's
    `add_extra_convs='on_input'`)."""
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
    channels = [c2 * 2 ** (k - 1) for k in layers]
    extra = LastLevelP6Conv(channels[-1], fpn_channels) if fpn_p6 == "conv_on_input" else LastLevelMaxPool()
    return BackboneWithFPN(net, {f"layer{k}": str(k - 1) for k in layers}, channels, fpn_channels, extra_blocks=extra)


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


def install_roi_heads(model: FasterRCNN, head: nn.Module) -> FasterRCNN:
    """Swap in a method's RoI head and expose its engine hooks (`set_epoch`, `refined_boxes`, `diagnostics`) on the
    model itself; the state dict keeps torchvision's key names."""
    model.roi_heads = head
    model.set_epoch = head.set_epoch
    model.refined_boxes = head.refined_boxes
    model.diagnostics = head.diagnostics
    return model


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
        net = _torchvision_net(name, bool(cfg.get("pretrained")), weights_path,
                               bool(option(cfg, "model", "norm_eval_affine_trainable")))
        if weights_path and detector_weights is None:
            _load_matching(net, sd, weights_path, backbone=name)
        levels = len(cfg["roi_featmaps"])
        if name in RESNETS:
            backbone = resnet_fpn(net, _trainable_layers(cfg, weights_path), cfg["fpn_channels"], levels,
                                  option(cfg, "model", "fpn_p6"))
        elif levels != 3:
            raise BenchError(f"model.backbone={name} gives 3 FPN levels + pool; model.roi_featmaps names {levels} "
                             "(use ['0', '1', '2'] and 4 levels of model.anchor_sizes, as the cpu profile)")
        else:
            backbone = mobilenet_fpn(net, _trainable_layers(cfg, weights_path), cfg["fpn_channels"])
    else:
        raise BenchError(f"unknown model.backbone {name!r} (known: {', '.join(BACKBONES)})")
    if name == "tiny" and option(cfg, "model", "fpn_p6") != "maxpool":
        raise BenchError("model.fpn_p6=conv_on_input needs a ResNet backbone (model.backbone=tiny has a max-pool P5)")

    round_anchors = bool(option(cfg, "model", "round_anchors"))
    anchor_sizes = tuple(tuple((int(s) if round_anchors else float(s)) for s in level) for level in cfg["anchor_sizes"])
    ratios = tuple(float(r) for r in cfg["aspect_ratios"])
    anchors = (AnchorGenerator if round_anchors else UnroundedAnchorGenerator)(anchor_sizes, (ratios,) * len(anchor_sizes))
    featmaps = list(cfg["roi_featmaps"])
    roi_pool = FastMultiScaleRoIAlign(featmaps, output_size=7,  # torchvision's, faster CPU backward
                                      sampling_ratio=int(option(cfg, "model", "roi_sampling_ratio")),
                                      aligned=bool(option(cfg, "model", "roi_align_aligned")))
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
    _mmdet_variant(model, cfg)
    if detector_weights is not None:
        _load_matching(model, detector_weights, weights_path, "backbone.body.", name)
    return model


# ---- the mmdet 2.x detector's choices (see the module docstring) ------------------------------------------------
def _mmdet_variant(model: FasterRCNN, cfg: dict) -> None:
    """Swap in the RPN / RoI-head variants and the init the config asks for; the defaults leave torchvision's
    modules in place, untouched."""
    xyxy = option(cfg, "model", "box_coder") == "xyxy"
    rpn_loss, rcnn_loss = option(cfg, "model", "rpn_box_loss"), option(cfg, "model", "rcnn_box_loss")
    valid_only, min_iou = bool(option(cfg, "model", "valid_anchors_only")), option(cfg, "model", "rpn_min_pos_iou")
    if xyxy or rpn_loss != "smooth_l1" or valid_only or min_iou is not None:
        model.rpn = CoreRPN(model.rpn, XYXYBoxCoder((1.0,) * 4) if xyxy else model.rpn.box_coder, rpn_loss,
                            valid_only, min_iou, model.transform.size_divisible)
    if xyxy or rcnn_loss != "smooth_l1":
        model.roi_heads = CoreRoIHeads(model.roi_heads, XYXYBoxCoder((0.1,) * 4) if xyxy else
                                       model.roi_heads.box_coder, rcnn_loss)
    if option(cfg, "model", "init") == "mmdet":
        mmdet_init(model)


def mmdet_init(model: nn.Module) -> None:
    """mmdet 2.x initialisation of the parts the detector adds to the backbone: FPN convs xavier-uniform (bias 0),
    Shared2FCBBoxHead fcs xavier-uniform, `fc_cls` N(0, 0.01), `fc_reg` N(0, 0.001) (biases 0). The RPN head is
    N(0, 0.01) in both libraries. Call again after replacing the FPN (SSD-Det's GroupNorm neck)."""
    fpn = getattr(getattr(model, "backbone", None), "fpn", None)
    if fpn is not None:
        for m in fpn.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    heads = getattr(model, "roi_heads", None)
    if heads is None:
        return
    for fc in (heads.box_head.fc6, heads.box_head.fc7):
        nn.init.xavier_uniform_(fc.weight)
        nn.init.zeros_(fc.bias)
    nn.init.normal_(heads.box_predictor.cls_score.weight, std=0.01)
    nn.init.normal_(heads.box_predictor.bbox_pred.weight, std=0.001)
    nn.init.zeros_(heads.box_predictor.cls_score.bias)
    nn.init.zeros_(heads.box_predictor.bbox_pred.bias)


class UnroundedAnchorGenerator(AnchorGenerator):
    """mmdet's `AnchorGenerator` (center_offset 0): base anchors w = size / sqrt(r), h = size * sqrt(r) centred on
    0, not rounded to whole pixels, and each level's stride the power of two nearest to image / feature size
    (mmdet's strides 4..64; torchvision divides integers, e.g. 800 // 13 = 61 for a P6 of 13 rows)."""

    def generate_anchors(self, scales, aspect_ratios, dtype=torch.float32, device=torch.device("cpu")):  # noqa: B008 (torchvision's signature)
        scales = torch.as_tensor(scales, dtype=dtype, device=device)
        aspect_ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
        h_ratios = torch.sqrt(aspect_ratios)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h_ratios[:, None] * scales[None, :]).view(-1)
        return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=1)

    def forward(self, image_list, feature_maps):
        grid_sizes = [fm.shape[-2:] for fm in feature_maps]
        image_size = image_list.tensors.shape[-2:]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        strides = [[torch.tensor(2 ** round(math.log2(image_size[0] / g[0])), dtype=torch.int64, device=device),
                    torch.tensor(2 ** round(math.log2(image_size[1] / g[1])), dtype=torch.int64, device=device)]
                   for g in grid_sizes]
        self.set_cell_anchors(dtype, device)
        per_level = self.grid_anchors(grid_sizes, strides)
        return [torch.cat(per_level) for _ in range(len(image_list.image_sizes))]


class MinIoUMatcher(Matcher):
    """torchvision's `Matcher` whose low-quality matches (an anchor that is some box's best) count only where that
    best IoU reaches `min_pos_iou` (mmdet `MaxIoUAssigner(min_pos_iou=...)`; torchvision takes any IoU, even 0)."""

    def __init__(self, high: float, low: float, min_pos_iou: float):
        super().__init__(high, low, allow_low_quality_matches=True)
        self.min_pos_iou = float(min_pos_iou)

    def set_low_quality_matches_(self, matches, all_matches, match_quality_matrix):
        best, _ = match_quality_matrix.max(dim=1)
        ok = (best >= self.min_pos_iou)[:, None]
        pairs = torch.where((match_quality_matrix == best[:, None]) & ok)
        matches[pairs[1]] = all_matches[pairs[1]]


def valid_anchor_mask(anchors: torch.Tensor, image_hw, size_divisible: int) -> torch.Tensor:
    """mmdet's anchor `valid_flags`: an anchor is valid when its grid position lies inside the image padded to a
    multiple of `size_divisible` (mmdet's per-image `pad_shape`), not in the rest of the batch canvas. Anchor
    centres are the grid positions (base anchors are centred on 0)."""
    pad_h = math.ceil(int(image_hw[0]) / size_divisible) * size_divisible
    pad_w = math.ceil(int(image_hw[1]) / size_divisible) * size_divisible
    cx = (anchors[:, 0] + anchors[:, 2]) / 2
    cy = (anchors[:, 1] + anchors[:, 3]) / 2
    return (cx < pad_w) & (cy < pad_h)


def _box_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed box loss: torchvision's smooth-L1 (beta 1/9) or mmdet's L1."""
    if kind == "l1":
        return F.l1_loss(pred, target, reduction="sum")
    return F.smooth_l1_loss(pred, target, beta=1 / 9, reduction="sum")


class CoreRPN(RegionProposalNetwork):
    """torchvision's RPN with mmdet's options: box coder, L1 box loss, anchors over padding never sampled, and a
    minimum IoU for low-quality matches. Same parameters (the head and anchor generator of `base`)."""

    def __init__(self, base: RegionProposalNetwork, box_coder, box_loss: str, valid_anchors_only: bool,
                 min_pos_iou: float | None, size_divisible: int):
        super().__init__(base.anchor_generator, base.head, base.proposal_matcher.high_threshold,
                         base.proposal_matcher.low_threshold, base.fg_bg_sampler.batch_size_per_image,
                         base.fg_bg_sampler.positive_fraction, dict(base._pre_nms_top_n), dict(base._post_nms_top_n),
                         base.nms_thresh, base.score_thresh)
        self.box_coder = box_coder
        if min_pos_iou is not None:
            self.proposal_matcher = MinIoUMatcher(self.proposal_matcher.high_threshold,
                                                  self.proposal_matcher.low_threshold, min_pos_iou)
        self.box_loss, self.valid_anchors_only, self.size_divisible = box_loss, valid_anchors_only, size_divisible
        self._image_sizes = None

    def forward(self, images, features, targets=None):
        self._image_sizes = images.image_sizes  # for assign_targets_to_anchors (torchvision does not pass them)
        try:
            return super().forward(images, features, targets)
        finally:
            self._image_sizes = None

    def assign_targets_to_anchors(self, anchors, targets):
        labels, matched = super().assign_targets_to_anchors(anchors, targets)
        if self.valid_anchors_only and self._image_sizes is not None:
            for i, (a, hw) in enumerate(zip(anchors, self._image_sizes)):
                valid = valid_anchor_mask(a, hw, self.size_divisible)
                labels[i] = torch.where(valid, labels[i], torch.full_like(labels[i], -1.0))  # -1: never sampled
        return labels, matched

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        if self.box_loss == "smooth_l1":
            return super().compute_loss(objectness, pred_bbox_deltas, labels, regression_targets)
        pos, neg = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(pos, dim=0))[0]
        neg = torch.where(torch.cat(neg, dim=0))[0]
        sampled = torch.cat([pos, neg], dim=0)
        objectness = objectness.flatten()
        labels = torch.cat(labels, dim=0)
        regression_targets = torch.cat(regression_targets, dim=0)
        box_loss = _box_loss(self.box_loss, pred_bbox_deltas[pos], regression_targets[pos]) / sampled.numel()
        objectness_loss = F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled])
        return objectness_loss, box_loss


class CoreRoIHeads(RoIHeads):
    """torchvision's `RoIHeads` with a chosen box coder and box loss (mmdet: L1, normalised like torchvision's by
    all sampled RoIs, as mmdet's `avg_factor`). Same modules as `base`; inference unchanged."""

    def __init__(self, base: RoIHeads, box_coder, box_loss: str):
        super().__init__(base.box_roi_pool, base.box_head, base.box_predictor,
                         fg_iou_thresh=base.proposal_matcher.high_threshold,
                         bg_iou_thresh=base.proposal_matcher.low_threshold,
                         batch_size_per_image=base.fg_bg_sampler.batch_size_per_image,
                         positive_fraction=base.fg_bg_sampler.positive_fraction, bbox_reg_weights=None,
                         score_thresh=base.score_thresh, nms_thresh=base.nms_thresh,
                         detections_per_img=base.detections_per_img)
        self.box_coder = box_coder
        self.box_loss = box_loss

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("targets are required in training mode")
        proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        feats = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(feats)
        return [], rcnn_losses(class_logits, box_regression, labels, regression_targets, self.box_loss)


def rcnn_losses(class_logits, box_regression, labels, regression_targets, box_loss: str) -> dict:
    """torchvision's `fastrcnn_loss` with the box loss chosen: cross-entropy, and the box loss of each positive
    RoI's own-class regression summed and divided by the number of sampled RoIs."""
    labels = torch.cat(labels, dim=0)
    regression_targets = torch.cat(regression_targets, dim=0)
    pos = torch.where(labels > 0)[0]
    n = class_logits.shape[0]
    box_regression = box_regression.reshape(n, box_regression.size(-1) // 4, 4)
    loss = _box_loss(box_loss, box_regression[pos, labels[pos]], regression_targets[pos]) / labels.numel()
    return {"loss_classifier": F.cross_entropy(class_logits, labels), "loss_box_reg": loss}
