"""Box geometry on numpy arrays: conversions, areas, pairwise overlaps, COCO size buckets.

Every report statistic (failure modes, TIDE matching, realised-noise IoU) goes through these few functions so all of
them agree on conventions: boxes are continuous-coordinate xyxy (COCO `[x, y, w, h]` converted with `x2 = x + w`,
no "+1"), and an overlap with a zero-area box is 0, never NaN.
"""

from __future__ import annotations

import numpy as np

from benchmark.datasets.core import is_ignored  # noqa: F401  (re-exported: no report statistic counts them)

# COCO size buckets by area in pixels: small < 32^2 <= medium < 96^2 <= large
SIZE_BUCKETS = ("small", "medium", "large")
SMALL_MAX_AREA = 32.0**2
MEDIUM_MAX_AREA = 96.0**2


def as_xyxy(xywh) -> np.ndarray:
    """(N, 4) COCO `[x, y, w, h]` -> (N, 4) float64 `[x1, y1, x2, y2]`."""
    b = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def as_xywh(xyxy) -> np.ndarray:
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def area(xyxy: np.ndarray) -> np.ndarray:
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise intersection area of two equally shaped (..., 4) xyxy arrays."""
    w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def overlaps(d: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Element-wise (IoU, IoG, IoD) of paired boxes D and G: I/(D+G-I), I/G, I/D (0 where a denominator is 0)."""
    d = np.asarray(d, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    inter = intersection(d, g)
    ad = np.clip(d[..., 2] - d[..., 0], 0, None) * np.clip(d[..., 3] - d[..., 1], 0, None)
    ag = np.clip(g[..., 2] - g[..., 0], 0, None) * np.clip(g[..., 3] - g[..., 1], 0, None)
    return _ratio(inter, ad + ag - inter), _ratio(inter, ag), _ratio(inter, ad)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU matrix between xyxy box sets."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return overlaps(a[:, None, :], b[None, :, :])[0]


def pairwise_iod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over the area of `a` (COCO's crowd IoU: a detection inside a crowd region scores 1)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return overlaps(a[:, None, :], b[None, :, :])[2]


def paired_iou(a, b) -> np.ndarray:
    """IoU of row i of `a` with row i of `b` (xyxy)."""
    return overlaps(np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4))[0]


def size_bucket(areas) -> np.ndarray:
    """COCO size bucket name per area (object array of 'small' / 'medium' / 'large')."""
    a = np.asarray(areas, dtype=np.float64)
    idx = (a >= SMALL_MAX_AREA).astype(int) + (a >= MEDIUM_MAX_AREA).astype(int)
    return np.asarray(SIZE_BUCKETS, dtype=object)[idx]


def group_ranges(sorted_keys: np.ndarray, query_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query key, the [start, end) slice of `sorted_keys` holding that key (empty when absent)."""
    start = np.searchsorted(sorted_keys, query_keys, side="left")
    end = np.searchsorted(sorted_keys, query_keys, side="right")
    return start, end


def expand_ranges(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten ranges: (owner row of each element, element index) for every i and every k in [start_i, end_i)."""
    counts = (end - start).astype(np.int64)
    rows = np.repeat(np.arange(len(start)), counts)
    offsets = np.cumsum(counts) - counts
    cols = np.arange(counts.sum()) - np.repeat(offsets, counts) + np.repeat(start, counts)
    return rows, cols.astype(np.int64)
