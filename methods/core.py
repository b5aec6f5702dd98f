"""The public face of the shared detection cores, for adapters inside and outside this repository.

Third-party adapters (see `bench new-method` and `examples/kl_loss`) import from here; `methods._core` may be
reorganised, this module's names stay. Two cores: the two-stage Faster R-CNN (`build_faster_rcnn`) and the
one-stage RetinaNet (`build_retinanet`, `OneStageDetector`; a method on it sets `detector = "one_stage"` and starts
its `method` config from `one_stage_defaults(profile)`).
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
from methods._core.model import build_faster_rcnn, install_roi_heads
from methods._core.one_stage import (
    ONE_STAGE_SOURCES,
    OneStageDetector,
    build_retinanet,
    check_one_stage,
    one_stage_defaults,
    one_stage_profile_overrides,
)

__all__ = ["ONE_STAGE_SOURCES", "OneStageDetector", "box_iou", "boxes_from_original", "boxes_to_original",
           "build_faster_rcnn", "build_retinanet", "check_one_stage", "clip_boxes", "install_roi_heads", "one_stage_defaults",
           "one_stage_profile_overrides", "paired_iou", "xywh_to_xyxy", "xyxy_to_xywh"]
