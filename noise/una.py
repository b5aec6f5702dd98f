"""`una`: the UNA benchmark's mixed protocol (Ryoo72/UNA, arXiv 2312.13822), reimplemented from its description.

At ratio r with N boxes (N counted once, before any stage), in this order:
1. missing: floor(r N) random boxes are dropped;
2. localisation: floor(r N) of the remaining boxes get x1, x2 drawn independently from U[x - w/2, x + 3w/2] and
   sorted (y likewise), rounded to 0.01, clipped to [0, W] x [0, H]; a result with w or h < 1e-5 becomes the
   central half of the clean box. A heavy corruption, not a jitter;
3. class: floor(r N) of the remaining boxes get a class drawn uniformly over *all* classes (so the true class can be
   drawn again: the effective flip rate is r (1 - 1/C));
4. bogus: round(r N / (1 - r)) boxes with uniformly random corners and a random class, assigned round-robin over the
   images in file order.
r is limited to [0, 0.5]: beyond it, missing + localisation ask for more boxes than there are (UNA uses 0.05-0.4).
Differences from UNA's script, on purpose: crowd / difficult boxes are left alone (UNA also perturbs them), one
numpy Generator replaces Python's `random` with four fixed seeds (so the files are not UNA's files, the protocol is),
and every removed / relabelled / added box is recorded in the manifest (UNA keeps only flags).
"""

from __future__ import annotations

import numpy as np

from noise.boxset import DECIMALS, BoxSet
from noise.labels import add_boxes, chosen, count_for
from noise.registry import noise_model


def _una_localise(bs: BoxSet, rows: np.ndarray, rng) -> BoxSet:
    b = bs.boxes[rows]
    x, y, w, h = b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    u = rng.random((rows.size, 4))
    xs = np.sort(np.stack([x - w / 2 + 2 * w * u[:, 0], x - w / 2 + 2 * w * u[:, 1]], axis=1), axis=1)
    ys = np.sort(np.stack([y - h / 2 + 2 * h * u[:, 2], y - h / 2 + 2 * h * u[:, 3]], axis=1), axis=1)
    img_w, img_h = bs.image_wh(rows)
    raw = np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)
    out = np.round(raw, DECIMALS)
    out = np.minimum(np.maximum(out, 0.0), np.stack([img_w, img_h, img_w, img_h], axis=1))
    clipped = (out != np.round(raw, DECIMALS)).any(axis=1)
    tiny = (np.round(out[:, 2] - out[:, 0], DECIMALS) < 1e-5) | (np.round(out[:, 3] - out[:, 1], DECIMALS) < 1e-5)
    half = np.round(np.stack([x + w / 4, y + h / 4, x + 3 * w / 4, y + 3 * h / 4], axis=1), DECIMALS)
    out[tiny] = half[tiny]
    bs = bs.with_note("una_central_half", int(tiny.sum()))
    return bs.commit(rows, out + 0.0, clipped & ~tiny, np.zeros(rows.size, bool))


@noise_model("una", kind="mixed", max_level=0.5, max_inclusive=True)  # beyond 0.5 the stages run out of boxes
def una(bs: BoxSet, level, rng):
    """UNA's mixed protocol (peer benchmark): missing, heavy localisation, class and bogus noise, each at ratio r."""
    n0 = bs.active_index().size
    k = count_for(level, n0)
    # 1. missing
    removed = bs.removed.copy()
    removed[chosen(bs, level, rng, k=k)] = True
    bs = bs.replace(removed=removed)
    # 2. localisation
    rows = chosen(bs, level, rng, k=k)
    if rows.size:
        bs = _una_localise(bs, rows, rng)
    # 3. class, uniform over all classes
    rows = chosen(bs, level, rng, k=k)
    category = bs.category.copy()
    category[rows] = bs.category_ids[rng.integers(0, bs.category_ids.size, size=rows.size)]
    bs = bs.replace(category=category)
    # 4. bogus, round-robin over images
    m = round(float(level) * n0 / (1 - float(level))) if n0 else 0
    if m:
        img = np.arange(m) % len(bs.image_size)
        size = bs.image_size[img]
        u = rng.random((m, 4))
        xs = np.sort(np.round(u[:, :2] * size[:, :1], DECIMALS), axis=1)
        ys = np.sort(np.round(u[:, 2:] * size[:, 1:], DECIMALS), axis=1)
        boxes = np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)
        bs = add_boxes(bs, img, boxes, bs.category_ids[rng.integers(0, bs.category_ids.size, size=m)])
    return bs
