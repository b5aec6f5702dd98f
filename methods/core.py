"""The public face of the shared detection core, for adapters inside and outside this repository.

Third-party adapters (see `bench new-method` and `examples/kl_loss`) import from here; `methods._core` may be
reorganised, this module's names stay.
"""

from methods._core.geometry import (
    box_iou,
    boxes_from_original,
    boxes_to_original,
    clip_boxes,
    paired_iou,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
from methods._core.model import build_faster_rcnn

__all__ = ["box_iou", "boxes_from_original", "boxes_to_original", "build_faster_rcnn", "clip_boxes", "paired_iou",
           "xywh_to_xyxy", "xyxy_to_xywh"]
