"""The clean oracle: the same Faster R-CNN trained on the clean boxes (`true_bbox`) -- every table's upper bound.

It is the only adapter allowed to read the clean boxes (`reads_clean_boxes = True`): `training_view` swaps
`true_bbox` into `bbox` and drops boxes the noise invented."""

from __future__ import annotations

from methods import register_method
from methods.base import MethodAdapter


@register_method
class CleanOracle(MethodAdapter):
    name = "clean"
    description = "oracle: Faster R-CNN + FPN trained on the clean boxes (upper bound, not a method)"
    reads_clean_boxes = True

    def build_model(self, cfg: dict, num_classes: int):
        from methods._core.model import build_faster_rcnn

        return build_faster_rcnn(cfg["model"], num_classes)
