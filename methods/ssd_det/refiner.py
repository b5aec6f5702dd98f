"""SSD-Det's box refiner (private to `methods/ssd_det/__init__.py`): bags of proposals around each noisy box, two MIL stages,
the two SPSD regressors, adaptive negatives and the SISD IoU head (docs/methods.md, "SSD-Det step by step", steps 1-7).

Every object of the batch is handled at once: a bag is a padded `[num_objects, bag_size, 4]` tensor with a
`[num_objects, bag_size]` validity mask, each stage pools all bags of the batch (plus that stage's negatives) with
ONE `MultiScaleRoIAlign` call, softmax-over-bag is a masked softmax along dim 1 and the pseudo box is a top-k
weighted fusion with `topk`/`gather`. The only Python loops run over images (splitting RoIs per image for the
pooler, negatives filtering), never over objects.

The pure functions are the mechanism the tests pin; `SSDRefiner` wires them to the FPN features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign, box_iou

BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # DeltaXYWH with stds 0.1/0.1/0.2/0.2, as in the reference
SHIFTS = ((0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))  # unshifted + 4 shifted copies per shape
EPS = 1e-6


# ---- bags --------------------------------------------------------------------------------------------------
def neighbourhood_proposals(boxes: Tensor, ratios: list[float], shake: float) -> Tensor:
    """Neighbourhood sampler: `[N, 4]` xyxy -> `[N, len(ratios)**2 * 5, 4]`.

    Width and height are scaled independently by every ratio (R*R shapes); each shape also gets 4 copies whose
    centre moves by +-shake x its own width (horizontally) or +-shake x its own height (vertically).
    Index 0 is the box itself when `ratios[0] == 1`."""
    r = torch.as_tensor(ratios, dtype=boxes.dtype, device=boxes.device)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    n, k = boxes.shape[0], r.numel()
    pw = (w[:, None, None] * r[None, :, None]).expand(n, k, k).reshape(n, k * k, 1)
    ph = (h[:, None, None] * r[None, None, :]).expand(n, k, k).reshape(n, k * k, 1)
    s = torch.as_tensor(SHIFTS, dtype=boxes.dtype, device=boxes.device) * shake  # [5, 2]
    pcx = cx[:, None, None] + pw * s[None, None, :, 0]  # [N, k*k, 5]
    pcy = cy[:, None, None] + ph * s[None, None, :, 1]
    pw, ph = pw.expand_as(pcx), ph.expand_as(pcy)
    out = torch.stack([pcx - pw / 2, pcy - ph / 2, pcx + pw / 2, pcy + ph / 2], dim=-1)
    return out.reshape(n, -1, 4)


def inside_fraction(bags: Tensor, image_hw: Tensor) -> Tensor:
    """Fraction of each proposal's own area inside its image; `bags` `[N, B, 4]`, `image_hw` `[N, 2]` (h, w)."""
    h, w = image_hw[:, 0, None], image_hw[:, 1, None]
    iw = (torch.minimum(bags[..., 2], w) - bags[..., 0].clamp(min=0)).clamp(min=0)
    ih = (torch.minimum(bags[..., 3], h) - bags[..., 1].clamp(min=0)).clamp(min=0)
    area = ((bags[..., 2] - bags[..., 0]) * (bags[..., 3] - bags[..., 1])).clamp(min=EPS)
    return iw * ih / area


def validity_mask(bags: Tensor, image_hw: Tensor, min_inside: float) -> Tensor:
    """`[N, B]` bool: a proposal is valid if more than `min_inside` of its area lies in the image. A bag with no
    valid proposal (cannot happen for boxes inside the image) is made all-valid, so its softmax stays defined."""
    valid = inside_fraction(bags, image_hw) > min_inside
    return valid | ~valid.any(dim=1, keepdim=True)


def clip_to_image(boxes: Tensor, image_hw: Tensor) -> Tensor:
    """Clamp `[N, ..., 4]` boxes to their image; `image_hw` `[N, 2]`."""
    shape = (image_hw.shape[0],) + (1,) * (boxes.dim() - 2)
    w, h = image_hw[:, 1].reshape(shape), image_hw[:, 0].reshape(shape)
    zero = torch.zeros_like(w)
    return torch.stack([torch.minimum(torch.maximum(boxes[..., 0], zero), w),
                        torch.minimum(torch.maximum(boxes[..., 1], zero), h),
                        torch.minimum(torch.maximum(boxes[..., 2], zero), w),
                        torch.minimum(torch.maximum(boxes[..., 3], zero), h)], dim=-1)


def ensure_min_size(boxes: Tensor, image_hw: Tensor, min_size: float = 1.0) -> Tensor:
    """Grow boxes thinner than `min_size` around their centre (inside the image): the detector's box coder
    takes log(w), so a collapsed pseudo box would poison its loss."""
    c = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = ((boxes[..., 2:] - boxes[..., :2]).clamp(min=min_size)) / 2
    hi = image_hw.flip(-1).to(boxes.dtype)  # (w, h)
    shape = (hi.shape[0],) + (1,) * (boxes.dim() - 2) + (2,)
    hi = hi.reshape(shape)
    c = torch.minimum(torch.maximum(c, half), hi - half)
    return torch.cat([c - half, c + half], dim=-1)


def masked_bag_softmax(logits: Tensor, valid: Tensor) -> Tensor:
    """Softmax over the proposals of each bag (dim 1) of `[N, B, C]` logits; invalid proposals get 0."""
    return logits.float().masked_fill(~valid[..., None], float("-inf")).softmax(dim=1)


def topk_fusion(bags: Tensor, scores: Tensor, k: int) -> Tensor:
    """Pseudo box = mean of the top-k proposals of each bag (by `scores`, `[N, B]`) weighted by their normalised
    scores; bags whose top-k scores are all zero fall back to the plain mean of those k."""
    k = min(int(k), bags.shape[1])
    top, idx = scores.detach().float().topk(k, dim=1)
    picked = bags.gather(1, idx[..., None].expand(-1, -1, 4))
    total = top.sum(dim=1, keepdim=True)
    weights = torch.where(total > EPS, top / total.clamp(min=EPS), torch.full_like(top, 1.0 / k))
    return (picked * weights[..., None]).sum(dim=1)


def minmax_per_bag(values: Tensor, valid: Tensor) -> Tensor:
    """Min-max normalise `[N, B]` values within each bag over its valid proposals; invalid ones -> 0."""
    lo = values.masked_fill(~valid, float("inf")).min(dim=1, keepdim=True).values
    hi = values.masked_fill(~valid, float("-inf")).max(dim=1, keepdim=True).values
    out = (values - lo) / (hi - lo).clamp(min=EPS)
    return out.masked_fill(~valid, 0.0)


def normalise_iou_target(iou: Tensor) -> Tensor:
    """SISD target: IoU in [0, 1] -> (T - 0.5) / 0.5 in [-1, 1]."""
    return (iou - 0.5) / 0.5


def denormalise_iou(u: Tensor) -> Tensor:
    return u * 0.5 + 0.5


def object_relation_enhance(feats: Tensor, valid: Tensor) -> Tensor:
    """ORE: add the bag-mean feature (over valid proposals) to every proposal feature of `[N, B, D]`."""
    m = valid[..., None].to(feats.dtype)
    mean = (feats * m).sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True).clamp(min=1.0)
    return feats + mean


def paired_bag_iou(bags: Tensor, boxes: Tensor) -> Tensor:
    """IoU of every proposal of bag n (`[N, B, 4]`) with box n (`[N, 4]`) -> `[N, B]`."""
    b = boxes[:, None, :]
    lt = torch.maximum(bags[..., :2], b[..., :2])
    rb = torch.minimum(bags[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area_a = (bags[..., 2:] - bags[..., :2]).clamp(min=0).prod(dim=-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(dim=-1)
    return inter / (area_a + area_b - inter).clamp(min=EPS)


# ---- negatives ---------------------------------------------------------------------------------------------
def random_negatives(image_sizes: list[tuple[int, int]], per_image: int, generator: torch.Generator,
                     device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """`per_image` random boxes per image: corners uniform over [-0.2 W, W] x [-0.2 H, H] (a region 1.2x the image),
    clipped to the image; boxes thinner than 1 px are dropped. Returns (boxes `[M, 4]`, image index `[M]`)."""
    n = len(image_sizes)
    if n == 0 or per_image <= 0:
        return torch.zeros(0, 4, device=device), torch.zeros(0, dtype=torch.long, device=device)
    hw = torch.as_tensor(image_sizes, dtype=torch.float32).reshape(n, 1, 2)
    u = torch.rand(n, per_image, 4, generator=generator)
    x = (-0.2 + 1.2 * u[..., 0:2]) * hw[..., 1:2]
    y = (-0.2 + 1.2 * u[..., 2:4]) * hw[..., 0:1]
    x, _ = x.sort(dim=-1)
    y, _ = y.sort(dim=-1)
    w, h = hw[..., 1].expand(n, per_image), hw[..., 0].expand(n, per_image)
    boxes = torch.stack([x[..., 0].clamp(min=0), y[..., 0].clamp(min=0),
                         torch.minimum(x[..., 1], w), torch.minimum(y[..., 1], h)], dim=-1)
    keep = ((boxes[..., 2] - boxes[..., 0]) >= 1) & ((boxes[..., 3] - boxes[..., 1]) >= 1)
    img = torch.arange(n).reshape(n, 1).expand(n, per_image)
    return boxes[keep].to(device), img[keep].to(device)


def filter_negatives(neg: Tensor, neg_img: Tensor, pos: Tensor, pos_img: Tensor, max_iou: float) -> Tensor:
    """Keep-mask of negatives whose IoU with every positive proposal *of the same image* is below `max_iou`."""
    keep = torch.ones(neg.shape[0], dtype=torch.bool, device=neg.device)
    if neg.numel() == 0 or pos.numel() == 0:
        return keep
    for i in torch.unique(neg_img).tolist():  # per image, not per object
        ni, pi = neg_img == i, pos_img == i
        if pi.any():
            keep[ni] = box_iou(neg[ni], pos[pi]).max(dim=1).values < max_iou
    return keep


# ---- losses ------------------------------------------------------------------------------------------------
def spsd_l1_loss(deltas: Tensor, targets: Tensor, weight: Tensor | None = None) -> Tensor:
    """SPSD regression loss on `[N, B, 4]` codes: L1 summed over the 4 codes of a proposal, averaged over all
    N*B proposals (the reference's mmdet `L1Loss` with avg_factor = number of proposals), each object's
    proposals optionally weighted by `weight` `[N]`."""
    per_proposal = (deltas.float() - targets.float()).abs().sum(dim=-1)
    if weight is not None:
        per_proposal = per_proposal * weight[:, None]
    return per_proposal.mean()


def mil_bce_loss(bag_score: Tensor, onehot: Tensor) -> Tensor:
    """Stage-I bag loss: BCE of bag scores `[N, K]` vs one-hot labels, summed over classes, mean over objects."""
    p = bag_score.float().clamp(EPS, 1 - EPS)
    return F.binary_cross_entropy(p, onehot, reduction="none").sum(dim=1).mean()


def quality_focal(p: Tensor, q: Tensor) -> Tensor:
    """Element-wise |p - q|^2 * BCE(p, q) (the focal-style bag loss of stage II)."""
    p = p.float().clamp(EPS, 1 - EPS)
    return (p - q).abs().pow(2) * F.binary_cross_entropy(p, q, reduction="none")


# ---- the module ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefinerSettings:
    num_classes: int
    base_ratios: tuple[float, ...] = (1.0, 1.2, 1.3, 0.8, 0.7)
    shake: float = 0.2
    min_inside: float = 0.7
    topk: int = 7
    refiner_stages: int = 2
    spsd1_steps: int = 1
    spsd2: bool = True
    spsd2_weighted: bool = True
    num_negatives: int = 500
    neg_max_iou: float = 0.3
    neg_weight: float = 0.75
    sisd: bool = True
    sisd_ore: bool = True
    sisd_score: str = "cls"
    loss_mil1: float = 0.25
    loss_spsd: float = 0.25
    loss_mil2: float = 0.25
    loss_sisd: float = 0.25


@dataclass
class RefinerOutput:
    losses: dict[str, Tensor]
    pseudo_boxes: Tensor  # [N, 4] model frame, detached
    bags: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)  # name -> (boxes [N,B,4], valid [N,B])
    stage1_boxes: Tensor | None = None


def _init_linear(layer: nn.Linear, std: float) -> nn.Linear:
    nn.init.normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)
    return layer


class SSDRefiner(nn.Module):
    """Two-stage MIL refiner with SPSD and SISD on the FPN features (training only).

    Parts that an ablation switches off are not built at all, so their parameters and losses are absent."""

    def __init__(self, settings: RefinerSettings, pooler: MultiScaleRoIAlign, in_channels: int, fc_dim: int):
        super().__init__()
        s = self.settings = settings
        if s.refiner_stages not in (1, 2):
            raise ValueError(f"refiner_stages must be 1 or 2, got {s.refiner_stages}")
        if s.refiner_stages == 1 and (s.spsd2 or s.sisd):
            raise ValueError("spsd2 and sisd need the second refiner stage (refiner_stages=2)")
        if s.sisd_score not in ("cls", "mil"):
            raise ValueError(f"sisd_score must be 'cls' or 'mil', got {s.sisd_score!r}")
        self.pooler = pooler
        res = pooler.output_size
        in_features = in_channels * res[0] * res[1]
        k = s.num_classes
        self.shared_fcs = TwoMLPHead(in_features, fc_dim)
        self.spsd1 = nn.ModuleList(_init_linear(nn.Linear(fc_dim, 4), 0.001) for _ in range(s.spsd1_steps))
        self.cls1 = _init_linear(nn.Linear(fc_dim, k + 1), 0.01)  # softmax over classes (+ background)
        self.ins1 = _init_linear(nn.Linear(fc_dim, k + 1), 0.01)  # softmax over the bag
        if s.refiner_stages == 2:
            self.spsd2_reg = _init_linear(nn.Linear(fc_dim, 4), 0.001) if s.spsd2 else None
            self.cls2 = _init_linear(nn.Linear(fc_dim, k), 0.01)  # sigmoid
            self.ins2 = _init_linear(nn.Linear(fc_dim, k), 0.01)  # softmax over the bag
        if s.sisd:
            self.sisd_fcs = TwoMLPHead(in_features, fc_dim)  # its own FCs: sharing the refiner's hurts (Table 5)
            self.sisd_iou = _init_linear(nn.Linear(fc_dim, 1), 0.01)
        self.box_coder = BoxCoder(BOX_CODER_WEIGHTS)

    # -- helpers ------------------------------------------------------------------------------------------
    def _pool(self, features: dict[str, Tensor], rois: Tensor, rois_img: Tensor,
              image_sizes) -> tuple[Tensor, Tensor | None]:
        """One RoIAlign call for all RoIs of the batch (the pooler takes one list entry per image). Returns
        (pooled in image order, the permutation applied, or None when the RoIs already came in image order)."""
        counts = torch.bincount(rois_img, minlength=len(image_sizes)).tolist()
        order = None
        if rois_img.numel() > 1 and bool((rois_img[1:] < rois_img[:-1]).any()):
            order = torch.argsort(rois_img, stable=True)
            rois = rois[order]
        return self.pooler(features, list(rois.split(counts)), image_sizes), order

    def _bag_features(self, head: nn.Module, features, bags: Tensor, obj_img: Tensor, image_sizes,
                      extra: Tensor | None = None, extra_img: Tensor | None = None):
        """Pool bags `[N, B, 4]` (+ optional extra RoIs, e.g. negatives) in one call and run `head` on them.
        Returns (bag features [N, B, D], pooled bag RoIs [N*B, C, r, r], head output of the extras)."""
        n, b = bags.shape[:2]
        rois = bags.reshape(-1, 4)
        rois_img = obj_img.repeat_interleave(b)
        if extra is not None and extra.numel():
            rois = torch.cat([rois, extra])
            rois_img = torch.cat([rois_img, extra_img])
        pooled, order = self._pool(features, rois.detach(), rois_img, image_sizes)
        feats = head(pooled)
        if order is not None:  # back to [bags..., extras...] order
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(order.numel(), device=order.device)
            feats, pooled = feats[inverse], pooled[inverse[: n * b]]
        return feats[: n * b].reshape(n, b, -1), pooled[: n * b], feats[n * b:]

    def _decode(self, deltas: Tensor, bags: Tensor) -> Tensor:
        return self.box_coder.decode_single(deltas.detach().reshape(-1, 4), bags.reshape(-1, 4)).reshape(bags.shape)

    def _encode(self, targets: Tensor, bags: Tensor) -> Tensor:
        t = targets[:, None, :].expand_as(bags).reshape(-1, 4)
        return self.box_coder.encode_single(t, bags.reshape(-1, 4)).reshape(bags.shape)

    # -- forward --------------------------------------------------------------------------------------------
    def forward(self, features: dict[str, Tensor], image_sizes: list[tuple[int, int]], boxes: Tensor, labels: Tensor,
                obj_img: Tensor, generator: torch.Generator | None = None, with_losses: bool = True) -> RefinerOutput:
        """`boxes` `[N, 4]` noisy boxes (model frame), `labels` `[N]` in 1..K, `obj_img` `[N]` image index.

        `with_losses=False` (the final refinement pass over the training set) skips the negatives and returns no
        losses; the pseudo boxes are computed exactly as in training."""
        s = self.settings
        dev = boxes.device
        n = boxes.shape[0]
        losses: dict[str, Tensor] = {}
        if n == 0:
            return RefinerOutput(self._zero_losses(), boxes.detach().clone())
        hw = torch.as_tensor(image_sizes, dtype=torch.float32, device=dev)[obj_img]
        onehot = F.one_hot(labels - 1, s.num_classes).float()
        gt = (labels - 1)[:, None]
        bags: dict[str, tuple[Tensor, Tensor]] = {}

        # 1. neighbourhood sampler
        bag = neighbourhood_proposals(boxes, list(s.base_ratios), s.shake)
        valid = validity_mask(bag, hw, s.min_inside)
        bag = clip_to_image(bag, hw)
        bags["sampler"] = (bag, valid)

        # 2. SPSD-I: regress every proposal onto the noisy box; the outputs become the stage-I bag
        for i, layer in enumerate(self.spsd1):
            feats, _, _ = self._bag_features(self.shared_fcs, features, bag, obj_img, image_sizes)
            deltas = layer(feats).float()
            loss = spsd_l1_loss(deltas, self._encode(boxes, bag))
            losses["loss_spsd1" if i == 0 else f"loss_spsd1_{i + 1}"] = s.loss_spsd * loss
            decoded = self._decode(deltas, bag)
            valid = validity_mask(decoded, hw, s.min_inside)
            bag = clip_to_image(decoded, hw)
        bags["stage1"] = (bag, valid)

        # 3. stage-I MIL: softmax class x softmax-over-bag instance score
        feats1, _, _ = self._bag_features(self.shared_fcs, features, bag, obj_img, image_sizes)
        cls1 = self.cls1(feats1).float().softmax(dim=-1)
        ins1 = masked_bag_softmax(self.ins1(feats1), valid)
        score1 = cls1 * ins1  # [N, B, K+1]
        bag_score1 = score1.sum(dim=1)[:, 1:]  # foreground classes
        losses["loss_mil1"] = s.loss_mil1 * mil_bce_loss(bag_score1, onehot)
        s1_gt = score1[..., 1:].gather(2, gt[:, None, :].expand(-1, score1.shape[1], 1)).squeeze(2)
        stage1_box = clip_to_image(topk_fusion(bag, s1_gt, s.topk), hw).detach()
        w1 = bag_score1.detach().gather(1, gt).squeeze(1)  # stage-I bag score of the GT class, [N]
        if s.refiner_stages == 1:
            return RefinerOutput(losses if with_losses else {}, ensure_min_size(stage1_box, hw), bags, stage1_box)

        # 4. SPSD-II: regress the stage-I bag onto the stage-I box, weighted by the stage-I bag score
        if self.spsd2_reg is not None:
            deltas = self.spsd2_reg(feats1).float()
            weight = w1 if s.spsd2_weighted else torch.ones_like(w1)
            losses["loss_spsd2"] = s.loss_spsd * spsd_l1_loss(deltas, self._encode(stage1_box, bag), weight)
            bag2 = clip_to_image(self._decode(deltas, bag), hw)
            valid2 = torch.ones_like(valid)
        else:  # basic two-stage refiner: a fresh neighbourhood around the stage-I box
            bag2 = neighbourhood_proposals(stage1_box, list(s.base_ratios), s.shake)
            valid2 = validity_mask(bag2, hw, s.min_inside)
            bag2 = clip_to_image(bag2, hw)
        bags["stage2"] = (bag2, valid2)

        # 5. adaptive negatives: random boxes with IoU < neg_max_iou to every stage-II proposal of their image
        num_neg = s.num_negatives if with_losses else 0
        neg, neg_img = random_negatives(image_sizes, num_neg, generator or torch.Generator(), dev)
        pos_flat = bag2[valid2]
        pos_img = obj_img[:, None].expand_as(valid2)[valid2]
        keep = filter_negatives(neg, neg_img, pos_flat, pos_img, s.neg_max_iou)
        neg, neg_img = neg[keep], neg_img[keep]

        # 6. stage-II MIL (+ negatives), one pooling call
        feats2, pooled2, neg_feats = self._bag_features(self.shared_fcs, features, bag2, obj_img, image_sizes,
                                                        neg, neg_img)
        cls2 = self.cls2(feats2).float().sigmoid()
        ins2 = masked_bag_softmax(self.ins2(feats2), valid2)
        score2 = cls2 * ins2
        bag_score2 = score2.sum(dim=1)
        pos_loss = (w1 * quality_focal(bag_score2, onehot).sum(dim=1)).sum() / n
        losses["loss_mil2"] = s.loss_mil2 * pos_loss
        if neg.numel():
            neg_p = self.cls2(neg_feats).float().sigmoid()
            neg_loss = quality_focal(neg_p, torch.zeros_like(neg_p)).sum() / n
            # weight 0.75 x mean stage-I bag score only: the reference does not also scale it by loss_mil2
            losses["loss_mil2_neg"] = s.neg_weight * w1.mean() * neg_loss
        else:
            losses["loss_mil2_neg"] = cls2.sum() * 0.0
        cls2_gt = cls2.gather(2, gt[:, None, :].expand(-1, cls2.shape[1], 1)).squeeze(2)
        s2_gt = score2.gather(2, gt[:, None, :].expand(-1, score2.shape[1], 1)).squeeze(2)

        # 7. SISD: own FCs, ORE, IoU-with-stage-I-box regression; ranks the stage-II bag
        rank = s2_gt
        if s.sisd:
            f = self.sisd_fcs(pooled2).reshape(n, bag2.shape[1], -1)
            if s.sisd_ore:
                f = object_relation_enhance(f, valid2)
            u = self.sisd_iou(f).float().squeeze(-1)  # [N, B]
            target = normalise_iou_target(paired_bag_iou(bag2, stage1_box))
            err = F.smooth_l1_loss(u, target, reduction="none", beta=1.0)
            losses["loss_sisd"] = s.loss_sisd * err[valid2].mean()
            u_norm = minmax_per_bag(denormalise_iou(u.detach()), valid2)
            rank = u_norm * (cls2_gt if s.sisd_score == "cls" else s2_gt)
        rank = rank.masked_fill(~valid2, 0.0)
        pseudo = ensure_min_size(clip_to_image(topk_fusion(bag2, rank, s.topk), hw), hw).detach()
        return RefinerOutput(losses if with_losses else {}, pseudo, bags, stage1_box)

    def _zero_losses(self) -> dict[str, Tensor]:
        """A batch without objects: zero losses still connected to the graph (DDP needs every parameter used)."""
        zero = sum(p.sum() for p in self.parameters()) * 0.0
        return {"loss_mil1": zero}
