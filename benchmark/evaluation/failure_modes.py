"""Failure modes of refined / predicted boxes: good, group, drift, part, oversize, shift.

SSD-Det (ICCV 2023, §4.4, Table 9) names object drift, group prediction and part domination but gives no thresholds,
priority or script. We use our own deterministic classifier (docs/evaluation.md, "Failure modes")
for a box D attached to object G_i in an image with objects {G_j}; IoU = I/(D+G-I), IoG = I/G, IoD = I/D:

1. good      IoU(D, G_i) >= bad_iou. Otherwise D is bad and takes the first mode that applies:
2. group     at least `group_min_objects` objects (G_i may be one) with IoG(D, G_j) >= group_cover,
             and area(D) >= group_area_ratio * area(G_i)
3. drift     some j != i with IoU(D, G_j) > IoU(D, G_i) (strictly) and IoU(D, G_j) >= drift_iou
             (the same-class variant only considers G_j of G_i's class)
4. part      IoD(D, G_i) >= part_iod and area(D) <= part_area_ratio * area(G_i)
5. oversize  IoG(D, G_i) >= oversize_iog and area(D) >= oversize_area_ratio * area(G_i), and no other object
             covered (IoG(D, G_j) >= group_cover for no j != i)
6. shift     everything else

Thresholds are inclusive (`>=`, `<=`) except drift's IoU comparison. Overlaps follow `benchmark.boxes`: a box
identical to its object has IoU, IoG and IoD 1 even at zero area; any other overlap with a zero-area box is 0.
Applied to (a) refined training boxes (or the noisy boxes themselves, as the input baseline) against the clean
training boxes, attached by annotation id; (b) test detections with score >= `min_score`, attached to the same-class
GT of highest IoU in their image (first in GT order on ties); detections whose image has no GT of their class, or
whose best GT is an ignored one, are counted as `unassigned` and left out of the rates. Ignored boxes (crowd,
difficult, `ignore`: `benchmark.datasets.core.is_ignored`) are neither classified nor objects for the rules, as in the noise
statistics.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from benchmark.boxes import area, overlaps, size_bucket, xywh_to_xyxy
from benchmark.datasets.core import is_ignored
from benchmark.settings_check import NON_NEGATIVE, POSITIVE_COUNT, UNIT, checked

MODES = ("good", "group", "drift", "part", "oversize", "shift")
BAD_MODES = MODES[1:]
UNASSIGNED = "unassigned"

# default sensitivity grid (docs/evaluation.md): bad-IoU in {0.3, 0.5} x group cover threshold in {0.6, 0.7, 0.8}
SENSITIVITY_GRID = {"bad_iou": (0.3, 0.5), "group_cover": (0.6, 0.7, 0.8)}


def _group_ranges(sorted_keys: np.ndarray, query_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query key, the [start, end) slice of `sorted_keys` holding that key (empty when absent)."""
    start = np.searchsorted(sorted_keys, query_keys, side="left")
    end = np.searchsorted(sorted_keys, query_keys, side="right")
    return start, end


def _expand_ranges(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten ranges: (owner row of each element, element index) for every i and every k in [start_i, end_i)."""
    counts = (end - start).astype(np.int64)
    rows = np.repeat(np.arange(len(start)), counts)
    offsets = np.cumsum(counts) - counts
    cols = np.arange(counts.sum()) - np.repeat(offsets, counts) + np.repeat(start, counts)
    return rows, cols.astype(np.int64)


@dataclass(frozen=True)
class FailureModeConfig:
    """Classifier thresholds (defaults: the classifier of docs/evaluation.md)."""

    bad_iou: float = 0.5
    group_cover: float = 0.7
    group_min_objects: int = 2
    group_area_ratio: float = 1.5
    drift_iou: float = 0.3
    part_iod: float = 0.8
    part_area_ratio: float = 0.5
    oversize_iog: float = 0.8
    oversize_area_ratio: float = 2.0
    min_score: float = 0.3  # test detections below this score are not classified

    @classmethod
    def from_dict(cls, d: dict, prefix: str = "failure_modes.") -> FailureModeConfig:
        """Thresholds from a JSON object; a wrong type or range is a `ValueError` naming the key."""
        return cls(**checked(cls, d, "failure-mode", prefix, RANGES))


# what `FailureModeConfig.from_dict` accepts: overlap thresholds and scores in [0, 1], ratios >= 0, >= 1 object
RANGES = {"bad_iou": UNIT, "group_cover": UNIT, "group_min_objects": POSITIVE_COUNT, "group_area_ratio": NON_NEGATIVE,
          "drift_iou": UNIT, "part_iod": UNIT, "part_area_ratio": NON_NEGATIVE, "oversize_iog": UNIT,
          "oversize_area_ratio": NON_NEGATIVE, "min_score": UNIT}


@dataclass
class Classified:
    """Per-box result of `classify`: mode names for both drift variants plus the overlaps with the own object."""

    mode: np.ndarray  # object array of MODES names (drift over objects of any class)
    mode_same_class: np.ndarray  # same, drift only towards objects of the own object's class
    iou: np.ndarray
    iog: np.ndarray
    iod: np.ndarray


def classify(boxes, owner, image_ids, gt_boxes, gt_image_ids, gt_labels=None,
             cfg: FailureModeConfig = FailureModeConfig()) -> Classified:
    """Classify boxes D (N, 4 xyxy), each attached to GT row `owner[k]`, against every GT box of its image.

    All N x (objects per image) overlaps are computed in one vectorised pass over (box, GT-in-same-image) pairs.
    `owner` must index a GT row of the same image; `gt_labels` (M,) is needed only for the same-class drift
    variant (without it, every object counts as the same class).
    """
    d = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    owner = np.asarray(owner, dtype=np.int64)
    img = np.asarray(image_ids)
    g = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    gimg = np.asarray(gt_image_ids)
    labels = np.zeros(len(g), dtype=np.int64) if gt_labels is None else np.asarray(gt_labels)
    n = len(d)
    if n == 0:
        empty = np.zeros(0)
        return Classified(np.zeros(0, dtype=object), np.zeros(0, dtype=object), empty, empty, empty)
    if owner.min() < 0 or owner.max() >= len(g):
        raise ValueError("every box needs an owner GT row (got an index out of range)")
    if np.any(gimg[owner] != img):
        raise ValueError("a box's owner GT lies in another image")

    own = g[owner]
    iou, iog, iod = overlaps(d, own)
    a_d, a_own = area(d), area(own)
    good = iou >= cfg.bad_iou

    order = np.argsort(gimg, kind="stable")
    start, end = _group_ranges(gimg[order], img)
    rows, pos = _expand_ranges(start, end)
    cols = order[pos]  # GT row of every (box, GT in the same image) pair
    p_iou, p_iog, _ = overlaps(d[rows], g[cols])
    is_other = cols != owner[rows]
    covered = p_iog >= cfg.group_cover
    n_covered = np.bincount(rows, weights=covered, minlength=n)
    n_other_covered = np.bincount(rows, weights=covered & is_other, minlength=n)
    group = (n_covered >= cfg.group_min_objects) & (a_d >= cfg.group_area_ratio * a_own)
    beats = is_other & (p_iou > iou[rows]) & (p_iou >= cfg.drift_iou)
    drift_any = np.bincount(rows, weights=beats, minlength=n) > 0
    same = labels[cols] == labels[owner[rows]]
    drift_same = np.bincount(rows, weights=beats & same, minlength=n) > 0
    part = (iod >= cfg.part_iod) & (a_d <= cfg.part_area_ratio * a_own)
    oversize = (iog >= cfg.oversize_iog) & (a_d >= cfg.oversize_area_ratio * a_own) & (n_other_covered == 0)

    names = np.asarray(MODES, dtype=object)

    def select(drift):
        code = np.select([good, group, drift, part, oversize], [0, 1, 2, 3, 4], default=5)
        return names[code]

    return Classified(select(drift_any), select(drift_same), iou, iog, iod)


# ---- application to the results store -------------------------------------------------------------------------

def _clean_box(ann: dict):
    """The clean box of a noisy annotation: `true_bbox` (None for boxes the noise added), else `bbox` itself."""
    return ann["true_bbox"] if "true_bbox" in ann else ann["bbox"]


def _objects(coco: dict) -> list[dict]:
    """The annotations that are objects for the rules: crowd / difficult / `ignore` boxes are left out, as in the
    noise statistics (never perturbed, they would always be "good", and they are no objects to group or drift to)."""
    return [a for a in coco.get("annotations", []) if not is_ignored(a)]


def training_boxes(noisy_train: dict, refined: list[dict] | None) -> pd.DataFrame:
    """One row per counted training annotation that has a clean box: clean, noisy and candidate boxes (COCO xywh).

    The candidate is the method's refined box (matched by annotation id) or, with `refined=None`, the noisy box
    itself (the input baseline). Ignored annotations (crowd / difficult), annotations the noise added (no clean box)
    and annotations without a refined box are left out; their counts are in `frame.attrs`.
    """
    anns = noisy_train.get("annotations", [])
    objects = _objects(noisy_train)
    with_clean = [a for a in objects if _clean_box(a) is not None]
    ref = None if refined is None else {int(r["id"]): r["bbox"] for r in refined}
    rows = []
    missing = 0
    for a in with_clean:
        cand = a["bbox"] if ref is None else ref.get(int(a["id"]))
        if cand is None:
            missing += 1
            continue
        rows.append((int(a["id"]), a["image_id"], a["category_id"], list(_clean_box(a)), list(a["bbox"]), list(cand)))
    frame = pd.DataFrame(rows, columns=["ann_id", "image_id", "category_id", "clean", "noisy", "candidate"])
    frame.attrs.update(ignored=len(anns) - len(objects), added_by_noise=len(objects) - len(with_clean),
                       without_refined_box=missing)
    return frame


def classify_training(noisy_train: dict, refined: list[dict] | None,
                      cfg: FailureModeConfig = FailureModeConfig()) -> pd.DataFrame:
    """Case (a): candidate training boxes vs the clean training boxes (every counted clean box of the image is an
    object)."""
    anns = [a for a in _objects(noisy_train) if _clean_box(a) is not None]
    frame = training_boxes(noisy_train, refined)
    if frame.empty:
        return _with_modes(frame, None, np.zeros(0))
    gt_xyxy = xywh_to_xyxy([_clean_box(a) for a in anns])
    row_of = {int(a["id"]): k for k, a in enumerate(anns)}
    owner = frame["ann_id"].map(row_of).to_numpy()
    res = classify(xywh_to_xyxy(frame["candidate"].tolist()), owner, frame["image_id"].to_numpy(), gt_xyxy,
                   np.array([a["image_id"] for a in anns]), np.array([a["category_id"] for a in anns]), cfg)
    return _with_modes(frame, res, area(xywh_to_xyxy(frame["clean"].tolist())))


def classify_detections(test_gt: dict, detections: list[dict],
                        cfg: FailureModeConfig = FailureModeConfig()) -> pd.DataFrame:
    """Case (b): test detections (score >= cfg.min_score) vs the counted test GT (crowd / difficult left out).

    A detection attaches to its best same-class GT among all of them; one whose best GT is ignored (it fires on a
    crowd region, which COCO's evaluation ignores too) is `unassigned`, like one without a GT of its class.
    `det_index` is the detection's position in `detections`, `owner_row` its object's position in the GT's
    annotations (-1: unassigned).
    """
    gts = test_gt.get("annotations", [])
    keep = [k for k, d in enumerate(detections) if float(d["score"]) >= cfg.min_score]
    dets = [detections[k] for k in keep]
    cols = ["det_index", "image_id", "category_id", "score", "clean", "candidate", "owner_row"]
    if not dets:
        return _with_modes(pd.DataFrame(columns=cols), None, np.zeros(0))
    g_img = np.array([a["image_id"] for a in gts])
    g_cls = np.array([a["category_id"] for a in gts])
    g_xyxy = xywh_to_xyxy([a["bbox"] for a in gts]) if gts else np.zeros((0, 4))
    counted = np.array([not is_ignored(a) for a in gts], dtype=bool)
    d_img = np.array([d["image_id"] for d in dets])
    d_cls = np.array([d["category_id"] for d in dets])
    d_xyxy = xywh_to_xyxy([d["bbox"] for d in dets])
    owner = _best_same_class_gt(d_xyxy, d_img, d_cls, g_xyxy, g_img, g_cls)
    on_ignored = owner >= 0
    on_ignored[on_ignored] = ~counted[owner[on_ignored]]
    owner[on_ignored] = -1
    frame = pd.DataFrame({
        "det_index": keep, "image_id": d_img, "category_id": d_cls, "score": [float(d["score"]) for d in dets],
        "clean": [list(gts[o]["bbox"]) if o >= 0 else None for o in owner],
        "candidate": [list(d["bbox"]) for d in dets], "owner_row": owner,
    })
    assigned = owner >= 0
    rows = np.flatnonzero(counted)  # the objects of the rules, and each one's position among them
    local = np.cumsum(counted) - 1
    res = classify(d_xyxy[assigned], local[owner[assigned]], d_img[assigned], g_xyxy[rows], g_img[rows],
                   g_cls[rows], cfg)
    g_area = np.array([float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in gts])
    for col in ("mode", "mode_same_class"):
        vals = np.full(len(frame), UNASSIGNED, dtype=object)
        vals[assigned] = getattr(res, col)
        frame[col] = vals
    iou = np.full(len(frame), np.nan)
    iou[assigned] = res.iou
    frame["iou"] = iou
    size = np.full(len(frame), None, dtype=object)
    size[assigned] = size_bucket(g_area[owner[assigned]])
    frame["size"] = size
    return frame


def _best_same_class_gt(d_xyxy, d_img, d_cls, g_xyxy, g_img, g_cls) -> np.ndarray:
    """Row of the same-class GT with the highest IoU in each detection's image (first on ties), -1 if none."""
    owner = np.full(len(d_xyxy), -1, dtype=np.int64)
    if len(g_xyxy) == 0:
        return owner
    key_g = np.array([f"{i}\x00{c}" for i, c in zip(g_img, g_cls)], dtype=object)
    key_d = np.array([f"{i}\x00{c}" for i, c in zip(d_img, d_cls)], dtype=object)
    order = np.argsort(key_g, kind="stable")
    start, end = _group_ranges(key_g[order], key_d)
    rows, pos = _expand_ranges(start, end)
    if len(rows) == 0:
        return owner
    cols = order[pos]
    ious = overlaps(d_xyxy[rows], g_xyxy[cols])[0]
    # best per detection: sort pairs by (row, -iou, gt row) and take the first of each row
    pick = np.lexsort((cols, -ious, rows))
    first = np.r_[True, rows[pick][1:] != rows[pick][:-1]]
    owner[rows[pick][first]] = cols[pick][first]
    return owner


def _with_modes(frame: pd.DataFrame, res: Classified | None, clean_area: np.ndarray) -> pd.DataFrame:
    frame = frame.copy()
    if res is None:
        for col in ("mode", "mode_same_class", "size"):
            frame[col] = pd.Series(dtype=object)
        frame["iou"] = pd.Series(dtype=float)
        return frame
    frame["mode"] = res.mode
    frame["mode_same_class"] = res.mode_same_class
    frame["iou"] = res.iou
    frame["size"] = size_bucket(clean_area)
    return frame


# ---- rates ---------------------------------------------------------------------------------------------------

def mode_rates(frame: pd.DataFrame, column: str = "mode", by: list[str] | None = None) -> pd.DataFrame:
    """Per mode: count, % of all classified boxes and % of bad boxes (unassigned detections are excluded)."""
    by = list(by or [])
    f = frame[frame[column] != UNASSIGNED]
    rows = []
    groups = f.groupby(by, dropna=False, sort=True) if by else [((), f)]
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        total = len(sub)
        counts = sub[column].value_counts()
        bad = int(total - counts.get("good", 0))
        for m in MODES:
            c = int(counts.get(m, 0))
            rows.append(dict(zip(by, key)) | {
                "mode": m, "count": c, "total": total, "bad": bad,
                "pct_all": 100.0 * c / total if total else np.nan,
                "pct_bad": (100.0 * c / bad if bad else np.nan) if m != "good" else np.nan,
            })
    return pd.DataFrame(rows, columns=by + ["mode", "count", "total", "bad", "pct_all", "pct_bad"])


def pool_rates(rates: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Add up `mode_rates` frames (e.g. one per cell) over everything but `by`, recomputing the percentages."""
    if rates.empty:
        return rates
    keys = [*by, "mode"]
    out = rates.groupby(keys, sort=False, dropna=False)[["count", "total", "bad"]].sum().reset_index()
    out["pct_all"] = 100.0 * out["count"] / out["total"].where(out["total"] > 0)
    out["pct_bad"] = (100.0 * out["count"] / out["bad"].where(out["bad"] > 0)).where(out["mode"] != "good")
    return out


def sensitivity(classify_fn, cfg: FailureModeConfig = FailureModeConfig(),
                grid: dict[str, tuple] | None = None) -> pd.DataFrame:
    """Mode rates for every combination of the threshold grid (default bad-IoU x group cover).

    `classify_fn(cfg) -> frame` re-runs a classification with the given config, so the same function serves
    training boxes and detections; the grid's values appear as columns.
    """
    grid = dict(SENSITIVITY_GRID if grid is None else grid)
    names = list(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in names)):
        rates = mode_rates(classify_fn(replace(cfg, **dict(zip(names, values)))))
        out.append(rates.assign(**dict(zip(names, values))))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()
