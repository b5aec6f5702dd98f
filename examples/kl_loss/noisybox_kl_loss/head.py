"""The KL-Loss box head: torchvision's RoIHeads with a variance branch, corner deltas, KL loss and var voting.

Built on the suite's Faster R-CNN (`methods.core.build_faster_rcnn`): `attach_kl_head` keeps its RoI pooling, box
head, classifier and box regressor and RoI sampling settings, and only
- adds an FC layer predicting alpha = log(sigma^2) for every class-specific box coordinate,
- encodes boxes as corner deltas (paper §3.1): t_x1 = w_x1 (x1 - x1_a) / w_a, t_y1 = w_y1 (y1 - y1_a) / h_a, ...,
  so each of the four predicted Gaussians is about one box edge,
- replaces the smooth-L1 box loss with KL loss (paper §3.2, `loss.py`),
- at inference refines the NMS survivors by variance voting (paper §3.3, `voting.py`).

Variance semantics: alpha is the log-variance of a delta t. A delta maps to pixels by x1 = x1_a + t w_a / w_x1,
so the pixel variance is exp(alpha) (w_a / w_x1)^2; voting uses pixel variances, which makes candidates
decoded from proposals of different sizes comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

from noisybox_kl_loss.loss import kl_fastrcnn_loss
from noisybox_kl_loss.voting import variance_voting


class CornerBoxCoder:
    """Corner-delta encoding, with torchvision BoxCoder's list-based `encode` / `decode` calling convention."""

    def __init__(self, weights: Sequence[float] = (10.0, 10.0, 10.0, 10.0)):
        self.weights = tuple(float(w) for w in weights)

    def _scale(self, proposals: torch.Tensor) -> torch.Tensor:
        """Pixels per unit delta for each proposal and coordinate (N x 4): (w_a, h_a, w_a, h_a) / weights."""
        w = (proposals[:, 2] - proposals[:, 0]).clamp(min=1e-6)
        h = (proposals[:, 3] - proposals[:, 1]).clamp(min=1e-6)
        weights = torch.as_tensor(self.weights, dtype=proposals.dtype, device=proposals.device)
        return torch.stack([w, h, w, h], dim=1) / weights

    def encode_single(self, boxes: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        return (boxes - proposals) / self._scale(proposals)

    def encode(self, boxes: list[torch.Tensor], proposals: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        sizes = [len(p) for p in proposals]
        return self.encode_single(torch.cat(boxes), torch.cat(proposals)).split(sizes, 0)

    def decode(self, deltas: torch.Tensor, proposals: list[torch.Tensor]) -> torch.Tensor:
        """N x (K*4) deltas -> N x K x 4 boxes (one per class), like torchvision's BoxCoder.decode."""
        props = torch.cat(proposals).to(deltas.dtype)
        d = deltas.reshape(props.shape[0], -1, 4)
        return props[:, None, :] + d * self._scale(props)[:, None, :]

    def log_variance_in_pixels(self, log_var: torch.Tensor, proposals: list[torch.Tensor]) -> torch.Tensor:
        """N x (K*4) delta log-variances -> N x K x 4 log-variances in pixels^2: alpha + 2 log(scale)."""
        props = torch.cat(proposals).to(log_var.dtype)
        a = log_var.reshape(props.shape[0], -1, 4)
        return a + 2.0 * torch.log(self._scale(props))[:, None, :]


class KLPredictor(nn.Module):
    """Classifier + class-specific box deltas (the baseline predictor's layers) + class-specific log-variances."""

    def __init__(self, cls_score: nn.Linear, bbox_pred: nn.Linear, alpha_init_std: float,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.cls_score = cls_score
        self.bbox_pred = bbox_pred
        self.bbox_log_var = nn.Linear(bbox_pred.in_features, bbox_pred.out_features)
        with torch.no_grad():
            self.bbox_log_var.weight.normal_(0.0, alpha_init_std, generator=generator)
            self.bbox_log_var.bias.zero_()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x), self.bbox_log_var(x)


class KLRoIHeads(RoIHeads):
    """Box-only RoI heads (no masks / keypoints) trained with KL loss and decoded with variance voting."""

    def __init__(self, *args, smooth_l1_beta: float = 1.0, var_vote: bool = True, sigma_t: float = 0.02,
                 delta_weights: Sequence[float] = (10.0, 10.0, 10.0, 10.0), **kwargs):
        super().__init__(*args, **kwargs)
        self.box_coder = CornerBoxCoder(delta_weights)  # select_training_samples encodes targets with it
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.var_vote = bool(var_vote)
        self.sigma_t = float(sigma_t)

    def forward(self, features, proposals, image_shapes, targets=None):
        if self.training:
            proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        x = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, deltas, log_var = self.box_predictor(x)
        if self.training:
            loss_cls, loss_box = kl_fastrcnn_loss(class_logits, deltas, log_var, labels, regression_targets,
                                                  self.smooth_l1_beta)
            return [], {"loss_classifier": loss_cls, "loss_box_reg": loss_box}
        boxes, scores, labels = self.postprocess_with_variance(class_logits, deltas, log_var, proposals, image_shapes)
        return [{"boxes": b, "labels": lab, "scores": s} for b, s, lab in zip(boxes, scores, labels)], {}

    def postprocess_with_variance(self, class_logits, deltas, log_var, proposals, image_shapes):
        """torchvision's `postprocess_detections` (score threshold, tiny-box removal, per-class NMS, top-k),
        followed by variance voting of the kept boxes over all the candidates that entered NMS."""
        proposals = [p.float() for p in proposals]
        sizes = [len(p) for p in proposals]
        num_classes = class_logits.shape[-1]
        all_boxes = self.box_coder.decode(deltas.float(), proposals).split(sizes, 0)
        all_log_var = self.box_coder.log_variance_in_pixels(log_var.float(), proposals).split(sizes, 0)
        all_scores = F.softmax(class_logits.float(), -1).split(sizes, 0)
        out_boxes, out_scores, out_labels = [], [], []
        for boxes, lv, scores, shape in zip(all_boxes, all_log_var, all_scores, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            labels = torch.arange(num_classes, device=boxes.device).view(1, -1).expand_as(scores)
            boxes, lv = boxes[:, 1:].reshape(-1, 4), lv[:, 1:].reshape(-1, 4)  # drop background
            scores, labels = scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, lv, scores, labels = boxes[keep], lv[keep], scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, lv, scores, labels = boxes[keep], lv[keep], scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            kept = boxes[keep]
            if self.var_vote:
                kept = variance_voting(kept, labels[keep], boxes, lv, labels, self.sigma_t)
            out_boxes.append(kept)
            out_scores.append(scores[keep])
            out_labels.append(labels[keep])
        return out_boxes, out_scores, out_labels


def attach_kl_head(model: nn.Module, method_cfg: dict, generator: torch.Generator | None = None) -> nn.Module:
    """Swap a torchvision Faster R-CNN's RoI heads for `KLRoIHeads`, reusing all its modules and settings."""
    base = model.roi_heads
    if base.has_mask() or base.has_keypoint():
        raise ValueError("KL-Loss supports box-only Faster R-CNN (no mask / keypoint heads)")
    predictor = KLPredictor(base.box_predictor.cls_score, base.box_predictor.bbox_pred,
                            method_cfg["alpha_init_std"], generator)
    model.roi_heads = KLRoIHeads(
        base.box_roi_pool, base.box_head, predictor,
        fg_iou_thresh=base.proposal_matcher.high_threshold, bg_iou_thresh=base.proposal_matcher.low_threshold,
        batch_size_per_image=base.fg_bg_sampler.batch_size_per_image,
        positive_fraction=base.fg_bg_sampler.positive_fraction, bbox_reg_weights=None,
        score_thresh=base.score_thresh, nms_thresh=base.nms_thresh, detections_per_img=base.detections_per_img,
        smooth_l1_beta=method_cfg["smooth_l1_beta"], var_vote=method_cfg["var_vote"],
        sigma_t=method_cfg["sigma_t"], delta_weights=method_cfg["delta_weights"])
    return model


__all__ = ["CornerBoxCoder", "KLPredictor", "KLRoIHeads", "attach_kl_head"]
