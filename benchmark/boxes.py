"""Box geometry on numpy arrays, one set of rules for the whole suite: conversions, areas, IoU, COCO size buckets.

The noise (generation, `bench noise stats`, the manifest) and the reports (realised IoU, failure modes, TIDE) all go
through these functions, so a figure the report prints equals the one the noise tools print. (Torch code in
`methods/` uses `torchvision.ops`; VOC AP50 keeps mmdet's float32 `bbox_overlaps`, which it reproduces exactly.)

Conventions:
- boxes are continuous-coordinate, float64; COCO `[x, y, w, h]` <-> `[x1, y1, x2, y2]` with `x2 = x + w` (no "+1");
- area = max(w, 0) * max(h, 0): a box with w <= 0 or h <= 0 is *degenerate* and has area 0;
- IoU = area(A n B) / area(A u B); IoG = area(A n B) / area(G); IoD = area(A n B) / area(D).
- The degenerate-box rule (one rule, for all three ratios): **a box overlaps itself fully** -- two boxes with the
  same four coordinates have IoU (and IoG, IoD) 1, even zero-area ones (as the Jaccard index of two empty sets is
  1); any other pair whose denominator is 0 gets 0. Never NaN (a NaN coordinate gives 0).
  Why: realised noise compares each noisy box with its clean box. A zero-area box the noise leaves alone (it is
  never eligible) is unchanged and must count as IoU 1, not as a box moved off its object. COCOeval
  (`maskApi.bbIou`) and mmdet give 0 for two identical zero-area boxes; in evaluation the rules differ only for a
  detection equal, to the last bit, to a zero-area ground-truth box.
- COCO size of a box by area: small < 32^2 <= medium < 96^2 <= large (`size_bucket`). COCOeval's per-size AP
  ranges (`COCO_AREA_RANGES`, its `Params.areaRng`) are closed intervals: an area of exactly 32^2 or 96^2 counts in
  both neighbouring ranges there.
"""

from __future__ import annotations

import numpy as np

SIZE_BUCKETS = ("small", "medium", "large")
SMALL_MAX_AREA = 32.0**2  # small: area < 32^2
MEDIUM_MAX_AREA = 96.0**2  # medium: 32^2 <= area < 96^2; large: area >= 96^2
COCO_MAX_AREA = 1e10  # COCOeval's upper bound (1e5 ** 2)
# COCOeval's `Params.areaRng` for bbox, closed at both ends
COCO_AREA_RANGES = {"all": (0.0, COCO_MAX_AREA), "small": (0.0, SMALL_MAX_AREA),
                    "medium": (SMALL_MAX_AREA, MEDIUM_MAX_AREA), "large": (MEDIUM_MAX_AREA, COCO_MAX_AREA)}


def _boxes(b) -> np.ndarray:
    return np.asarray(b, dtype=np.float64).reshape(-1, 4)


def xywh_to_xyxy(xywh) -> np.ndarray:
    """(N, 4) COCO `[x, y, w, h]` -> (N, 4) float64 `[x1, y1, x2, y2]`."""
    b = _boxes(xywh)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_xywh(xyxy) -> np.ndarray:
    """(N, 4) `[x1, y1, x2, y2]` -> (N, 4) float64 COCO `[x, y, w, h]`."""
    b = _boxes(xyxy)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def area(xyxy) -> np.ndarray:
    """(N,) areas of xyxy boxes; 0 for a degenerate box (w <= 0 or h <= 0)."""
    return _area(_boxes(xyxy))


def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise intersection area of two broadcastable (..., 4) xyxy arrays."""
    w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _ratio(num: np.ndarray, den: np.ndarray, same: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    out[same] = 1.0
    return out


def overlaps(d, g) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Element-wise (IoU, IoG, IoD) of broadcastable (..., 4) xyxy boxes D and G: I/(D+G-I), I/G, I/D, with the
    module's degenerate-box rule (identical boxes: 1; any other zero denominator: 0)."""
    d = np.asarray(d, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    inter = intersection(d, g)
    ad, ag = _area(d), _area(g)
    same = np.broadcast_to((d == g).all(axis=-1), inter.shape)
    return _ratio(inter, ad + ag - inter, same), _ratio(inter, ag, same), _ratio(inter, ad, same)


def paired_iou(a, b) -> np.ndarray:
    """(N,) IoU of row i of `a` with row i of `b` (xyxy)."""
    return overlaps(_boxes(a), _boxes(b))[0]


AXES = ("x", "y", "w", "h")


def relative_error(boxes, ref) -> tuple[np.ndarray, np.ndarray]:
    """((N, 4) error of row i of `boxes` against row i of `ref` (xyxy) along `AXES`, (N,) valid).

    x, y: centre offset over the reference's width / height; w, h: log of the size ratio (0.05 = 5 % larger). A mean
    IoU mixes where a box is wrong; these say whether a box set is off-centre or mis-sized, and whether systematically
    (the mean) or at random (the spread). Rows where either box is degenerate have no log ratio: `valid` is False and
    their errors are 0."""
    b, r = _boxes(boxes), _boxes(ref)
    bw, bh = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    rw, rh = r[..., 2] - r[..., 0], r[..., 3] - r[..., 1]
    valid = (bw > 0) & (bh > 0) & (rw > 0) & (rh > 0)
    safe = lambda v: np.where(valid, v, 1.0)  # noqa: E731 -- one guard for the four ratios
    err = np.stack([((b[..., 0] + b[..., 2]) - (r[..., 0] + r[..., 2])) / (2 * safe(rw)),
                    ((b[..., 1] + b[..., 3]) - (r[..., 1] + r[..., 3])) / (2 * safe(rh)),
                    np.log(safe(bw) / safe(rw)), np.log(safe(bh) / safe(rh))], axis=-1)
    return np.where(valid[..., None], err, 0.0), valid


def pairwise_iou(a, b) -> np.ndarray:
    """(N, M) IoU matrix between xyxy box sets."""
    return overlaps(_boxes(a)[:, None, :], _boxes(b)[None, :, :])[0]


def pairwise_iod(a, b) -> np.ndarray:
    """(N, M) intersection over the area of `a` (COCO's crowd IoU: a detection inside a crowd region scores 1)."""
    return overlaps(_boxes(a)[:, None, :], _boxes(b)[None, :, :])[2]


def size_groups(areas) -> dict[str, np.ndarray]:
    """{"all", "small", "medium", "large"}: boolean masks of the areas in each COCO size bucket (a NaN area is in
    "all" only)."""
    a = np.asarray(areas, dtype=np.float64)
    return {"all": np.ones(a.shape, bool), "small": a < SMALL_MAX_AREA,
            "medium": (a >= SMALL_MAX_AREA) & (a < MEDIUM_MAX_AREA), "large": a >= MEDIUM_MAX_AREA}


def size_bucket(areas) -> np.ndarray:
    """COCO size bucket name per area: object array of 'small' (< 32^2), 'medium' (< 96^2), 'large' (None for a
    NaN area, which is in no bucket)."""
    groups = size_groups(areas)
    out = np.full(groups["all"].shape, None, dtype=object)
    for name in SIZE_BUCKETS:
        out[groups[name]] = name
    return out
