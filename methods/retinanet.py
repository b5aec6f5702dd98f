"""RetinaNet (Lin et al., ICCV 2017) on noisy boxes, and its clean oracle: the one-stage rows of both papers' tables.

Built only through the public core (`methods.core.build_retinanet`), as a third-party adapter would be. Settings and
their sources: `methods._core.one_stage.ONE_STAGE_SOURCES` (focal alpha 0.25 / gamma 2, anchors 2^(0,1/3,2/3) x
4 x stride, IoU 0.5 / 0.4, lr 0.01 for batch 16 on the paper profile). The OA-MIL/SSD-Det papers do not release
their RetinaNet configs (OA-MIL issue #7); mmdet 2.x's retinanet_r50_fpn_1x is the documented default used here.

Published numbers (SSD-Det Tables 1-2, copying OA-MIL's): COCO val AP 30.0 / 13.3 at 20 / 40 % noise (clean 36.7);
VOC07 AP50 71.5 / 67.6 / 57.9 / 45.0 at 10-40 % (clean 73.5).
"""

from __future__ import annotations

from methods import register_method
from methods.base import MethodAdapter, Paper

PAPER = Paper("Focal Loss for Dense Object Detection", "ICCV", 2017, url="https://arxiv.org/abs/1708.02002",
              code="https://github.com/pytorch/vision")
# (dataset, metric, noise level) -> points; level 0 = the clean oracle
PUBLISHED = {
    ("coco", "AP", 0.0): 36.7, ("coco", "AP", 0.2): 30.0, ("coco", "AP", 0.4): 13.3,
    ("voc", "AP50", 0.0): 73.5, ("voc", "AP50", 0.1): 71.5, ("voc", "AP50", 0.2): 67.6, ("voc", "AP50", 0.3): 57.9,
    ("voc", "AP50", 0.4): 45.0,
}


@register_method
class RetinaNetAdapter(MethodAdapter):
    name = "retinanet"
    paper = PAPER
    description = "torchvision RetinaNet + FPN (one-stage) trained on the (noisy) boxes as given"
    detector = "one_stage"
    relative_cost = 1.6  # scheduling hint: benchmarks/step_cost.py measures its training step

    def default_config(self, profile: str, noise_level: float | None = None, dataset_kind: str = "coco") -> dict:
        from methods.core import one_stage_defaults

        return one_stage_defaults(profile)

    def profile_overrides(self, profile: str, noise_level: float | None = None, dataset_kind: str = "coco") -> dict:
        from methods.core import one_stage_profile_overrides

        return one_stage_profile_overrides(profile)

    def build_model(self, cfg: dict, num_classes: int):
        from methods.core import build_retinanet

        return build_retinanet(cfg["model"], num_classes, cfg.get("method", {}))


@register_method
class RetinaNetClean(RetinaNetAdapter):
    name = "retinanet_clean"
    description = "oracle: RetinaNet + FPN trained on the clean boxes (one-stage upper bound, not a method)"
    reads_clean_boxes = True
