"""Evaluation of detections against ground truth: COCO AP (faster-coco-eval) and VOC AP50 (mmdet 2.x `eval_map`).

Input is the COCO results list `[{image_id, category_id, bbox, score}]`; `load_detections` reads it from COCO /
mmdet / detectron2 / ultralytics exports and validates it against the ground truth.
"""

from benchmark.evaluation.coco import STAT_NAMES, evaluate_coco
from benchmark.evaluation.detections import (
    DetectionArrays,
    load_detection_arrays,
    load_detections,
    to_arrays,
    to_results,
)
from benchmark.evaluation.voc import evaluate_voc

METRICS = ("coco", "voc")


def evaluate(gt, detections, metrics=METRICS, path=None) -> dict:
    """{"coco": evaluate_coco(...), "voc": evaluate_voc(...)} for the requested metrics, validating once."""
    from benchmark.errors import BenchError

    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise BenchError(f"unknown metric {unknown[0]!r} (choose from {', '.join(METRICS)})")
    arrays = detections if isinstance(detections, DetectionArrays) else to_arrays(gt, detections, path)
    out = {}
    if "coco" in metrics:
        out["coco"] = evaluate_coco(gt, arrays)
    if "voc" in metrics:
        out["voc"] = evaluate_voc(gt, arrays)
    return out


__all__ = ["STAT_NAMES", "METRICS", "DetectionArrays", "evaluate", "evaluate_coco", "evaluate_voc",
           "load_detection_arrays", "load_detections", "to_arrays", "to_results"]
