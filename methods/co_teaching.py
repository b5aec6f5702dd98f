"""Co-teaching (Han et al., NeurIPS 2018) as the OA-MIL paper adapted it to detection, on the two-stage core.

Two Faster R-CNNs (different random initialisations of the same core) train together. In every iteration each
network scores every noisy annotation of the batch with its own box head -- the annotation box used as an RoI:
cross-entropy of its label + smooth-L1 of the class's regression towards the box itself (a box the network would
move, or does not recognise as its class, has a large loss); the R(t) fraction of annotations with the smallest
loss under network B are the boxes network A trains on in that iteration, and vice versa (cross update). The
fraction kept follows Co-teaching's schedule R(t) = 1 - min(t / T_k * tau, tau) (epochs t from 0). Inference uses
the first network.

| key | value | source |
|---|---|---|
| forget_rate (tau) | the noise level (0.2 when unknown) | Han et al. set tau to the (known) noise rate; the detection adaptation's tau is not published (paper leaves open) |
| tk_fraction (T_k) | 0.05 of training (T_k = 0.6 of 12 epochs) | Han et al.: T_k = 10 of 200 epochs; the detection value is not published (paper leaves open) |
| loss_beta | 1/9 | torchvision / Detectron Faster R-CNN box loss (smooth-L1 beta), so the score is the box head's own loss |
| selection unit | per mini-batch, over all its annotations | Han et al. Algorithm 1 (per mini-batch); paper leaves the detection unit open |

Deliberate choices where the adaptation is unpublished: an annotation not selected for a network is removed from
that network's targets for the iteration (its region may then be sampled as background, as in the original where
a dropped sample is simply not trained on); RPN and RoI head both train on the selected boxes. Published numbers
(SSD-Det Tables 1-2): COCO AP 30.5 / 11.5 at 20 / 40 %; VOC07 AP50 75.4 / 70.6 / 60.9 / 43.7 at 10-40 %.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmark.errors import BenchError
from methods import register_method
from methods.base import MethodAdapter, Paper

if TYPE_CHECKING:
    import torch

PUBLISHED = {
    ("coco", "AP", 0.2): 30.5, ("coco", "AP", 0.4): 11.5,
    ("voc", "AP50", 0.1): 75.4, ("voc", "AP50", 0.2): 70.6, ("voc", "AP50", 0.3): 60.9, ("voc", "AP50", 0.4): 43.7,
}


def remember_rate(epoch: int, num_epochs: int, forget_rate: float, tk_fraction: float) -> float:
    """R(t) = 1 - min(t / T_k * tau, tau), t the 0-based epoch and T_k = tk_fraction x num_epochs."""
    tk = max(tk_fraction * num_epochs, 1e-9)
    return 1.0 - min(epoch / tk * forget_rate, forget_rate)


def small_loss(losses: torch.Tensor, rate: float) -> torch.Tensor:
    """Boolean mask of the int(rate x N) smallest losses (at least one when there is any); ties by position."""
    import torch

    n = losses.numel()
    keep = torch.zeros(n, dtype=torch.bool, device=losses.device)
    if n:
        k = min(n, max(1, int(rate * n + 1e-9)))
        keep[torch.sort(losses, stable=True).indices[:k]] = True
    return keep


def cross_select(loss_a: torch.Tensor, loss_b: torch.Tensor, rate: float):
    """(annotations network A trains on, those B trains on): each the peer's small-loss set."""
    return small_loss(loss_b, rate), small_loss(loss_a, rate)


def _build(cfg: dict, num_classes: int, params: dict):
    import torch
    import torch.nn.functional as F
    from torch import nn

    from methods.core import build_faster_rcnn

    class CoTeaching(nn.Module):
        """Two Faster R-CNNs sharing nothing but the data; `a` predicts."""

        def __init__(self):
            super().__init__()
            self.a = build_faster_rcnn(cfg["model"], num_classes)
            self.b = build_faster_rcnn(cfg["model"], num_classes)
            self.p = params
            self.rate = 1.0
            self.kept = [0, 0]  # annotations kept / seen in the current epoch, for diagnostics

        def set_epoch(self, epoch: int, num_epochs: int) -> None:
            self.rate = remember_rate(epoch, num_epochs, self.p["forget_rate"], self.p["tk_fraction"])
            self.kept = [0, 0]

        def diagnostics(self) -> dict:
            return {"remember_rate": self.rate, "kept_fraction": self.kept[0] / max(1, self.kept[1])}

        @torch.no_grad()
        def annotation_loss(self, net, features, image_sizes, targets) -> torch.Tensor:
            """The box head's loss of every annotation box used as an RoI (CE + smooth-L1 to itself)."""
            boxes = [t["boxes"] for t in targets]
            if sum(len(b) for b in boxes) == 0:
                return torch.zeros(0, device=boxes[0].device)
            head = net.roi_heads
            x = head.box_head(head.box_roi_pool(features, boxes, image_sizes))
            logits, deltas = head.box_predictor(x)
            labels = torch.cat([t["labels"] for t in targets])
            ce = F.cross_entropy(logits.float(), labels, reduction="none")
            own = deltas.float().reshape(len(labels), -1, 4)[torch.arange(len(labels)), labels]
            reg = F.smooth_l1_loss(own, torch.zeros_like(own), beta=self.p["loss_beta"], reduction="none").sum(1)
            return ce + reg

        def forward(self, images, targets=None):
            if not self.training:
                return self.a(images)
            nets = (self.a, self.b)
            prepared = []
            for net in nets:
                ims, tgts = net.transform(images, targets)
                feats = net.backbone(ims.tensors)
                detached = {k: v.detach() for k, v in feats.items()}
                prepared.append((ims, tgts, feats, self.annotation_loss(net, detached, ims.image_sizes, tgts)))
            keep_a, keep_b = cross_select(prepared[0][3], prepared[1][3], self.rate)
            self.kept[0] += int(keep_a.sum() + keep_b.sum())
            self.kept[1] += 2 * keep_a.numel()
            losses = {}
            for tag, net, (ims, tgts, feats, _), keep in zip("ab", nets, prepared, (keep_a, keep_b)):
                sizes = [len(t["boxes"]) for t in tgts]
                chosen = [{**t, "boxes": t["boxes"][k], "labels": t["labels"][k]}
                          for t, k in zip(tgts, keep.split(sizes))]
                proposals, rpn_losses = net.rpn(ims, feats, chosen)
                _, det_losses = net.roi_heads(feats, proposals, ims.image_sizes, chosen)
                losses.update({f"{tag}_{k}": v for k, v in {**det_losses, **rpn_losses}.items()})
            return losses

    return CoTeaching()


@register_method
class CoTeachingAdapter(MethodAdapter):
    name = "co_teaching"
    paper = Paper("Co-teaching: Robust Training of Deep Neural Networks with Extremely Noisy Labels", "NeurIPS",
                  2018, url="https://arxiv.org/abs/1804.06872", code="https://github.com/bhanML/Co-teaching")
    description = ("two Faster R-CNNs; each trains on the annotations its peer finds small-loss (box-head loss of "
                   "the annotation as an RoI), forget rate ramped up as in Co-teaching")
    relative_cost = 2.2

    def default_config(self, profile: str, noise_level: float | None = None, dataset_kind: str = "coco") -> dict:
        if noise_level is None:
            tau, source = 0.2, "default 0.2: the noise level is unknown"
        else:
            tau = round(min(max(float(noise_level), 0.0), 0.9), 4)
            source = ("default: the noise level (Han et al. set tau to the noise rate); the detection value is "
                      "unpublished")
        return {"forget_rate": tau, "forget_rate_source": source,
                "tk_fraction": 0.05, "loss_beta": 1.0 / 9}

    def build_model(self, cfg: dict, num_classes: int) -> torch.nn.Module:
        p = {**self.default_config(cfg["profile"]["name"], cfg["profile"].get("noise_level")), **cfg.get("method", {})}
        if not 0 <= p["forget_rate"] < 1:
            raise BenchError(f"method.forget_rate must be in [0, 1), got {p['forget_rate']!r}")
        if not p["tk_fraction"] > 0 or not p["loss_beta"] > 0:
            raise BenchError("method.tk_fraction and method.loss_beta must be positive")
        return _build(cfg, num_classes, p)


