"""KL loss (paper §3.2): the regression loss of a Gaussian box prediction against a Dirac ground truth.

Per coordinate, with alpha = log(sigma^2) predicted next to the mean x_e:
    L = exp(-alpha) * smoothL1(x_g - x_e) + alpha / 2,
where smoothL1(d) = d^2 / 2 for |d| <= 1 and |d| - 1/2 otherwise (beta = 1). Large errors are absorbed by a large
predicted variance (the loss of an ambiguous -- or noisy -- box is down-weighted), at the price of alpha / 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_loss(pred: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Element-wise KL loss (same shape as `pred`); computed in float32 so exp(-alpha) cannot overflow in fp16."""
    pred, log_var, target = pred.float(), log_var.float(), target.float()
    return torch.exp(-log_var) * F.smooth_l1_loss(pred, target, beta=beta, reduction="none") + 0.5 * log_var


def kl_fastrcnn_loss(class_logits: torch.Tensor, box_deltas: torch.Tensor, box_log_var: torch.Tensor,
                     labels: list[torch.Tensor], regression_targets: list[torch.Tensor],
                     beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's `fastrcnn_loss` with KL loss in place of smooth L1: cross-entropy over all sampled RoIs, and
    the box term on the positive RoIs' own-class deltas, summed and divided by the number of sampled RoIs (the
    baseline's normalisation, so the two losses are on the same scale when alpha = 0)."""
    labels_all = torch.cat(labels, dim=0)
    targets = torch.cat(regression_targets, dim=0)
    classification = F.cross_entropy(class_logits, labels_all)
    pos = torch.where(labels_all > 0)[0]
    cls = labels_all[pos]
    n = class_logits.shape[0]
    deltas = box_deltas.reshape(n, -1, 4)[pos, cls]
    log_var = box_log_var.reshape(n, -1, 4)[pos, cls]
    box = kl_loss(deltas, log_var, targets[pos], beta).sum() / max(labels_all.numel(), 1)
    return classification, box
