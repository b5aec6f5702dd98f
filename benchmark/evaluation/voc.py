"""VOC AP50 exactly as OA-MIL and SSD-Det report it: mmdet 2.x `eval_map` with all-point ("area") AP.

The rule (docs/evaluation.md, "VOC AP50"; OA-MIL's `mmdet/core/evaluation/mean_ap.py`), per class:
- ground truth splits into counted boxes and ignored ones (`ignore=1`: VOC `difficult`, COCO crowd);
- within an image, detections are visited by descending score; each takes its highest-IoU box among counted and
  ignored boxes together (ties: the first counted box). IoU >= thr with an ignored box: neither TP nor FP; with a
  counted box: TP if the box is still free (it is then taken), else FP -- no fallback to the next-best box;
  IoU < thr: FP;
- continuous coordinates: IoU without VOC's "+1" on widths; boxes and IoU in float32 as mmdet computes them;
- all detections of the class are ranked by score; recall = TP / counted boxes, precision = TP / (TP + FP);
  AP = area under the precision envelope (precision made monotone from the right), summed over recall steps;
- mAP = mean over classes with at least one counted box; the others are None in `per_class`, and mAP is None
  when there is none.
Because there is no fallback, "first detection (in score order) to hit a box takes it" is the whole greedy
matching, which lets each image be matched in a few vectorised numpy calls. Exact score ties are broken by input
order (stable sort); mmdet uses numpy's unstable default sort there, whose tie order is not defined.
"""

from __future__ import annotations

import numpy as np

from benchmark.boxes import xywh_to_xyxy
from benchmark.datasets.core import DetectionDataset
from benchmark.evaluation.coco import class_names
from benchmark.evaluation.detections import DetectionArrays, sorted_category_ids, to_arrays

_EPS = np.finfo(np.float32).eps  # eval_map's guard on recall / precision denominators
_UNION_EPS = 1e-6  # bbox_overlaps' guard on the union


def _xyxy32(xywh: np.ndarray) -> np.ndarray:
    return xywh_to_xyxy(xywh).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes a (N, 4) x b (M, 4) in float32, without "+1" (mmdet 2.x `bbox_overlaps`).

    Not `benchmark.boxes`' IoU on purpose: VOC AP50 is defined by mmdet's arithmetic (float32, a 1e-6 floor on the
    union, so two identical zero-area boxes give 0), and this reproduces it exactly."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    w = np.maximum(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0)
    h = np.maximum(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0)
    overlap = w * h
    union = np.maximum(area_a[:, None] + area_b[None, :] - overlap, _UNION_EPS)
    return overlap / union


def average_precision_area(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point AP: area under the right-to-left running maximum of precision over recall steps."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _ground_truth_arrays(gt: DetectionDataset):
    image_pos = {img["id"]: i for i, img in enumerate(gt.images)}
    cat_pos = {cid: k for k, cid in enumerate(sorted_category_ids(gt))}
    anns = [a for a in gt.annotations if a["image_id"] in image_pos and a["category_id"] in cat_pos]
    img = np.fromiter((image_pos[a["image_id"]] for a in anns), dtype=np.int64, count=len(anns))
    cat = np.fromiter((cat_pos[a["category_id"]] for a in anns), dtype=np.int64, count=len(anns))
    ignore = np.fromiter((bool(a.get("ignore", 0)) or bool(a.get("iscrowd", 0)) for a in anns), dtype=bool,
                         count=len(anns))
    boxes = _xyxy32(np.array([a["bbox"] for a in anns], dtype=np.float64)) if anns else np.zeros((0, 4), np.float32)
    return img, cat, ignore, boxes


def _match(dets: DetectionArrays, gt: DetectionDataset, iou_thr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-detection tp / fp flags (float32, both 0 for an ignored hit) and counted boxes per class."""
    g_img, g_cat, g_ign, g_box = _ground_truth_arrays(gt)
    num_classes = len(gt.categories)
    num_counted = np.bincount(g_cat[~g_ign], minlength=num_classes)

    n = len(dets)
    tp = np.zeros(n, dtype=np.float32)
    fp = np.zeros(n, dtype=np.float32)
    d_box = _xyxy32(dets.boxes)
    # detections grouped by image, in score order (stable) within the image
    d_order = np.lexsort((-dets.scores, dets.image_index))
    # ground truth grouped by image, counted boxes before ignored ones (mmdet stacks them in that order)
    g_order = np.lexsort((g_ign, g_img))
    num_images = len(gt.images)
    d_bounds = np.searchsorted(dets.image_index[d_order], np.arange(num_images + 1))
    g_bounds = np.searchsorted(g_img[g_order], np.arange(num_images + 1))

    for i in np.flatnonzero(np.diff(d_bounds)):
        d = d_order[d_bounds[i]:d_bounds[i + 1]]
        g = g_order[g_bounds[i]:g_bounds[i + 1]]
        if len(g) == 0:
            fp[d] = 1
            continue
        ious = box_iou(d_box[d], g_box[g])
        ious[dets.category_index[d][:, None] != g_cat[g][None, :]] = -1.0  # only same-class boxes compete
        best = ious.argmax(axis=1)
        hit = ious[np.arange(len(d)), best] >= iou_thr
        fp[d[~hit]] = 1
        counted = hit & ~g_ign[g[best]]
        taker = np.flatnonzero(counted)  # in score order
        _, first = np.unique(best[taker], return_index=True)
        is_tp = np.zeros(len(taker), dtype=bool)
        is_tp[first] = True
        tp[d[taker[is_tp]]] = 1
        fp[d[taker[~is_tp]]] = 1
    return tp, fp, num_counted


def evaluate_voc(gt: DetectionDataset, detections: list[dict] | DetectionArrays, iou_thr: float = 0.5,
                 path=None) -> dict:
    """VOC mAP of `detections` on `gt` (mmdet 2.x `eval_map`, area mode): {"AP50": mAP, "per_class": {name: AP}}.

    The key is `AP{round(100 * iou_thr)}`. Values are fractions 0-1; mAP is None (undefined, as COCO's undefined
    metrics are) when no class has a counted box: 0.0 would read as a detector that found nothing.
    """
    dets = detections if isinstance(detections, DetectionArrays) else to_arrays(gt, detections, path)
    tp, fp, num_counted = _match(dets, gt, iou_thr)
    # rank by score over the whole dataset, detections listed image by image (stable for exact ties)
    by_image = np.argsort(dets.image_index, kind="stable")
    per_class: dict[str, float | None] = {}
    aps = []
    for k, name in enumerate(class_names(gt)):
        sel = by_image[dets.category_index[by_image] == k]
        sel = sel[np.argsort(-dets.scores[sel], kind="stable")]
        tp_cum = np.cumsum(tp[sel])
        fp_cum = np.cumsum(fp[sel])
        if num_counted[k] == 0:
            per_class[name] = None
            continue
        # dtypes as in mmdet: float32 counts and precision, float64 recall
        recall = tp_cum.astype(np.float64) / float(num_counted[k])
        precision = tp_cum / np.maximum(tp_cum + fp_cum, _EPS)
        ap = np.float32(average_precision_area(recall, precision.astype(np.float64)))  # eval_map keeps AP in float32
        per_class[name] = float(ap)
        aps.append(ap)
    key = f"AP{round(100 * iou_thr)}"
    return {key: np.array(aps, dtype=np.float32).mean().item() if aps else None, "per_class": per_class}
