"""Evaluation of detections against ground truth: COCO AP (faster-coco-eval) and VOC AP50 (mmdet 2.x `eval_map`).

Input is the COCO results list `[{image_id, category_id, bbox, score}]`; `load_detections` reads it from COCO /
mmdet / detectron2 / ultralytics exports and validates it against the ground truth. What is computed and how it is
shown is registered in `benchmark.evaluation.metrics`.
"""

from benchmark.evaluation.coco import STAT_NAMES, evaluate_coco
from benchmark.evaluation.detections import (
    DetectionArrays,
    load_detection_arrays,
    load_detections,
    to_arrays,
    to_results,
)
from benchmark.evaluation.metrics import evaluator_names, get_evaluator
from benchmark.evaluation.voc import evaluate_voc


def evaluate(gt, detections, metrics=None, path=None) -> dict:
    """{evaluator name: its section}, e.g. {"coco": evaluate_coco(...), "voc": evaluate_voc(...)}, for the
    requested evaluators (default: every registered one), validating the detections once."""
    from benchmark.errors import BenchError

    known = evaluator_names()
    unknown = [m for m in metrics or () if m not in known]
    if unknown:
        raise BenchError(f"unknown metric {unknown[0]!r} (choose from {', '.join(known)})")
    names = known if metrics is None else [m for m in known if m in metrics]  # sections in registered order
    arrays = detections if isinstance(detections, DetectionArrays) else to_arrays(gt, detections, path)
    return {name: get_evaluator(name).compute(gt, arrays) for name in names}


__all__ = ["STAT_NAMES", "DetectionArrays", "evaluate", "evaluate_coco", "evaluate_voc",
           "load_detection_arrays", "load_detections", "to_arrays", "to_results"]
