"""Annotation-noise models beyond box geometry, the types the peer benchmarks use (UNA, DN-TOD): missing boxes,
bogus boxes, class flips. Each changed annotation is recorded (with its original box and class) by `make_noisy`'s
manifest, so the clean set stays recoverable, unlike UNA's and DN-TOD's files.

Counts are exact (floor(level x N) boxes, N = boxes the model may touch) and chosen by a prefix of one random
permutation, so with one seed a larger level changes a superset of the boxes a smaller level changes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.boxes import paired_iou
from benchmark.errors import BenchError
from benchmark.io import read_json
from noise.boxset import DECIMALS, BoxSet, pairs_by_image
from noise.registry import noise_model


def count_for(level: float, n: int) -> int:
    """floor(level * n), robust to binary fractions (0.3 * 10 is 3, not 2)."""
    return int(math.floor(float(level) * n + 1e-9))


def chosen(bs: BoxSet, level: float, rng, idx: np.ndarray | None = None, k: int | None = None) -> np.ndarray:
    """`k` (default floor(level x len(idx))) rows of `idx` (default: active rows), as a permutation prefix."""
    idx = bs.active_index() if idx is None else idx
    k = count_for(level, idx.size) if k is None else min(k, idx.size)
    return idx[rng.permutation(idx.size)[:k]]


@noise_model("missing", kind="label")
def missing(bs: BoxSet, level, rng):
    """Annotators miss objects: floor(level x N) random boxes are dropped (UNA / DN-TOD 'missing')."""
    rows = chosen(bs, level, rng)
    removed = bs.removed.copy()
    removed[rows] = True
    return bs.replace(removed=removed)


def _category_key(bs: BoxSet, key: Any, what: str) -> int:
    known = {str(int(c)): int(c) for c in bs.category_ids}
    known.update({str(n): int(c) for c, n in bs.category_names.items()})
    if str(key) not in known:
        raise BenchError(f"class_flip: unknown category {key!r} in {what} (known: {', '.join(sorted(known))})")
    return known[str(key)]


def confusion_matrix(bs: BoxSet, matrix: Any) -> np.ndarray:
    """Row-stochastic (C, C) matrix over `bs.category_ids` from {from: {to: weight}} (names or ids), a C x C
    list in category-id order, or a path to a JSON file holding either. Missing rows: uniform over other classes."""
    where = None
    if isinstance(matrix, (str, Path)):
        where = matrix
        matrix = read_json(matrix)
    ids = list(bs.category_ids)
    c = len(ids)
    out = np.full((c, c), np.nan)
    if isinstance(matrix, list):
        try:
            arr = np.asarray(matrix, dtype=np.float64) if matrix else np.zeros((0, 0))
        except (TypeError, ValueError):  # a ragged list, or a weight that is not a number
            raise BenchError(f"class_flip: matrix must be a {c} x {c} list of numbers (categories in id order)",
                             where) from None
        if arr.shape != (c, c):
            raise BenchError(f"class_flip: matrix must be {c} x {c} (categories in id order), got {arr.shape}", where)
        out = arr
    elif isinstance(matrix, dict):
        for src, row in matrix.items():
            i = ids.index(_category_key(bs, src, "matrix"))
            if not isinstance(row, dict):
                raise BenchError(f"class_flip: matrix row {src!r} must map target classes to weights", where)
            out[i] = 0.0
            for dst, wgt in row.items():
                if isinstance(wgt, bool) or not isinstance(wgt, (int, float)):
                    raise BenchError(f"class_flip: matrix weight {src!r} -> {dst!r} must be a number, got {wgt!r}",
                                     where)
                out[i, ids.index(_category_key(bs, dst, "matrix"))] = wgt
    else:
        raise BenchError("class_flip: matrix must be a mapping, a C x C list or a JSON file path", where)
    for i in range(c):
        if np.isnan(out[i]).all():
            out[i] = 1.0
            out[i, i] = 0.0
    if not np.isfinite(out).all() or (out < 0).any() or (out.sum(axis=1) <= 0).any():
        raise BenchError("class_flip: matrix weights must be finite, >= 0, with a positive sum per row", where)
    return out / out.sum(axis=1, keepdims=True)


@noise_model("class_flip", kind="label", max_inclusive=True, file_params=("matrix",))
def class_flip(bs: BoxSet, level, rng, matrix: Any = None):
    """Annotators pick the wrong class: floor(level x N) boxes relabelled, uniformly or by a confusion matrix.

    Uniformly among the other classes, or drawn from `matrix` (rows: true class, columns: given class)."""
    ids = bs.category_ids
    if ids.size < 2:
        raise BenchError("class_flip needs at least 2 categories")
    rows = chosen(bs, level, rng)
    cur = np.searchsorted(ids, bs.category[rows])
    if matrix is None:
        r = rng.integers(0, ids.size - 1, size=rows.size)
        new = ids[r + (r >= cur)]
    else:
        probs = confusion_matrix(bs, matrix)
        new = bs.category[rows].copy()
        for c in range(ids.size):  # fixed class order: the draw order does not depend on dict order
            members = np.flatnonzero(cur == c)
            if members.size:
                new[members] = ids[rng.choice(ids.size, size=members.size, p=probs[c])]
    category = bs.category.copy()
    category[rows] = new
    return bs.replace(category=category)


def max_iou_with_objects(bs: BoxSet, image: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """For each candidate box, its highest IoU with any clean box (any flag, even removed) on the same image."""
    known = np.flatnonzero(bs.image >= 0)
    ia, jb = pairs_by_image(image, bs.image[known])
    best = np.zeros(len(image))
    if ia.size:
        np.maximum.at(best, ia, paired_iou(xyxy[ia], bs.clean[known[jb]]))
    return best


def add_boxes(bs: BoxSet, image: np.ndarray, xyxy: np.ndarray, category: np.ndarray) -> BoxSet:
    return bs.replace(added_boxes=np.concatenate([bs.added_boxes, xyxy]),
                      added_image=np.concatenate([bs.added_image, image.astype(np.int64)]),
                      added_category=np.concatenate([bs.added_category, category.astype(np.int64)]))


@noise_model("bogus", kind="label")
def bogus(bs: BoxSet, level, rng, max_iou: float = 0.2, tries: int = 20):
    """Boxes where no object is: a `level` fraction of the result, sized like real boxes, random class.

    round(level x N / (1 - level)) boxes on random images, each overlapping every object by IoU < max_iou (redrawn
    up to `tries` times; the rest are kept and counted as `bogus_overlapping`)."""
    if not (isinstance(max_iou, (int, float)) and 0 < max_iou <= 1):
        raise BenchError(f"bogus: max_iou must be in (0, 1], got {max_iou!r}")
    if not (isinstance(tries, int) and tries >= 1):
        raise BenchError(f"bogus: tries must be an integer >= 1, got {tries!r}")
    idx = bs.active_index()
    m = round(float(level) * idx.size / (1 - float(level))) if idx.size else 0
    if m == 0:
        return bs
    img = rng.integers(0, len(bs.image_size), size=m)
    like = idx[rng.integers(0, idx.size, size=m)]
    size = bs.image_size[img]
    bw = np.clip(bs.clean[like, 2] - bs.clean[like, 0], 1.0, np.maximum(size[:, 0] - 1, 1.0))
    bh = np.clip(bs.clean[like, 3] - bs.clean[like, 1], 1.0, np.maximum(size[:, 1] - 1, 1.0))
    out = np.zeros((m, 4))
    todo = np.arange(m)
    for _ in range(tries):
        x1 = rng.random(todo.size) * np.maximum(size[todo, 0] - 1 - bw[todo], 0.0)
        y1 = rng.random(todo.size) * np.maximum(size[todo, 1] - 1 - bh[todo], 0.0)
        cand = np.stack([x1, y1, x1 + bw[todo], y1 + bh[todo]], axis=1)
        if bs.mode == "numpy":
            cand = np.round(cand, DECIMALS)
        out[todo] = cand
        ok = max_iou_with_objects(bs, img[todo], cand) < max_iou
        todo = todo[~ok]
        if todo.size == 0:
            break
    if todo.size:
        bs = bs.with_note("bogus_overlapping", todo.size)
    category = bs.category_ids[rng.integers(0, bs.category_ids.size, size=m)]
    return add_boxes(bs, img, out, category)
