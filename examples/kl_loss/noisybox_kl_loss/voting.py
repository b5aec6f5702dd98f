"""Variance voting (paper §3.3, Algorithm 1): refine each box kept by NMS with its confident neighbours.

For a kept box b and every candidate b_i of the same class that overlaps it (IoU > 0, b itself included), each
coordinate is the weighted mean of the candidates' coordinates with weights
    p_i / sigma_i^2,   p_i = exp(-(1 - IoU(b_i, b))^2 / sigma_t),
so close and confident (low-variance) candidates dominate. Scores are not changed.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou


def variance_voting(boxes: torch.Tensor, labels: torch.Tensor, cand_boxes: torch.Tensor,
                    cand_log_var: torch.Tensor, cand_labels: torch.Tensor, sigma_t: float) -> torch.Tensor:
    """Refined copy of `boxes` (K x 4, xyxy). `cand_boxes` (C x 4) with per-coordinate log-variances
    `cand_log_var` (C x 4, in the boxes' units squared) and labels. A box with no overlapping candidate is
    returned unchanged. Weights are normalised in log space (a softmax), so tiny variances cannot overflow."""
    out = boxes.clone()
    if boxes.numel() == 0 or cand_boxes.numel() == 0:
        return out
    for label in labels.unique():
        rows = torch.where(labels == label)[0]
        cols = torch.where(cand_labels == label)[0]
        if cols.numel() == 0:
            continue
        iou = box_iou(boxes[rows].float(), cand_boxes[cols].float())  # K_c x C_c
        log_p = -(1.0 - iou) ** 2 / sigma_t
        logits = log_p[:, :, None] - cand_log_var[cols].float()[None]  # K_c x C_c x 4
        logits = logits.masked_fill(~(iou > 0)[:, :, None], float("-inf"))
        has = (iou > 0).any(dim=1)
        if not has.any():
            continue
        weights = torch.softmax(logits[has], dim=1)
        voted = (weights * cand_boxes[cols].float()[None]).sum(dim=1)
        out[rows[has]] = voted.to(out.dtype)
    return out
