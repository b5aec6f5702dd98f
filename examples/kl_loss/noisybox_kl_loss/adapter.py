"""KL-Loss (He et al., CVPR 2019): bounding-box regression with uncertainty, as a noisybox-bench plug-in.

The box head predicts, next to each class-specific box coordinate, its log-variance alpha = log(sigma^2); it is
trained with KL loss (the Gaussian negative log-likelihood in smooth-L1 form), so boxes the head cannot fit --
ambiguous or, here, noisy ones -- are absorbed by a larger variance instead of pulling the regressor. At inference
variance voting moves each NMS survivor towards its overlapping, confident neighbours. Everything else (backbone,
RPN, schedule, data) is the suite's Faster R-CNN, so the row differs from the baseline by the method only.

Published numbers (Faster R-CNN R50-FPN + KL loss, as re-run in the OA-MIL / SSD-Det tables; the leaderboard
holds these rows): COCO val2017 AP 31.0 (20 % box noise) / 12.1 (40 %); VOC07 test AP50 75.8 / 72.7 / 64.6 /
48.6 at 10 / 20 / 30 / 40 %. See `PUBLISHED`.
"""

from __future__ import annotations

import copy

from benchmark.errors import BenchError
from methods import MethodAdapter, Paper
from noisybox_kl_loss.config import DEFAULTS

# (dataset, metric, noise level) -> points, from SSD-Det Table 1 (COCO) and Table 2 (VOC).
PUBLISHED = {
    ("coco", "AP", 0.2): 31.0, ("coco", "AP", 0.4): 12.1,
    ("voc", "AP50", 0.1): 75.8, ("voc", "AP50", 0.2): 72.7, ("voc", "AP50", 0.3): 64.6, ("voc", "AP50", 0.4): 48.6,
}


def check_method_config(method: dict) -> None:
    """One-line errors for bad `method.*` values (the suite type-checks overrides, the ranges are ours)."""
    weights = method["delta_weights"]
    if not (isinstance(weights, list) and len(weights) == 4
            and all(isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in weights)):
        raise BenchError(f"method.delta_weights must be 4 positive numbers (x1, y1, x2, y2), got {weights!r}")
    for key in ("sigma_t", "smooth_l1_beta", "alpha_init_std"):
        if not method[key] > 0:
            raise BenchError(f"method.{key} must be positive, got {method[key]!r}")


class KlLoss(MethodAdapter):
    name = "kl_loss"
    paper = Paper(title="Bounding Box Regression with Uncertainty for Accurate Object Detection", venue="CVPR",
                  year=2019, url="https://arxiv.org/abs/1809.08545", code="https://github.com/yihui-he/KL-Loss")
    description = "Faster R-CNN whose box head predicts a variance per coordinate: KL loss + variance voting"
    reads_clean_boxes = False
    refines_boxes = False

    def default_config(self, profile, noise_level=None, dataset_kind="coco"):
        cfg = copy.deepcopy(DEFAULTS["common"])
        cfg.update(copy.deepcopy(DEFAULTS.get(profile, {})))
        return cfg

    def build_model(self, cfg, num_classes):
        import torch  # imported here, not at module level: `bench methods ls` loads every plug-in

        from methods.core import build_faster_rcnn
        from noisybox_kl_loss.head import attach_kl_head

        method = {**self.default_config(cfg.get("profile", {}).get("name", "cpu")), **cfg.get("method", {})}
        check_method_config(method)
        model = build_faster_rcnn(cfg["model"], num_classes)
        # The new layer gets its own generator seeded from train.seed: every other weight, and the global RNG
        # stream the RoI samplers draw from, stay exactly those of the Faster R-CNN baseline with the same seed.
        generator = torch.Generator().manual_seed(int(cfg.get("train", {}).get("seed", 0)))
        return attach_kl_head(model, method, generator)
