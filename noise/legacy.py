"""`rng="oamil-legacy"`: regenerate the exact boxes OA-MIL's published generator wrote.

What the published scripts (`utils/gen_noisy_coco.py`, `utils/gen_noisy_voc.py`, cxliu0/OA-MIL) do, reproduced here
without their code:
- one legacy `RandomState` seeded 45, four scalar `uniform(-r, r)` draws per box in the order x-shift, y-shift,
  w-scale, h-scale; images in file order (`getImgIds()` / `trainval.txt`), boxes in file order within an image. One
  vectorised `uniform(-r, r, (n, 4))` reads exactly the same stream.
- only boxes that survive mmdet 2.x's parser are drawn for (see `noise.boxset`); crowd / difficult boxes spend nothing.
- VOC: coordinates go through `int(float(v))` and then -1 on all four (mmdet 2.x), so x2 = xmax - 1; the suite's VOC
  convention is x1 = xmin - 1, x2 = xmax, so the noisy box is computed in mmdet's frame and shifted back by +1 on
  x2 / y2. Its values in mmdet's frame are those of OA-MIL's pkl.
- arithmetic: boxes are float32; `x1 + x2` and `x2 - x1` are float32 operations, but every product with a Python float
  (the draws) was float64 under the authors' NumPy 1.x, and so is everything after it; the result is rounded to
  float32 once, when stored. NumPy >= 2 (NEP 50) keeps those products in float32, so running the published script
  today can differ from the authors' files in the last bits (and, rarely, in a clip or keep-clean decision). We
  reproduce the NumPy 1.x arithmetic explicitly, whatever NumPy is installed.
- degenerate result (x2 <= x1 or y2 <= y1, compared in float64): the script appends the box it read (mmdet's parse,
  float32, *not* clipped to the image), and its draws are still used. Where that box lay inside its image it equals
  the suite's clean box and the row keeps it; where it extended past the border (the loader clipped the clean copy)
  the written box is the unclipped one, as in the published files.
The written box is that float32 value, losslessly (no decimal rounding), so `float32(x + w)` gives the pkl's x2.
"""

from __future__ import annotations

import numpy as np

from noise.boxset import BoxSet

LEGACY_SEED = 45
F32, F64 = np.float32, np.float64


def legacy_order(bs: BoxSet) -> np.ndarray:
    """Eligible rows in the order the published script visits them: image order, then file order."""
    idx = bs.active_index()
    image = bs.image[idx]
    if image.size < 2 or bool((image[1:] >= image[:-1]).all()):  # already grouped in image order
        return idx
    return idx.take(stable_order(image))


def stable_order(values: np.ndarray) -> np.ndarray:
    """`np.argsort(values, kind="stable")` for non-negative int64 values below 2**32, as two 16-bit radix passes
    (NumPy radix-sorts 16-bit integers: ~3x faster than its stable sort of int64 on COCO train's 860 k rows)."""
    if values.size and (int(values.min()) < 0 or int(values.max()) >= 2 ** 32):
        return np.argsort(values, kind="stable")
    low = np.argsort((values & 0xFFFF).astype(np.uint16), kind="stable")
    high = (values >> 16).astype(np.uint16)[low]
    return low.take(np.argsort(high, kind="stable"))


def _stream_positions(bs: BoxSet, order: np.ndarray) -> np.ndarray:
    """Where each row of `order` draws in a stream that also holds `bs.legacy_slots` (dropped boxes drawn for in
    file order): sort rows and slots by (image, position in the image's file order), a slot before the annotation
    that followed it in the file."""
    n = len(bs)
    rank = np.zeros(n, np.int64)  # an annotation's position among its image's annotations, file order
    by_image = np.argsort(bs.image, kind="stable")
    img_sorted = bs.image[by_image]
    starts = np.searchsorted(img_sorted, img_sorted, side="left")
    rank[by_image] = np.arange(n) - starts
    slots = bs.legacy_slots
    image = np.concatenate([bs.image[order], slots[:, 0]])
    key = np.concatenate([2 * rank[order] + 1, 2 * slots[:, 1]])
    stream = np.lexsort((np.arange(image.size), key, image))  # stream position -> entry
    position = np.empty(image.size, np.int64)
    position[stream] = np.arange(image.size)
    return position[:order.size]


def mmdet_columns(bs: BoxSet, idx: np.ndarray) -> tuple[np.ndarray, ...]:
    """x1, y1, x2, y2 (float32) as mmdet 2.x's parser would have produced them for rows `idx`."""
    src = bs.rows(bs.source_xywh, idx)
    x, y, w, h = src[:, 0], src[:, 1], src[:, 2], src[:, 3]
    if bs.layout == "voc":  # suite: x1 = xmin - 1, x2 = xmax  ->  mmdet: int(xmin) - 1, int(xmax) - 1
        cols = (np.trunc(x + 1) - 1, np.trunc(y + 1) - 1, np.trunc(x + w) - 1, np.trunc(y + h) - 1)
    else:
        cols = (x, y, x + w, y + h)
    return tuple(c.astype(F32) for c in cols)


def mmdet_boxes(bs: BoxSet, idx: np.ndarray) -> np.ndarray:
    """`mmdet_columns` as an (n, 4) float32 array (one box per row, for per-box loops)."""
    return np.stack(mmdet_columns(bs, idx), axis=1)


def legacy_uniform(bs: BoxSet, gamma: float, rs: np.random.RandomState) -> BoxSet:
    idx = bs.active_index()  # file order; the draws are made in `legacy_order` and moved to these rows
    if idx.size == 0 or gamma <= 0:  # the script skips perturbation entirely at level 0
        return bs
    order = legacy_order(bs)
    draws = rs.uniform(-gamma, gamma, size=(idx.size + len(bs.legacy_slots), 4))
    if len(bs.legacy_slots):
        draws = draws[_stream_positions(bs, order)]
    if np.array_equal(order, idx):
        u = draws
    else:  # each row's position in the stream, then one gather (3x faster than scattering the draws)
        position = np.empty(len(bs), np.int64)
        position[order] = np.arange(order.size)
        u = draws.take(position[idx], axis=0)
    x1, y1, x2, y2 = mmdet_columns(bs, idx)
    w, h = (x2 - x1).astype(F64), (y2 - y1).astype(F64)  # float32 subtraction, as in the script
    cx, cy = (x1 + x2).astype(F64), (y1 + y2).astype(F64)  # float32 sum, float64 halving (NumPy 1.x)
    cx /= 2
    cy /= 2
    # cx + w * u0, cy + h * u1, w * (u2 + 1) / 2, h * (u3 + 1) / 2, computed in place (IEEE + and * commute,
    # halving is exact: the same bits as the script's expressions, with fewer temporaries)
    ncx, ncy = np.multiply(w, u[:, 0]), np.multiply(h, u[:, 1])
    ncx += cx
    ncy += cy
    half_w, half_h = np.add(u[:, 2], 1.0), np.add(u[:, 3], 1.0)
    half_w *= w
    half_h *= h
    half_w /= 2
    half_h /= 2
    img_w, img_h = bs.image_wh(idx)
    lo_x, lo_y = ncx - half_w, ncy - half_h
    hi_x, hi_y = ncx + half_w, ncy + half_h
    out = np.empty((idx.size, 4), order="F")
    out[:, 0] = np.where(lo_x > 0, lo_x, 0.0)  # Python max(0, v)
    out[:, 1] = np.where(lo_y > 0, lo_y, 0.0)
    out[:, 2] = np.where(img_w - 1 < hi_x, img_w - 1, hi_x)  # Python min(v, W - 1)
    out[:, 3] = np.where(img_h - 1 < hi_y, img_h - 1, hi_y)
    bad = (out[:, 2] <= out[:, 0]) | (out[:, 3] <= out[:, 1])
    clipped = (out[:, 0] != lo_x) | (out[:, 1] != lo_y) | (out[:, 2] != hi_x) | (out[:, 3] != hi_y)
    # a collapsed box is replaced by the box as read; where the loader clipped the clean copy that box differs
    unclipped = bad & _read_unclipped(bs, idx)
    if unclipped.any():
        out[unclipped] = np.stack([x1, y1, x2, y2], axis=1)[unclipped]
    out = out.astype(F32, order="F").astype(F64, order="F")
    if bs.layout == "voc":
        out[:, 2:] += 1.0  # back to the suite's VOC frame (x2 = xmax)
    keep = bad & ~unclipped
    out_bs = bs.commit(idx, out, clipped & ~bad, keep)
    if not unclipped.any():
        return out_bs
    collapsed = out_bs.collapsed.copy()
    collapsed[idx[unclipped]] = True
    return out_bs.replace(collapsed=collapsed).with_note("kept_unclipped_source", int(unclipped.sum()))


def _read_unclipped(bs: BoxSet, idx: np.ndarray) -> np.ndarray:
    """Rows of `idx` whose box as the file had it (`source_xywh`) differs from the loader's clean copy, i.e. the
    loader clipped it to the image."""
    src = bs.rows(bs.source_xywh, idx)
    read = np.stack([src[:, 0], src[:, 1], src[:, 0] + src[:, 2], src[:, 1] + src[:, 3]], axis=1)
    return (read != bs.rows(bs.clean, idx)).any(axis=1)
