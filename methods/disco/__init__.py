"""DISCO (Zhou et al., BMVC 2024, arXiv 2308.12017): distribution-aware calibration for detection with noisy boxes.

Faster R-CNN (the two-stage core) whose RoI head models the spatial distribution of the proposals assigned to each
noisy box and uses it for proposal augmentation (DA-Aug), box refinement (DA-Ref, exported as refined boxes) and
confidence estimation (DA-Est, variance voting at inference). Mechanism: `methods/disco/head.py`.

Hyper-parameters and sources (Correr-Zhou/DISCO at 2d552641):

| key | COCO 20 % | VOC 40 % | model-config default | source |
|---|---|---|---|---|
| loss_lambda (lambda, cls calibration) | 0.01 | 0.1 | 0.1 | scripts/train_{coco,voc07}_disco.sh; configs/_base_/models/*_disco.py |
| loss_gamma (gamma, variance loss) | 0.3 | 0.1 | 0.3 | same |
| temperature (temper_coef) | 0.01 | 0.1 | 0.1 | same |
| mix_a / mix_b (DA-Ref phi = min(s^a, b)) | 10 / 0.7 | 5 / 0.8 | 5 / 0.85 (COCO), 5 / 0.8 (VOC) | same |
| sample_num / selected_num | 10 / 1 | 10 / 1 | | model configs ("FIXED") |
| assign_time | 2 | 2 | | model configs (`iter_assign_flag`, `assgin_time`) |
| reg_calib_epoch | 1 | 1 | | model configs (1-based: from the first epoch) |
| box_stds | 0.1 x 4 (DeltaXYXY, L1) | | | model configs (RCNN `bbox_coder`, `loss_bbox`) |
| var_init_std, softnms, softnms_sigma, var_vote, var_sigma_t | 1e-5, true, 0.5, true, 0.02 | | | model configs |

Paper leaves open (values only in the paper, not in the released scripts): COCO 10 / 30 / 40 % and VOC 10-30 %.
Documented default: the released script of the same dataset kind (COCO-style datasets -> the COCO 20 % script,
VOC -> the VOC 40 % script); `hparams_source` in the config says which applies. The README's instruction is
"revise ... according to our paper".

Deliberate deviations: the RPN keeps the core's coder and loss (DISCO's RPN uses DeltaXYXY + L1); an annotation whose
cluster is empty in a pass keeps its box for the next pass (the released code drops it); boxes are clipped to the
image before re-pooling; the paper's remaining mmdet details (GPU count, batch 16) follow the `paper` profile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmark.errors import BenchError
from methods import register_method
from methods.base import MethodAdapter, Paper

if TYPE_CHECKING:
    import torch

# (kind, level) -> (loss_lambda, loss_gamma, temperature, mix_a, mix_b) from the released training scripts
PUBLISHED = {("coco", 0.2): (0.01, 0.3, 0.01, 10.0, 0.7), ("voc", 0.4): (0.1, 0.1, 0.1, 5.0, 0.8)}


def published_kind(dataset_kind: str) -> str:
    return "voc" if dataset_kind == "voc" else "coco"


def hparams(dataset_kind: str, noise_level: float | None) -> tuple[tuple, str]:
    kind = published_kind(dataset_kind)
    level = None if noise_level is None else round(float(noise_level), 3)
    if (kind, level) in PUBLISHED:
        return PUBLISHED[(kind, level)], f"published ({kind.upper()} {int(level * 100)} % script)"
    ref = 0.2 if kind == "coco" else 0.4
    what = "unknown noise level" if level is None else f"{kind.upper()} {level * 100:g} %"
    return PUBLISHED[(kind, ref)], (f"default: {what} is not in the released scripts (paper leaves open here); "
                                    f"the {kind.upper()} {int(ref * 100)} % script's values")


@register_method
class Disco(MethodAdapter):
    name = "disco"
    paper = Paper("Distribution-Aware Calibration for Object Detection with Noisy Bounding Boxes", "BMVC", 2024,
                  url="https://arxiv.org/abs/2308.12017", code="https://github.com/Correr-Zhou/DISCO")
    description = ("Faster R-CNN whose RoI head models the spatial distribution of the proposals of each noisy box: "
                   "proposal augmentation, box refinement, variance estimation + variance voting")
    refines_boxes = True
    relative_cost = 1.6

    def default_config(self, profile: str, noise_level: float | None = None, dataset_kind: str = "coco") -> dict:
        (lam, gamma, temp, a, b), source = hparams(dataset_kind, noise_level)
        return {"loss_lambda": lam, "loss_gamma": gamma, "temperature": temp, "mix_a": a, "mix_b": b,
                "hparams_source": source, "sample_num": 10, "selected_num": 1, "assign_time": 2,
                "reg_calib_epoch": 1, "schedule_epochs": 12, "box_stds": [0.1, 0.1, 0.1, 0.1],
                "var_init_std": 1e-5, "softnms": True, "softnms_sigma": 0.5, "var_vote": True,
                "var_sigma_t": 0.02}

    def build_model(self, cfg: dict, num_classes: int) -> torch.nn.Module:
        from methods.core import build_faster_rcnn, install_roi_heads
        from methods.disco.head import DiscoRoIHeads

        model = build_faster_rcnn(cfg["model"], num_classes)
        return install_roi_heads(model, DiscoRoIHeads(model.roi_heads, params(cfg)))


def params(cfg: dict):
    from methods.disco.head import DiscoParams

    c = {**Disco().default_config(cfg["profile"]["name"], cfg["profile"].get("noise_level"),
                                  cfg["profile"].get("dataset_kind", "coco")), **cfg.get("method", {})}
    try:
        for key in ("sample_num", "selected_num", "assign_time", "reg_calib_epoch", "schedule_epochs"):
            if not isinstance(c[key], int) or isinstance(c[key], bool) or c[key] < 1:
                raise ValueError(f"method.{key} must be a positive integer, got {c[key]!r}")
        for key in ("temperature", "softnms_sigma", "var_sigma_t", "mix_a", "var_init_std"):
            if not c[key] > 0:
                raise ValueError(f"method.{key} must be positive, got {c[key]!r}")
        if not 0 <= c["mix_b"] <= 1:
            raise ValueError(f"method.mix_b must be in [0, 1], got {c['mix_b']!r}")
        stds = tuple(float(s) for s in c["box_stds"])
        if len(stds) != 4 or min(stds) <= 0:
            raise ValueError(f"method.box_stds must be 4 positive numbers, got {c['box_stds']!r}")
        return DiscoParams(
            loss_lambda=float(c["loss_lambda"]), loss_gamma=float(c["loss_gamma"]), temperature=float(c["temperature"]),
            mix_a=float(c["mix_a"]), mix_b=float(c["mix_b"]), sample_num=c["sample_num"],
            selected_num=c["selected_num"], assign_time=c["assign_time"], reg_calib_epoch=c["reg_calib_epoch"],
            schedule_epochs=c["schedule_epochs"], box_stds=stds, var_init_std=float(c["var_init_std"]),
            softnms=bool(c["softnms"]), softnms_sigma=float(c["softnms_sigma"]), var_vote=bool(c["var_vote"]),
            var_sigma_t=float(c["var_sigma_t"]))
    except (TypeError, ValueError) as exc:
        raise BenchError(f"disco: {exc}") from None
