"""Vanilla Faster R-CNN (FPN): trains on the noisy boxes exactly as given -- the baseline row of every table."""

from __future__ import annotations

from methods import register_method
from methods.base import MethodAdapter, Paper


@register_method
class FasterRCNN(MethodAdapter):
    name = "faster_rcnn"
    paper = Paper("Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks", "NeurIPS", 2015,
                  url="https://arxiv.org/abs/1506.01497", code="https://github.com/pytorch/vision")
    description = "torchvision Faster R-CNN + FPN trained on the (noisy) boxes as given"

    def build_model(self, cfg: dict, num_classes: int):
        from methods._core.model import build_faster_rcnn

        return build_faster_rcnn(cfg["model"], num_classes)
