"""`BoxSet`: a dataset's annotations as numpy arrays, extracted once, perturbed vectorised, written back once.

Noise models work on these arrays, never on the dataset's dicts: a per-box Python loop over COCO train2017's 860k
boxes takes ~20 s, the same work on arrays well under a second. Rows are the dataset's annotations in file order;
boxes added by a model (bogus boxes) live in the `added_*` arrays.

Which boxes a model may touch (`eligible`):
- `numpy` mode: every non-ignored box (not crowd / difficult / `ignore`) on a known image with w > 0 and h > 0.
- `oamil-legacy` mode, COCO layout: what mmdet 2.x's `CocoDataset._parse_ann_info` keeps as a training box in
  OA-MIL's generator: not `ignore`, not crowd, overlapping the image, `area` > 0, w >= 1 and h >= 1, known category.
- `oamil-legacy` mode, VOC layout: every non-difficult box on a known image with a known category (OA-MIL's VOC
  parser filters nothing else; zero-size boxes are drawn for and then kept clean).
Everything else is left exactly as it is and spends no random draws.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter, methodcaller

import numpy as np

from benchmark.datasets.core import is_ignored, rows_by_id
from benchmark.errors import BenchError

# The OA-MIL clip bound: x2 <= W - 1, y2 <= H - 1 (and x1, y1 >= 0).
EDGE_OFFSET = 1.0
# Noisy boxes of the default (`numpy`) mode are written with this many decimals (0.01 px): files stay small and
# byte-identical across machines even where a distribution uses libm (exp/log) whose last bit may vary.
DECIMALS = 2


@dataclass(frozen=True)
class BoxSet:
    source_xywh: np.ndarray  # (N, 4) float64, the annotations' `bbox` (`oamil-legacy`: as the file had it, unclipped)
    source_area: np.ndarray  # (N,) float64, the annotations' `area` (w * h where missing)
    clean: np.ndarray  # (N, 4) float64 xyxy clean boxes (suite convention: x2 = x + w)
    boxes: np.ndarray  # (N, 4) float64 xyxy current (noisy) boxes
    image: np.ndarray  # (N,) int64 index into `image_size` (-1: unknown image)
    clean_category: np.ndarray  # (N,) int64
    category: np.ndarray  # (N,) int64 current category ids
    ignored: np.ndarray  # (N,) bool crowd / difficult / ignore
    eligible: np.ndarray  # (N,) bool a model may change this annotation
    removed: np.ndarray  # (N,) bool dropped by a model
    clipped: np.ndarray  # (N,) bool a proposal was clipped to the image
    collapsed: np.ndarray  # (N,) bool a proposal collapsed and the previous box was kept
    image_size: np.ndarray  # (n_images, 2) float64 width, height
    box_size: np.ndarray  # (N, 2) float64 width, height of each row's image (0 where unknown)
    category_ids: np.ndarray  # sorted known category ids
    mode: str = "numpy"  # "numpy" | "oamil-legacy"
    layout: str = "coco"  # "coco" | "voc": which legacy parser the dataset came through
    added_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    added_image: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    added_category: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    notes: dict = field(default_factory=dict)  # model-specific counts (e.g. imported_unmatched)
    category_names: dict = field(default_factory=dict)  # category id -> name
    image_ids: list = field(default_factory=list)  # image id per row of `image_size`
    # `oamil-legacy` VOC: draws spent on boxes the loader dropped, (k, 2) int64 [image row, annotations of that
    # image before the slot] (see `benchmark.datasets.voc.LEGACY_DRAW_SLOTS`)
    legacy_slots: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))

    # ---- views -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def active(self) -> np.ndarray:
        """Boxes a model may still change: eligible and not removed."""
        return self.eligible & ~self.removed

    def active_index(self) -> np.ndarray:
        return np.flatnonzero(self.active)

    def is_all(self, idx: np.ndarray) -> bool:
        """`idx` is every row in order (the common case): models then skip gathers and scatters."""
        n = len(self.boxes)
        return idx.size == n and (n == 0 or (idx[0] == 0 and idx[-1] == n - 1 and bool((np.diff(idx) == 1).all())))

    def rows(self, arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return arr if self.is_all(idx) else arr.take(idx, axis=0)  # take: ~2x faster than fancy indexing

    def image_wh(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = self.rows(self.box_size, idx)
        return size[:, 0], size[:, 1]

    def replace(self, **changes) -> BoxSet:
        return dataclasses.replace(self, **changes)

    def with_note(self, key: str, count: int) -> BoxSet:
        notes = dict(self.notes)
        notes[key] = notes.get(key, 0) + int(count)
        return self.replace(notes=notes)

    # ---- the one way a geometric model changes boxes ----------------------------------------------------
    def propose(self, idx: np.ndarray, xyxy: np.ndarray) -> BoxSet:
        """Clip proposed boxes for rows `idx` to [0, W-1] x [0, H-1]; where the result collapses (x2 <= x1 or
        y2 <= y1, or not finite) keep the current box. `numpy` mode rounds to `DECIMALS` before the check, so the
        written box is the checked one."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0:
            return self
        xyxy = np.asarray(xyxy, dtype=np.float64)
        all_rows = self.is_all(idx)
        size = self.box_size if all_rows else self.box_size[idx]
        x_max, y_max = size[:, 0] - EDGE_OFFSET, size[:, 1] - EDGE_OFFSET
        clipped = (xyxy[:, 0] < 0) | (xyxy[:, 1] < 0) | (xyxy[:, 2] > x_max) | (xyxy[:, 3] > y_max)
        out = np.empty_like(xyxy)
        np.maximum(xyxy[:, 0], 0.0, out=out[:, 0])
        np.maximum(xyxy[:, 1], 0.0, out=out[:, 1])
        np.minimum(xyxy[:, 2], x_max, out=out[:, 2])
        np.minimum(xyxy[:, 3], y_max, out=out[:, 3])
        if self.mode == "numpy":
            out *= 10.0 ** DECIMALS  # np.round(out, DECIMALS), in place
            np.rint(out, out=out)
            out /= 10.0 ** DECIMALS
        out += 0.0  # -0.0 -> 0.0, so files never hold "-0.0"
        bad = (out[:, 2] <= out[:, 0]) | (out[:, 3] <= out[:, 1]) | ~np.isfinite(out.sum(axis=1))
        return self.commit(idx, out, clipped & ~bad, bad, all_rows)

    def commit(self, idx: np.ndarray, xyxy: np.ndarray, clipped: np.ndarray, bad: np.ndarray,
               all_rows: bool | None = None) -> BoxSet:
        """Store already-checked boxes: rows where `bad` keep their current box and are marked collapsed."""
        if all_rows is None:
            all_rows = self.is_all(idx)
        if all_rows:
            boxes = np.where(bad[:, None], self.boxes, xyxy) if bad.any() else xyxy
            return self.replace(boxes=boxes, clipped=self.clipped | clipped, collapsed=self.collapsed | bad)
        boxes = self.boxes.copy(order="K")
        if bad.any():
            good = ~bad
            boxes[idx[good]] = xyxy[good]
        else:  # the usual case: one plain scatter, ~3x faster than through a mask
            boxes[idx] = xyxy
        clip = self.clipped.copy()
        clip[idx[clipped]] = True
        coll = self.collapsed.copy()
        coll[idx[bad]] = True
        return self.replace(boxes=boxes, clipped=clip, collapsed=coll)

    # ---- helpers shared by models ---------------------------------------------------------------------------
    def sizes(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Centre x, centre y, width, height of the current boxes `idx`."""
        b = self.rows(self.boxes, idx)
        return (b[:, 0] + b[:, 2]) * 0.5, (b[:, 1] + b[:, 3]) * 0.5, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]


def columns(*cols: np.ndarray) -> np.ndarray:
    """An (n, k) array stored column by column (Fortran order): models work on whole columns (x1, y1, ...), which
    are then contiguous; on COCO train this halves the kernel time against row-major boxes."""
    out = np.empty((np.size(cols[0]), len(cols)), order="F")
    for i, c in enumerate(cols):
        out[:, i] = c
    return out


def from_centre(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """(n, 4) xyxy boxes (column-major) from centres and sizes."""
    out = np.empty((np.size(cx), 4), order="F")
    hw, hh = w * 0.5, h * 0.5
    np.subtract(cx, hw, out=out[:, 0])
    np.subtract(cy, hh, out=out[:, 1])
    np.add(cx, hw, out=out[:, 2])
    np.add(cy, hh, out=out[:, 3])
    return out


def pairs_by_image(image_a: np.ndarray, image_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with image_a[i] == image_b[j], vectorised (a ragged join through a sort of `image_b`)."""
    image_a = np.asarray(image_a, np.int64)
    image_b = np.asarray(image_b, np.int64)
    if image_a.size == 0 or image_b.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(image_b, kind="stable")
    sorted_b = image_b[order]
    start = np.searchsorted(sorted_b, image_a, side="left")
    stop = np.searchsorted(sorted_b, image_a, side="right")
    counts = stop - start
    total = int(counts.sum())
    ia = np.repeat(np.arange(image_a.size), counts)
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    jb = order[np.repeat(start, counts) + within]
    return ia, jb


def _image_rows(images: list, anns: list) -> np.ndarray:
    """Row in `images` of each annotation's image (-1: unknown). Integer ids go through a sorted search
    (`rows_by_id`); other ids through a dict."""
    n = len(anns)
    try:
        ids = np.fromiter(map(itemgetter("id"), images), np.int64, len(images))
        wanted = np.fromiter(map(itemgetter("image_id"), anns), np.int64, n)
    except (TypeError, ValueError, OverflowError):
        index = _IndexOrMinusOne()
        for i, iid in enumerate(map(itemgetter("id"), images)):
            index.setdefault(iid, i)
        return np.fromiter(map(index.__getitem__, map(itemgetter("image_id"), anns)), np.int64, n)
    return rows_by_id(ids, wanted)  # first of duplicate ids wins, as with a dict's setdefault


class _IndexOrMinusOne(dict):
    """image id -> row; unknown ids -> -1 (usable through `map`, unlike `dict.get` with a default)."""

    def __missing__(self, key):
        return -1


def _column(anns: list, key: str, missing, dtype) -> np.ndarray:
    """`a.get(key, missing)` of every annotation as an array (itemgetter first: loaded datasets have the key)."""
    try:
        return np.fromiter(map(itemgetter(key), anns), dtype, len(anns))
    except KeyError:
        return np.fromiter(map(methodcaller("get", key, missing), anns), dtype, len(anns))


def _has_size(im: dict) -> bool:
    try:
        return float(im["width"]) > 0 and float(im["height"]) > 0
    except (KeyError, TypeError, ValueError):
        return False


def extract(ds, mode: str = "numpy", layout: str = "coco") -> BoxSet:
    """Arrays of `ds`'s annotations: the loader's columns when it kept them for these very lists
    (`ds.loaded_columns`), else one pass over the dicts. Raises `BenchError` on what cannot be perturbed."""
    where = ds.source or ds.name or None
    if not ds.images:
        raise BenchError("dataset has no images: nothing to perturb", where)
    anns = ds.annotations
    loaded = getattr(ds, "loaded_columns", None)
    if loaded is not None and not loaded.describe(anns, ds.images):
        loaded = None
    try:
        sizes = loaded.image_wh if loaded is not None else np.array(
            [(im["width"], im["height"]) for im in ds.images], dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(sizes).all() or (sizes <= 0).any():
            raise ValueError
    except (KeyError, TypeError, ValueError):
        bad = next((im for im in ds.images if not _has_size(im)), ds.images[0])
        raise BenchError(f"image {bad.get('id')!r} has no valid width/height; noise needs the image size",
                         where) from None
    if loaded is not None:
        xywh, image, category = loaded.xywh, loaded.image_row, loaded.category_id
        ignored, area = loaded.ignored, loaded.area
        cat_ids = _category_ids(ds)
    else:
        xywh, image, category, ignored, area, cat_ids = _read_columns(ds, anns, where)
    return _boxset(ds, xywh, image, category, ignored, area, cat_ids, sizes, mode, layout)


def _read_columns(ds, anns: list, where) -> tuple:
    """xywh, image row, category, ignored, area (w * h where missing) and the known category ids, from the dicts."""
    n = len(anns)
    try:
        boxes = list(map(itemgetter("bbox"), anns))
        if n and set(map(len, boxes)) != {4}:
            raise ValueError("a bbox without 4 numbers")
        xywh = np.fromiter(chain.from_iterable(boxes), np.float64, 4 * n).reshape(n, 4)
        image = _image_rows(ds.images, anns)
        category = np.fromiter(map(itemgetter("category_id"), anns), np.int64, n)
        flag = _column(anns, "ignore", 2, np.int64)  # 2: no `ignore` field
        ignored = flag == 1
        for r in np.flatnonzero((flag != 0) & (flag != 1)).tolist():  # hand-built dicts: derive it
            ignored[r] = is_ignored(anns[r])
        area = _column(anns, "area", np.nan, np.float64)
        cat_ids = _category_ids(ds)
    except (KeyError, ValueError, TypeError) as exc:
        raise BenchError(f"annotations are malformed for noise ({type(exc).__name__}: {exc}); every annotation "
                         "needs image_id, integer category_id and a 4-number bbox, every category an integer id",
                         where) from None
    area = np.where(np.isnan(area), xywh[:, 2] * xywh[:, 3], area)
    return xywh, image, category, ignored, area, cat_ids


def _category_ids(ds) -> np.ndarray:
    return np.array(sorted({int(c["id"]) for c in ds.categories}), dtype=np.int64)


def _boxset(ds, xywh, image, category, ignored, area, cat_ids, sizes, mode: str, layout: str) -> BoxSet:
    anns = ds.annotations
    n = len(anns)
    known_cat = np.isin(category, cat_ids)
    clean = columns(xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3])
    if mode == "oamil-legacy":  # mmdet 2.x saw (and OA-MIL perturbed) the boxes before the loader clipped them
        xywh = _as_read(ds, anns, xywh)
    finite = np.isfinite(xywh).all(axis=1) if n else np.zeros(0, bool)
    on_image = image >= 0
    if mode == "numpy":
        eligible = ~ignored & on_image & finite & (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
    elif layout == "voc":
        eligible = ~ignored & on_image & finite & known_cat
    else:  # mmdet 2.x CocoDataset._parse_ann_info, as OA-MIL's generator ran it
        size = sizes[np.where(on_image, image, 0)]
        inter_w = np.maximum(0.0, np.minimum(xywh[:, 0] + xywh[:, 2], size[:, 0]) - np.maximum(xywh[:, 0], 0.0))
        inter_h = np.maximum(0.0, np.minimum(xywh[:, 1] + xywh[:, 3], size[:, 1]) - np.maximum(xywh[:, 1], 0.0))
        eligible = (~ignored & on_image & finite & known_cat & (inter_w * inter_h != 0) & (area > 0)
                    & (xywh[:, 2] >= 1) & (xywh[:, 3] >= 1))
    false = np.zeros(n, bool)
    slots = _legacy_slots(ds, mode, layout)
    box_size = np.asfortranarray(np.where(on_image[:, None], sizes[np.where(on_image, image, 0)], 0.0)) if n \
        else np.zeros((0, 2))
    return BoxSet(source_xywh=xywh, source_area=area, clean=clean, boxes=clean.copy(), image=image,
                  clean_category=category, category=category.copy(), ignored=ignored, eligible=eligible,
                  removed=false, clipped=false.copy(), collapsed=false.copy(), image_size=sizes, box_size=box_size,
                  category_ids=cat_ids, mode=mode, layout=layout,
                  category_names={int(c["id"]): str(c.get("name", c["id"])) for c in ds.categories},
                  image_ids=[im["id"] for im in ds.images], legacy_slots=slots)


def _as_read(ds, anns: list, xywh: np.ndarray) -> np.ndarray:
    """`xywh` with the loader-clipped boxes put back as the file had them (`ds.info["unclipped_boxes"]`)."""
    from benchmark.datasets.problems import UNCLIPPED_BOXES

    raw = ds.info.get(UNCLIPPED_BOXES) if isinstance(ds.info, dict) else None
    if not raw:
        return xywh
    raw = [r for r in raw if isinstance(r, list) and len(r) == 5]
    try:  # integer ids: the vectorised lookup, not a dict probe per annotation
        ids = np.fromiter(map(itemgetter("id"), anns), np.int64, len(anns))
        rows = rows_by_id(ids, np.array([r[0] for r in raw], np.int64))
    except (TypeError, ValueError, OverflowError):
        row_of = {a["id"]: i for i, a in enumerate(anns)}
        rows = np.array([row_of.get(r[0], -1) for r in raw], np.int64)
    known = rows >= 0
    if not known.any():
        return xywh
    out = xywh.copy()
    out[rows[known]] = np.array([r[1:] for r in raw], np.float64)[known]
    return out


def _legacy_slots(ds, mode: str, layout: str) -> np.ndarray:
    """The loader's record of dropped boxes OA-MIL still drew for, as [image row, position] (VOC legacy only)."""
    from benchmark.datasets.voc import LEGACY_DRAW_SLOTS

    raw = ds.info.get(LEGACY_DRAW_SLOTS) if isinstance(ds.info, dict) else None
    if mode != "oamil-legacy" or layout != "voc" or not raw:
        return np.zeros((0, 2), np.int64)
    row = {im["id"]: i for i, im in enumerate(ds.images)}
    kept = [(row[iid], int(before)) for iid, before in raw if iid in row]
    return np.array(kept, np.int64).reshape(-1, 2)


def detect_layout(ds) -> str:
    """`voc` when the dataset was loaded from Pascal VOC XML (the loader records `info["format"] == "voc"`), else
    `coco`. A COCO file converted from VOC is `coco` unless the caller says `layout="voc"`."""
    fmt = ds.info.get("format", "") if isinstance(ds.info, dict) else ""
    return "voc" if str(fmt).lower() == "voc" else "coco"
