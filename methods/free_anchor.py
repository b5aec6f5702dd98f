"""FreeAnchor (Zhang et al., NeurIPS 2019): learning to match anchors to objects, on the one-stage core.

Instead of RetinaNet's fixed IoU assignment, every object gets a bag of candidate anchors (the `pre_anchor_topk`
anchors of highest IoU with its box) and the detector learns which of them should answer for it:
- positive bag likelihood: per anchor j of object i, P_ij = P_cls (sigmoid score of the object's class) x P_loc
  (exp(-box loss) of the anchor's regression towards the box); the bag's probability is the *mean-max*
  sum_j w_j P_ij with w_j ~ 1 / (1 - P_ij) (close to the mean while all are unsure, to the max once one anchor is
  confident); loss alpha * -log(bag probability), summed over objects / number of objects.
- negative loss: every anchor's probability of being background for class c is reduced by P{a_j in A+}, a
  saturated linear function of the IoU between its *predicted* box and the objects of class c:
  clamp((IoU - bbox_thr) / (max_j IoU - bbox_thr), 0, 1); loss (1 - alpha) * FL(P_cls x (1 - P{a_j in A+})) with
  focal power gamma, summed / (number of objects x bag size).
Inference is RetinaNet's (top-k, NMS) with FreeAnchor's box coder.

| key | value | source |
|---|---|---|
| pre_anchor_topk | 50 | paper §4 ("bag size 50"); mmdet FreeAnchorRetinaHead default |
| bbox_thr | 0.6 | paper §3.3 (saturated linear threshold); mmdet head default |
| focal_gamma / focal_alpha | 2.0 / 0.5 | paper §4; mmdet head defaults (gamma, alpha) |
| box_stds | 0.1, 0.1, 0.2, 0.2 (DeltaXYWH) | mmdet configs/free_anchor/freeanchor_r50_fpn_1x_coco.py |
| smooth_l1_beta / box_loss_weight | 0.11 / 0.75 | same config (`loss_bbox`) |
| lr / grad_clip (paper profile) | 0.01 / 35 | same config (RetinaNet 1x base, `clip_grad max_norm=35`) |
The papers' noisy-box tables do not publish FreeAnchor settings (OA-MIL issue #7: no one-stage configs released);
the official mmdet config above is the documented default. Published numbers (SSD-Det Tables 1-2): COCO AP 28.6 /
10.4 at 20 / 40 % noise; VOC07 AP50 73.0 / 67.5 / 56.2 / 41.6 at 10-40 %.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmark.errors import BenchError
from methods import register_method
from methods.base import MethodAdapter, Paper

if TYPE_CHECKING:
    import torch

PUBLISHED = {
    ("coco", "AP", 0.2): 28.6, ("coco", "AP", 0.4): 10.4,
    ("voc", "AP50", 0.1): 73.0, ("voc", "AP50", 0.2): 67.5, ("voc", "AP50", 0.3): 56.2, ("voc", "AP50", 0.4): 41.6,
}
EPS = 1e-12


def saturated_linear(iou: torch.Tensor, thr: float) -> torch.Tensor:
    """P{a_j -> b_i} from IoU(b_i, predicted box of a_j), (objects, anchors): 0 below `thr`, 1 at the object's best
    IoU, linear between (paper Eq. 8's saturated linear function)."""
    top = iou.max(dim=1, keepdim=True).values.clamp(min=thr + EPS)
    return ((iou - thr) / (top - thr)).clamp(0.0, 1.0)


def mean_max(p: torch.Tensor) -> torch.Tensor:
    """Mean-max of each row of P (objects, bag): sum_j w_j p_j with w_j proportional to 1 / (1 - p_j)."""
    w = 1.0 / (1.0 - p).clamp(min=EPS)
    return (w / w.sum(dim=1, keepdim=True) * p).sum(dim=1)


def free_anchor_loss(cls_logits, bbox_pred, anchors, boxes, labels, box_coder, *, topk: int, bbox_thr: float,
                     alpha: float, gamma: float, beta: float, box_weight: float):
    """Positive-bag and negative losses of one batch, as (sum over objects, sum over anchors x classes, objects).

    Per image: `cls_logits` (A, K), `bbox_pred` (A, 4) deltas, `anchors` (A, 4), `boxes` (G, 4) xyxy, `labels`
    (G,) in 0..K-1. The caller normalises (objects and objects x bag size)."""
    import torch
    import torch.nn.functional as F
    from torchvision.ops import box_iou

    pos_sum, neg_sum, num_obj = cls_logits[0].float().sum() * 0.0, cls_logits[0].float().sum() * 0.0, 0
    for logits, deltas, anc, gt, lab in zip(cls_logits, bbox_pred, anchors, boxes, labels):
        # float32 throughout: under CUDA autocast the head's outputs are half precision
        logits, deltas, anc, gt = logits.float(), deltas.float(), anc.float(), gt.float()
        prob = torch.sigmoid(logits)
        with torch.no_grad():  # P{a_j in A+} per class: max over that class's objects
            box_prob = torch.zeros_like(prob)
            if len(gt):
                pred = box_coder.decode_single(deltas.detach(), anc)
                obj_prob = saturated_linear(box_iou(gt, pred), bbox_thr)
                index = lab[:, None].expand(-1, obj_prob.shape[1])
                box_prob = box_prob.t().scatter_reduce(0, index, obj_prob, "amax", include_self=True).t()
        neg = (prob * (1.0 - box_prob)).clamp(EPS, 1.0 - EPS)
        neg_sum = neg_sum + ((1.0 - alpha) * neg.pow(gamma) * -torch.log1p(-neg)).sum()
        if not len(gt):
            pos_sum = pos_sum + deltas.sum() * 0.0  # keep the regression branch in the graph
            continue
        k = min(topk, anc.shape[0])
        bag = box_iou(gt, anc).topk(k, dim=1).indices  # (G, k): the object's anchor bag
        cls_p = prob[bag, lab[:, None].expand(-1, k)]
        target = box_coder.encode_single(gt[:, None, :].expand(-1, k, -1).reshape(-1, 4), anc[bag].reshape(-1, 4))
        reg = F.smooth_l1_loss(deltas[bag].reshape(-1, 4), target, beta=beta, reduction="none").sum(-1)
        loc_p = torch.exp(-box_weight * reg).reshape(-1, k)
        bag_p = mean_max(cls_p * loc_p)
        pos_sum = pos_sum + (alpha * -torch.log(bag_p.clamp(min=EPS))).sum()  # BCE with target 1
        num_obj += len(gt)
    return pos_sum, neg_sum, num_obj


def _detector_class():
    from torchvision.models.detection._utils import BoxCoder

    from methods.core import OneStageDetector

    class FreeAnchorDetector(OneStageDetector):
        """RetinaNet whose training loss is FreeAnchor's (`free_anchor_loss`); inference decodes with its coder."""

        def configure(self, p: dict) -> None:
            self.fa = dict(p)
            self.box_coder = BoxCoder(tuple(1.0 / s for s in p["box_stds"]))

        def detection_loss(self, targets, head_outputs, anchors):
            pos, neg, n = free_anchor_loss(
                head_outputs["cls_logits"], head_outputs["bbox_regression"], anchors,
                [t["boxes"] for t in targets], [t["labels"] for t in targets], self.box_coder,
                topk=self.fa["pre_anchor_topk"], bbox_thr=self.fa["bbox_thr"], alpha=self.fa["focal_alpha"],
                gamma=self.fa["focal_gamma"], beta=self.fa["smooth_l1_beta"], box_weight=self.fa["box_loss_weight"])
            return {"positive_bag_loss": pos / max(1, n),
                    "negative_bag_loss": neg / max(1, n * self.fa["pre_anchor_topk"])}

    return FreeAnchorDetector


def check_config(m: dict) -> None:
    if not (isinstance(m["pre_anchor_topk"], int) and not isinstance(m["pre_anchor_topk"], bool)
            and m["pre_anchor_topk"] > 0):
        raise BenchError(f"method.pre_anchor_topk must be a positive integer, got {m['pre_anchor_topk']!r}")
    if not 0 <= m["bbox_thr"] < 1:
        raise BenchError(f"method.bbox_thr must be in [0, 1), got {m['bbox_thr']!r}")
    stds = m["box_stds"]
    if not (isinstance(stds, list) and len(stds) == 4 and all(isinstance(s, (int, float)) and s > 0 for s in stds)):
        raise BenchError(f"method.box_stds must be 4 positive numbers, got {stds!r}")
    for key in ("smooth_l1_beta", "box_loss_weight"):
        if not m[key] > 0:
            raise BenchError(f"method.{key} must be positive, got {m[key]!r}")


@register_method
class FreeAnchor(MethodAdapter):
    name = "free_anchor"
    paper = Paper("FreeAnchor: Learning to Match Anchors for Visual Object Detection", "NeurIPS", 2019,
                  url="https://arxiv.org/abs/1909.02466", code="https://github.com/zhangxiaosong18/FreeAnchor")
    description = ("RetinaNet learning its anchor-object matching: per-object anchor bags, mean-max positive bag "
                   "likelihood, saturated-linear negative loss")
    detector = "one_stage"
    relative_cost = 1.6  # scheduling hint: benchmarks/step_cost.py measures its training step

    def default_config(self, profile: str, noise_level: float | None = None, dataset_kind: str = "coco") -> dict:
        from methods.core import one_stage_defaults

        base = one_stage_defaults(profile)
        for unused in ("fg_iou_thresh", "bg_iou_thresh"):  # no IoU assigner: bags replace it
            base.pop(unused)
        return {**base, "focal_alpha": 0.5, "focal_gamma": 2.0, "pre_anchor_topk": 50, "bbox_thr": 0.6,
                "box_stds": [0.1, 0.1, 0.2, 0.2], "smooth_l1_beta": 0.11, "box_loss_weight": 0.75}

    def profile_overrides(self, profile: str, noise_level: float | None = None, dataset_kind: str = "coco") -> dict:
        return {"train": {"lr": 0.01, "grad_clip": 35.0}} if profile == "paper" else {}

    def build_model(self, cfg: dict, num_classes: int) -> torch.nn.Module:
        from methods.core import build_retinanet

        m = {**self.default_config(cfg["profile"]["name"]), **cfg.get("method", {})}
        check_config(m)
        model = build_retinanet(cfg["model"], num_classes, m, cls=_detector_class())
        model.configure(m)
        return model
