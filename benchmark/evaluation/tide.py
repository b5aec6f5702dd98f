"""Error decomposition on TIDE's axes (Bolya et al., ECCV 2020): Cls, Loc, Both, Dupe, Bkg, Miss + FalsePos/FalseNeg.

Our own implementation, so it runs on the suite's results (no extra dependency, size buckets, VOC matching).
Rules, per image (detections sorted by score, descending, stable; at most `max_dets` per image):

Matching (`style="coco"`, COCOeval's rules): a detection takes the unmatched, non-ignored GT of its class with the
highest IoU >= t (first GT on ties). Failing that, if it overlaps an ignored GT of its class by >= t it is ignored
(crowd GT: intersection over the detection's area, reusable; other ignored GT: IoU, used once). Ignored GT are
`iscrowd` / `ignore` boxes and, for a size bucket, GT whose `area` lies outside it; an unmatched detection whose own
area lies outside the bucket is ignored too. `style="voc"` (mmdet `eval_map`, docs/evaluation.md): a detection takes its
highest-IoU GT of its class among counted and ignored together; ignored -> neither TP nor FP; counted and free -> TP;
taken -> FP (no fallback).

Each unmatched, non-ignored detection gets the first error that applies (TIDE's order), against non-ignored GT:
  Bkg if the image has no GT; Loc if its best same-class IoU (matched GT included) is in [t_b, t]; Cls if its best
  other-class IoU >= t; Dupe if its best IoU with an already-matched same-class GT >= t; Bkg if its best IoU with
  any GT <= t_b; otherwise Both.  Miss: a GT left unmatched that no Cls/Loc error targets (targets that are already
  matched do not count).
dAP of a type = AP with only that type fixed by an oracle, minus the base AP, clamped at 0 (types overlap, so they do
not sum to 100 - AP). Fixes: Cls/Loc turn the highest-scoring error that targets a free GT into a TP for it (Cls
also takes the GT's class); every other Cls/Loc error is deleted (one GT, one fix; the best-score slot is shared by
Cls and Loc errors, as in TIDE). Dupe/Bkg/Both are deleted; a Miss removes its GT from the positives.
FalsePos deletes every false positive; FalseNeg removes every unmatched GT from the positives.

Overlaps follow `benchmark.boxes`: identical boxes have IoU 1 even at zero area, where COCOeval gives 0 (the two
differ only for a detection equal, to the last bit, to a zero-area ground-truth box).

AP: per class over the whole split, classes with at least one counted GT (COCOeval's rule; tidecv also averages
classes that only have detections, as AP 0); `coco` = 101-point interpolated precision, `voc` = all-point area.
Results are fractions (0-1), like the results store.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from benchmark.boxes import COCO_AREA_RANGES, area, pairwise_iod, pairwise_iou, xywh_to_xyxy
from benchmark.settings_check import POSITIVE_COUNT, UNIT, checked

ERROR_TYPES = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
SPECIAL_TYPES = ("FalsePos", "FalseNeg")
STYLES = ("coco", "voc")
AREA_RANGES = COCO_AREA_RANGES  # COCOeval's area ranges (inclusive at both ends)

_TP, _IGNORED, _PENDING = -1, -2, 99  # det status codes; errors use their index in ERROR_TYPES
_CLS, _LOC, _BOTH, _DUPE, _BKG = range(5)


@dataclass(frozen=True)
class TideConfig:
    pos_threshold: float = 0.5
    bg_threshold: float = 0.1
    max_dets: int = 100
    style: str = "coco"

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"unknown TIDE style {self.style!r} (known: {', '.join(STYLES)})")

    @classmethod
    def from_dict(cls, d: dict, prefix: str = "tide.") -> TideConfig:
        """Settings from a JSON object; a wrong type or range is a `ValueError` naming the key."""
        ranges = {"pos_threshold": UNIT, "bg_threshold": UNIT, "max_dets": POSITIVE_COUNT}
        cfg = cls(**checked(cls, d, "TIDE", prefix, ranges, {"style": STYLES}))
        if cfg.bg_threshold > cfg.pos_threshold:
            raise ValueError(f"{prefix}bg_threshold {cfg.bg_threshold:g} is above {prefix}pos_threshold "
                             f"{cfg.pos_threshold:g}, expected bg_threshold <= pos_threshold")
        return cfg


# ---- AP -------------------------------------------------------------------------------------------------------

def _ap_sorted(tp: np.ndarray, npos: int, style: str) -> float:
    """AP from is-TP flags already in descending score order."""
    if npos <= 0:
        return 0.0
    ctp = np.cumsum(tp)
    cfp = np.cumsum(~tp)
    rec = ctp / npos
    prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    if style == "voc":
        mrec = np.concatenate([[0.0], rec, [1.0]])
        mpre = np.concatenate([[0.0], prec, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        step = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))
    prec = np.maximum.accumulate(prec[::-1])[::-1] if len(prec) else prec
    idx = np.searchsorted(rec, _RECALL_GRID, side="left")
    q = np.zeros(len(_RECALL_GRID))
    ok = idx < len(prec)
    q[ok] = prec[idx[ok]]
    return float(q.mean())


_RECALL_GRID = np.linspace(0.0, 1.0, 101)  # COCOeval's recall thresholds


def class_ap(scores: np.ndarray, tp: np.ndarray, npos: int, style: str = "coco") -> float:
    """AP of one class from its detections (score, is-TP) and the number of counted GT."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    return _ap_sorted(np.asarray(tp, dtype=bool)[order], npos, style)


def mean_ap(cls: np.ndarray, scores: np.ndarray, tp: np.ndarray, npos: dict, style: str = "coco") -> float:
    """Mean over the classes in `npos` (those with counted GT in the unfixed data) of the per-class AP."""
    if not npos:
        return float("nan")
    order = np.lexsort((-np.asarray(scores, dtype=np.float64), cls))  # by class, then score; stable on ties
    cls_sorted, tp_sorted = np.asarray(cls)[order], np.asarray(tp, dtype=bool)[order]
    keys = np.fromiter(npos, dtype=cls_sorted.dtype if len(cls_sorted) else np.int64, count=len(npos))
    start = np.searchsorted(cls_sorted, keys, side="left")
    end = np.searchsorted(cls_sorted, keys, side="right")
    return float(np.mean([_ap_sorted(tp_sorted[a:b], n, style) for a, b, n in zip(start, end, npos.values())]))


# ---- matching and error classification -------------------------------------------------------------------------

@dataclass
class _Split:
    """Flat arrays for one evaluation: detections (kept after max_dets) and GT, grouped by image."""

    d_img: np.ndarray
    d_cls: np.ndarray
    d_box: np.ndarray
    d_score: np.ndarray
    g_img: np.ndarray
    g_cls: np.ndarray
    g_box: np.ndarray
    g_area: np.ndarray
    g_crowd: np.ndarray
    g_ignore: np.ndarray


def _arrays(gt: dict, detections: list[dict], max_dets: int) -> _Split:
    anns = gt.get("annotations", [])
    g_box = xywh_to_xyxy([a["bbox"] for a in anns]) if anns else np.zeros((0, 4))
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    ignore = np.array([bool(a.get("ignore", 0)) or bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    g_area = np.array([float(a["area"]) if "area" in a else float(a["bbox"][2]) * float(a["bbox"][3])
                       for a in anns])
    d_img = np.array([d["image_id"] for d in detections])
    d_score = np.array([float(d["score"]) for d in detections])
    # per image: sort by score (descending, stable) and keep the first max_dets
    order = np.lexsort((-d_score, d_img)) if len(detections) else np.zeros(0, dtype=np.int64)
    if len(order):
        img_sorted = d_img[order]
        first = np.r_[True, img_sorted[1:] != img_sorted[:-1]]
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
        order = order[(np.arange(len(order)) - group_start) < max_dets]
    return _Split(
        d_img=d_img[order] if len(order) else np.zeros(0, dtype=np.int64),
        d_cls=np.array([detections[i]["category_id"] for i in order], dtype=np.int64),
        d_box=xywh_to_xyxy([detections[i]["bbox"] for i in order]) if len(order) else np.zeros((0, 4)),
        d_score=d_score[order] if len(order) else np.zeros(0),
        g_img=np.array([a["image_id"] for a in anns]),
        g_cls=np.array([a["category_id"] for a in anns], dtype=np.int64),
        g_box=g_box, g_area=g_area, g_crowd=crowd, g_ignore=ignore,
    )


@dataclass
class _Outcome:
    status: np.ndarray  # per det: _TP, _IGNORED or an error code
    target: np.ndarray  # per det: GT row a Cls/Loc error targets (-1 otherwise)
    matched: np.ndarray  # per GT: matched by a TP
    counted: np.ndarray  # per GT: a counted positive (not ignored, inside the area range)


@dataclass
class _Image:
    """One image's detection rows (score order), GT rows, and their IoU / crowd IoU (IoD) matrices."""

    di: np.ndarray
    gi: np.ndarray
    iou: np.ndarray
    iod: np.ndarray


@dataclass
class Prepared:
    """Detections and GT as arrays plus per-image overlaps: computed once, reused for every threshold and size."""

    split: _Split
    images: list[_Image]
    max_dets: int


def prepare(gt: dict, detections: list[dict], max_dets: int = 100) -> Prepared:
    s = _arrays(gt, detections, max_dets)
    g_order = np.argsort(s.g_img, kind="stable")
    images = np.union1d(np.unique(s.d_img), np.unique(s.g_img))
    d_start, d_end = np.searchsorted(s.d_img, images, "left"), np.searchsorted(s.d_img, images, "right")
    g_sorted = s.g_img[g_order]
    g_start, g_end = np.searchsorted(g_sorted, images, "left"), np.searchsorted(g_sorted, images, "right")
    out = []
    for k in range(len(images)):
        di = np.arange(d_start[k], d_end[k])
        gi = g_order[g_start[k]:g_end[k]]
        d, g = s.d_box[di], s.g_box[gi]
        out.append(_Image(di, gi, pairwise_iou(d, g), pairwise_iod(d, g)))
    return Prepared(s, out, max_dets)


def _match_image(s: _Split, im: _Image, t: float, style: str, counted: np.ndarray, status: np.ndarray,
                 matched: np.ndarray) -> None:
    """Greedy matching of one image's detections (already in score order) at IoU threshold t."""
    di, gi, iou = im.di, im.gi, im.iou
    if len(gi) == 0 or len(di) == 0:
        return
    same = s.d_cls[di][:, None] == s.g_cls[gi][None, :]
    cnt = counted[gi]
    if style == "voc":
        # no fallback: each detection's target is fixed (its best same-class GT), so the first detection (in score
        # order) on each counted target is the TP and the rest are FP -- no sequential loop needed
        cand = np.where(same, iou, -1.0)
        j = cand.argmax(1)
        hit = cand[np.arange(len(di)), j] >= t
        status[di[hit & ~cnt[j]]] = _IGNORED
        k = np.flatnonzero(hit & cnt[j])
        first = k[np.unique(j[k], return_index=True)[1]]
        status[di[first]] = _TP
        matched[gi[j[first]]] = True
        return
    crowd = s.g_crowd[gi]
    ign_iou = np.where(crowd[None, :], im.iod, iou)
    cand_c = same & cnt[None, :] & (iou >= t)
    cand_i = same & ~cnt[None, :] & (ign_iou >= t)
    n_c, n_i = cand_c.sum(1), cand_i.sum(1)
    active = np.flatnonzero((n_c > 0) | (n_i > 0))
    if len(active) == 0:
        return
    # per detection, its candidates by descending overlap (first GT on ties); the greedy pass then only walks
    # short Python lists, and only for detections that can match anything at all
    order_c = np.argsort(np.where(cand_c[active], -iou[active], np.inf), axis=1, kind="stable")
    order_i = np.argsort(np.where(cand_i[active], -ign_iou[active], np.inf), axis=1, kind="stable")
    taken = [False] * len(gi)
    is_crowd = crowd.tolist()
    for r, k in enumerate(active.tolist()):
        j = next((j for j in order_c[r, :n_c[k]].tolist() if not taken[j]), None)
        if j is not None:
            taken[j] = True
            status[di[k]] = _TP
            continue
        j = next((j for j in order_i[r, :n_i[k]].tolist() if is_crowd[j] or not taken[j]), None)
        if j is not None:
            taken[j] = taken[j] or not is_crowd[j]  # a crowd region absorbs any number of detections
            status[di[k]] = _IGNORED
    matched[gi] = np.asarray(taken, dtype=bool) & cnt


def _classify_errors(s: _Split, im: _Image, t: float, t_b: float, counted: np.ndarray, status: np.ndarray,
                     target: np.ndarray, matched: np.ndarray) -> None:
    """TIDE's error type for every false positive of one image, against the image's counted GT."""
    rows = np.flatnonzero(status[im.di] == _PENDING)
    if len(rows) == 0:
        return
    fp = im.di[rows]
    cols = np.flatnonzero(counted[im.gi])
    if len(cols) == 0:
        status[fp] = _BKG
        return
    valid = im.gi[cols]
    iou = im.iou[np.ix_(rows, cols)]
    same = s.d_cls[fp][:, None] == s.g_cls[valid][None, :]
    used = matched[valid][None, :]
    r = np.arange(len(fp))
    same_iou = np.where(same, iou, 0.0)
    other_iou = np.where(~same, iou, 0.0)
    j_same, j_other = same_iou.argmax(1), other_iou.argmax(1)
    best_same, best_other = same_iou[r, j_same], other_iou[r, j_other]
    loc = (best_same >= t_b) & (best_same <= t)
    cls = ~loc & (best_other >= t)
    dupe = ~loc & ~cls & (np.where(same & used, iou, 0.0).max(1) >= t)
    bkg = ~loc & ~cls & ~dupe & (iou.max(1) <= t_b)
    status[fp] = np.select([loc, cls, dupe, bkg], [_LOC, _CLS, _DUPE, _BKG], default=_BOTH)
    target[fp] = np.select([loc, cls], [valid[j_same], valid[j_other]], default=-1)


def _evaluate(p: Prepared, cfg: TideConfig, area_range: tuple[float, float]) -> _Outcome:
    s = p.split
    lo, hi = area_range
    counted = ~s.g_ignore & (s.g_area >= lo) & (s.g_area <= hi)
    status = np.full(len(s.d_score), _PENDING, dtype=np.int64)
    target = np.full(len(s.d_score), -1, dtype=np.int64)
    matched = np.zeros(len(s.g_img), dtype=bool)
    d_area = area(s.d_box)
    for im in p.images:
        _match_image(s, im, cfg.pos_threshold, cfg.style, counted, status, matched)
        pending = im.di[status[im.di] == _PENDING]
        out = pending[(d_area[pending] < lo) | (d_area[pending] > hi)]
        status[out] = _IGNORED  # COCO: an unmatched detection outside the size bucket is not counted
        _classify_errors(s, im, cfg.pos_threshold, cfg.bg_threshold, counted, status, target, matched)
    return _Outcome(status, target, matched, counted)


# ---- the decomposition ---------------------------------------------------------------------------------------

def decompose(gt: dict | Prepared, detections: list[dict] | None = None, cfg: TideConfig = TideConfig(),
              size: str = "all") -> dict:
    """Base AP, per-type error counts and dAP (fractions) for a COCO GT dict and a COCO results list.

    `size` is one of AREA_RANGES ('all', 'small', 'medium', 'large'). Pass `prepare(gt, detections)` instead of
    the two to reuse the overlaps across thresholds and sizes.
    """
    if size not in AREA_RANGES:
        raise ValueError(f"unknown size bucket {size!r} (known: {', '.join(AREA_RANGES)})")
    p = gt if isinstance(gt, Prepared) else prepare(gt, detections, cfg.max_dets)
    if p.max_dets != cfg.max_dets:
        raise ValueError(f"prepared with max_dets={p.max_dets}, config says {cfg.max_dets}")
    return _summarise(p.split, _evaluate(p, cfg, AREA_RANGES[size]), cfg.style)


def _summarise(s: _Split, o: _Outcome, style: str) -> dict:
    keep = o.status != _IGNORED
    cls, score, status, target = s.d_cls[keep], s.d_score[keep], o.status[keep], o.target[keep]
    tp = status == _TP
    npos = {int(c): int(n) for c, n in zip(*np.unique(s.g_cls[o.counted], return_counts=True))}
    base = mean_ap(cls, score, tp, npos, style)

    # one fix per free GT: the highest-scoring Cls/Loc error that targets it (earliest on ties)
    fixable = ((status == _CLS) | (status == _LOC)) & (target >= 0)
    fixable &= ~o.matched[np.maximum(target, 0)]
    best = np.zeros(len(status), dtype=bool)
    cand = np.flatnonzero(fixable)
    if len(cand):
        order = cand[np.lexsort((cand, -score[cand], target[cand]))]
        first = np.r_[True, target[order][1:] != target[order][:-1]]
        best[order[first]] = True
    usable = np.zeros(len(s.g_img), dtype=bool)
    usable[target[fixable]] = True
    miss = o.counted & ~o.matched & ~usable
    unmatched_gt = o.counted & ~o.matched

    def ap_with(cls_=cls, keep_=None, tp_=tp, npos_=npos):
        k = np.ones(len(cls_), dtype=bool) if keep_ is None else keep_
        return mean_ap(cls_[k], score[k], tp_[k], npos_, style)

    def minus(gt_mask):
        n = dict(npos)
        for c, m in zip(*np.unique(s.g_cls[gt_mask], return_counts=True)):
            n[int(c)] -= int(m)
        return n

    fixed = {}
    for code, name in ((_CLS, "Cls"), (_LOC, "Loc")):
        is_type = status == code
        new_tp = tp | (is_type & best)
        new_cls = cls.copy()
        if code == _CLS:
            new_cls[is_type & best] = s.g_cls[target[is_type & best]]
        fixed[name] = ap_with(new_cls, ~(is_type & ~best), new_tp)
    for code, name in ((_BOTH, "Both"), (_DUPE, "Dupe"), (_BKG, "Bkg")):
        fixed[name] = ap_with(keep_=status != code)
    fixed["Miss"] = ap_with(npos_=minus(miss))
    special = {"FalsePos": ap_with(keep_=tp), "FalseNeg": ap_with(npos_=minus(unmatched_gt))}

    counts = {name: int(np.sum(status == code)) for code, name in
              ((_CLS, "Cls"), (_LOC, "Loc"), (_BOTH, "Both"), (_DUPE, "Dupe"), (_BKG, "Bkg"))}
    counts["Miss"] = int(miss.sum())
    nan = np.isnan(base)
    return {
        "AP": base,
        "dAP": {k: (np.nan if nan else max(fixed[k] - base, 0.0)) for k in ERROR_TYPES},
        "count": {k: counts[k] for k in ERROR_TYPES},
        "special": {k: (np.nan if nan else max(v - base, 0.0)) for k, v in special.items()},
        "n_tp": int(tp.sum()), "n_fp": int((~tp).sum()), "n_gt": int(sum(npos.values())),
    }


def decompose_range(gt: dict | Prepared, detections: list[dict] | None = None, cfg: TideConfig = TideConfig(),
                    size: str = "all", thresholds=None) -> dict:
    """Average of `decompose` over IoU thresholds (default COCO's .50:.05:.95) for AP@[.5:.95]-style numbers."""
    thresholds = np.linspace(0.5, 0.95, 10) if thresholds is None else thresholds
    p = gt if isinstance(gt, Prepared) else prepare(gt, detections, cfg.max_dets)
    runs = [decompose(p, None, replace(cfg, pos_threshold=float(t)), size) for t in thresholds]
    return {
        "AP": float(np.mean([r["AP"] for r in runs])),
        "dAP": {k: float(np.mean([r["dAP"][k] for r in runs])) for k in ERROR_TYPES},
        "count": {k: float(np.mean([r["count"][k] for r in runs])) for k in ERROR_TYPES},
        "special": {k: float(np.mean([r["special"][k] for r in runs])) for k in SPECIAL_TYPES},
        "n_tp": float(np.mean([r["n_tp"] for r in runs])), "n_fp": float(np.mean([r["n_fp"] for r in runs])),
        "n_gt": runs[0]["n_gt"],
    }


def decomposition_rows(gt: dict, detections: list[dict], cfg: TideConfig = TideConfig(),
                       sizes=("all", "small", "medium", "large"), styles=("coco", "voc"),
                       iou_range: bool = False) -> pd.DataFrame:
    """Long table: one row per (style, metric, size) with AP, dAP_<type>, n_<type> and the special dAPs."""
    rows = []
    p = prepare(gt, detections, cfg.max_dets)
    for style in styles:
        c = replace(cfg, style=style)
        variants = [(f"AP{int(round(cfg.pos_threshold * 100))}", lambda sz, c=c: decompose(p, None, c, sz))]
        if iou_range and style == "coco":
            variants.append(("AP", lambda sz, c=c: decompose_range(p, None, c, sz)))
        for metric, fn in variants:
            for sz in sizes:
                r = fn(sz)
                row = {"style": style, "metric": metric, "size": sz, "AP": r["AP"], "n_gt": r["n_gt"],
                       "n_tp": r["n_tp"], "n_fp": r["n_fp"]}
                row |= {f"dAP_{k}": v for k, v in r["dAP"].items()}
                row |= {f"n_{k}": v for k, v in r["count"].items()}
                row |= {f"dAP_{k}": v for k, v in r["special"].items()}
                rows.append(row)
    return pd.DataFrame(rows)
