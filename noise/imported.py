"""`imported`: real box noise taken from a second annotation file (SSD-Det Table 10 trains on a weak detector's boxes).

The second file is a COCO results list (`[{image_id, category_id, bbox, score}]`, e.g. a detector's output) or a COCO
annotation file (`{"annotations": [...]}`, e.g. another annotator's boxes), with the same image ids. Its boxes are
matched one-to-one to the clean boxes the way COCO evaluation matches detections: in descending score order (file
order without scores) each box takes the unmatched clean box it overlaps most, if IoU >= `min_iou` (and, with
`same_class`, of the same category). The level is the fraction of matched clean boxes that are replaced (each box
is replaced when its uniform draw falls below the level, so a larger level replaces a superset). Unmatched clean
boxes are kept and counted (`imported_unmatched`).
"""

from __future__ import annotations

import math

import numpy as np

from benchmark.boxes import paired_iou
from benchmark.errors import BenchError
from benchmark.io import read_json
from noise.boxset import BoxSet, pairs_by_image
from noise.registry import noise_model


def read_boxes(path: str, bs: BoxSet, min_score: float):
    """(image index, category id, xyxy, score) arrays of the usable boxes in `path`, plus skip counts."""
    data = read_json(path)
    entries = data.get("annotations") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise BenchError("expected a COCO results list or a COCO file with 'annotations'", path)
    index = {iid: i for i, iid in enumerate(bs.image_ids)}
    img, cat, box, score = [], [], [], []
    unknown = bad = 0
    for k, e in enumerate(entries):
        try:
            i = index.get(e["image_id"], -1)
            x, y, w, h = (float(v) for v in e["bbox"])
            c = int(e.get("category_id", -1))
            s = float(e.get("score", 1.0))
        except (KeyError, TypeError, ValueError):
            raise BenchError(f"entry #{k} ({_short(e)}): every entry needs image_id and a 4-number bbox; "
                             "category_id must be an integer and score a number where given", path) from None
        if i < 0:
            unknown += 1
            continue
        if not (math.isfinite(x + y + w + h) and w > 0 and h > 0) or s < min_score:
            bad += 1
            continue
        img.append(i)
        cat.append(c)
        box.append((x, y, x + w, y + h))
        score.append(s)
    return (np.array(img, np.int64), np.array(cat, np.int64), np.array(box, np.float64).reshape(-1, 4),
            np.array(score, np.float64), unknown, bad)


def _short(entry, limit: int = 120) -> str:
    text = repr(entry)
    return text if len(text) <= limit else text[:limit] + "..."


def match(bs: BoxSet, rows: np.ndarray, img, cat, box, score, min_iou: float, same_class: bool) -> np.ndarray:
    """For each row, the index of its matched imported box, or -1 (COCO-evaluation-style greedy matching)."""
    result = np.full(rows.size, -1, np.int64)
    di, gj = pairs_by_image(img, bs.image[rows])
    if di.size == 0:
        return result
    iou = paired_iou(box[di], bs.clean[rows[gj]])
    keep = iou >= min_iou
    if same_class:
        keep &= cat[di] == bs.category[rows[gj]]
    di, gj, iou = di[keep], gj[keep], iou[keep]
    rank = np.empty(score.size, np.int64)
    rank[np.argsort(-score, kind="stable")] = np.arange(score.size)
    order = np.lexsort((-iou, rank[di]))  # detections by score, each one's candidates by IoU
    det_used = np.zeros(score.size, bool)
    for d, g in zip(di[order].tolist(), gj[order].tolist()):
        if det_used[d] or result[g] >= 0:
            continue
        det_used[d] = True
        result[g] = d
    return result


@noise_model("imported", max_inclusive=True, file_params=("file",))
def imported(bs: BoxSet, level, rng, file: str = "", min_iou: float = 0.3, same_class: bool = True,
             min_score: float = 0.0):
    """Real noise: clean boxes replaced by matched boxes from another annotation or detection file (SSD-Det T.10).

    The file may be a weak detector's output or a second annotator's boxes; level = fraction of matched boxes
    replaced."""
    if not file:
        raise BenchError("imported: give the second annotation file as file=PATH")
    if isinstance(min_iou, bool) or not (isinstance(min_iou, (int, float)) and 0 < min_iou <= 1):
        raise BenchError(f"imported: min_iou must be in (0, 1], got {min_iou!r}")
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float)):
        raise BenchError(f"imported: min_score must be a number, got {min_score!r}")
    if not isinstance(same_class, bool):  # "no" would read as true
        raise BenchError(f"imported: same_class must be true or false, got {same_class!r}")
    img, cat, box, score, unknown, bad = read_boxes(str(file), bs, float(min_score))
    rows = bs.active_index()
    matched = match(bs, rows, img, cat, box, score, float(min_iou), same_class)
    u = rng.random(rows.size)
    take = (matched >= 0) & (u < float(level))
    notes = dict(bs.notes)
    notes.update(imported_unmatched=int((matched < 0).sum()), imported_unknown_image=unknown,
                 imported_skipped=bad)  # the file's sha256: the manifest's `param_files`
    return bs.replace(notes=notes).propose(rows[take], box[matched[take]])
