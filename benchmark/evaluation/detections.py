"""Detections from any detector, checked against the ground truth before anything is scored.

The one in-memory form is the COCO results list `[{image_id, category_id, bbox: [x, y, w, h], score}]` with
`image_id` / `category_id` taken from the ground-truth dataset. `load_detections` reads it from

- a COCO results json (a list): what pycocotools' `loadRes` reads, mmdet's `--format-only` `*.bbox.json`,
  detectron2's `coco_instances_results.json`, ultralytics `predictions.json` (see `match_images`/`category_ids`);
- the pickle of mmdet's `tools/test.py --out`:
  mmdet 3.x: a list of dicts with `img_id` and `pred_instances` {`bboxes` (N, 4) xyxy, `scores`, `labels`};
  mmdet 2.x: one entry per image, in ground-truth image order, each a list over classes of (N, 5) arrays
  `[x1, y1, x2, y2, score]` (a `(bbox_results, segm_results)` tuple for mask models: the boxes are used).

Label mapping (pickles always; json only with `category_ids="index0"/"index1"`): detector label `i` (0-based) is
`classes[i]` when a class-name list is given (the `classes` of the mmdet config), else the i-th ground-truth category
in ascending category-id order (`DetectionDataset.contiguous_labels()` order; what mmdet's `CocoDataset` uses for a
json whose categories are listed in id order).

Every problem is a one-line `BenchError` naming the file: malformed json, not a list, missing keys, non-numeric
fields, detections for image ids the ground truth does not have, unknown category ids or labels, non-finite boxes
or scores, boxes of negative width/height. These are errors rather than skips because each one means the export is
broken or belongs to another dataset/split, and scoring what is left would give a wrong AP that looks right.
Zero-size boxes are legal (they simply match nothing) and are kept.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.boxes import xyxy_to_xywh
from benchmark.datasets.core import DetectionDataset
from benchmark.datasets.images import IMAGE_EXTENSIONS
from benchmark.errors import BenchError
from benchmark.io import gc_paused, read_json

DETECTION_KEYS = ("image_id", "category_id", "bbox", "score")
CATEGORY_ID_MODES = ("dataset", "index0", "index1")
IMAGE_MATCH_MODES = ("id", "file_stem")
PICKLE_SUFFIXES = (".pkl", ".pickle")


@dataclass
class DetectionArrays:
    """Validated detections as arrays, indexed into the ground truth (what the evaluators compute on)."""

    image_index: np.ndarray  # (N,) int64, position in gt.images
    category_index: np.ndarray  # (N,) int64, position in the category-id-sorted category list
    boxes: np.ndarray  # (N, 4) float64, COCO xywh
    scores: np.ndarray  # (N,) float64

    def __len__(self) -> int:
        return len(self.scores)


def _examples(values: Sequence[Any], n: int = 3) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:n])
    return shown + (", ..." if len(values) > n else "")


def _numeric(values, shape: tuple) -> np.ndarray | None:
    """`values` as a float64 array of `shape`, or None when they are not all plain numbers (str, None, bool...)."""
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):  # ragged
        return None
    if arr.shape != shape or arr.dtype.kind not in "iuf":
        return None
    return arr.astype(np.float64)


def sorted_category_ids(gt: DetectionDataset) -> list:
    return sorted(c["id"] for c in gt.categories)


def label_to_category_id(gt: DetectionDataset, classes: Sequence[str] | None = None, path=None) -> list:
    """Detector label i -> ground-truth category id (see module docstring)."""
    if classes is None:
        return sorted_category_ids(gt)
    by_name: dict[str, list] = {}
    for c in gt.categories:
        by_name.setdefault(c["name"], []).append(c["id"])
    out = []
    for name in classes:
        ids = by_name.get(name)
        if not ids:
            raise BenchError(f"class {name!r} (from --classes) is not a ground-truth category "
                             f"(have {_examples(sorted(by_name), 10)})", path)
        if len(ids) > 1:
            raise BenchError(f"class name {name!r} is used by several ground-truth categories {ids}", path)
        out.append(ids[0])
    return out


def _image_key(value):
    """How ultralytics names an image: the file stem, as int when it is all digits. A path or file name
    (`val/000001.png`) is reduced to its stem; a dot that starts no image extension stays (`img.v2`)."""
    if isinstance(value, str):
        value = value.replace("\\", "/").rsplit("/", 1)[-1]
        stem, dot, ext = value.rpartition(".")
        if dot and stem and "." + ext.lower() in IMAGE_EXTENSIONS:
            value = stem
        if value.isdigit():
            return int(value)
    return value


def _image_id_resolver(gt: DetectionDataset, match_images: str, path) -> dict:
    """Map from what detections call an image (other than its id) to the ground-truth image id."""
    if match_images == "file_stem":
        out: dict = {}
        for img in gt.images:
            key = _image_key(Path(str(img.get("file_name", ""))).stem)
            if key in out:
                raise BenchError(f"cannot match detections by file stem: several ground-truth images are named "
                                 f"{key!r}", path)
            out[key] = img["id"]
        return out
    raise BenchError(f"unknown image matching {match_images!r} (choose from {', '.join(IMAGE_MATCH_MODES)})", path)


def to_arrays(gt: DetectionDataset, detections: list, path: str | Path | None = None, *,
              index_hint: bool = False) -> DetectionArrays:
    """Validate a COCO results list against `gt` and index it; every problem is a `BenchError` naming `path`.
    `index_hint`: the caller reads files with a `category_ids` option (`--category-ids`), so unknown category ids
    may suggest it; elsewhere (`bench predict`, a cell's own predictions) that option does not exist."""
    if not isinstance(detections, list):
        raise BenchError(f"expected a list of detections, got {type(detections).__name__}", path)
    n = len(detections)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return DetectionArrays(z, z.copy(), np.zeros((0, 4)), np.zeros(0))
    try:
        image_ids = [d["image_id"] for d in detections]
        category_ids = [d["category_id"] for d in detections]
        boxes_raw = [d["bbox"] for d in detections]
        scores_raw = [d["score"] for d in detections]
    except (KeyError, TypeError):
        for i, d in enumerate(detections):
            if not isinstance(d, dict):
                raise BenchError(f"detection #{i} is a {type(d).__name__}, expected an object with keys "
                                 f"{', '.join(DETECTION_KEYS)}", path) from None
            missing = [k for k in DETECTION_KEYS if k not in d]
            if missing:
                raise BenchError(f"detection #{i} has no {', '.join(repr(k) for k in missing)} "
                                 f"(need {', '.join(DETECTION_KEYS)})", path) from None
        raise

    boxes = _numeric(boxes_raw, (n, 4))
    if boxes is None:
        for i, b in enumerate(boxes_raw):
            if _numeric(b, (4,)) is None:
                raise BenchError(f"detection #{i} has bbox {b!r}; expected [x, y, w, h] numbers", path)
        raise BenchError("bbox values are not all [x, y, w, h] numbers", path)
    scores = _numeric(scores_raw, (n,))
    if scores is None:
        i = next((i for i, s in enumerate(scores_raw) if _numeric(s, ()) is None), 0)
        raise BenchError(f"detection #{i} has score {scores_raw[i]!r}; expected a number", path)

    bad = ~np.isfinite(boxes).all(axis=1) | ~np.isfinite(scores)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BenchError(f"{int(bad.sum())} detections have a non-finite box or score (first: #{i}, bbox "
                         f"{boxes_raw[i]!r}, score {scores_raw[i]!r})", path)
    neg = (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        raise BenchError(f"{int(neg.sum())} detections have negative width or height (first: #{i}, bbox "
                         f"{boxes_raw[i]!r}; COCO boxes are [x, y, w, h], not corners)", path)

    for field, values in (("image_id", image_ids), ("category_id", category_ids)):
        if bool in set(map(type, values)):  # True == 1 would silently pick id 1
            i = next(i for i, v in enumerate(values) if type(v) is bool)
            raise BenchError(f"detection #{i} has {field} {values[i]!r}; expected an id", path)

    image_pos = {img["id"]: i for i, img in enumerate(gt.images)}
    try:
        image_index = np.fromiter((image_pos.get(k, -1) for k in image_ids), dtype=np.int64, count=n)
    except TypeError:  # unhashable id (a list, a dict)
        i = next(i for i, k in enumerate(image_ids) if not isinstance(k, (int, str)))
        raise BenchError(f"detection #{i} has image_id {image_ids[i]!r}; expected an int or str", path) from None
    unknown = image_index < 0
    if unknown.any():
        ids = sorted({image_ids[i] for i in np.flatnonzero(unknown)}, key=repr)
        if any(isinstance(k, _UnmatchedImage) for k in ids):  # matched by file stem already
            known = _examples([_image_key(Path(str(img["file_name"])).stem) for img in gt.images])
            raise BenchError(f"{int(unknown.sum())} detections name {len(ids)} images no ground-truth file has "
                             f"({_examples(ids)}; ground truth has {len(gt.images)} images, file stems like {known})"
                             f" -- wrong split or dataset?", path)
        raise BenchError(f"{int(unknown.sum())} detections refer to {len(ids)} image ids not in the ground truth "
                         f"({_examples(ids)}; ground truth has {len(gt.images)} images, ids like "
                         f"{_examples([img['id'] for img in gt.images])}) -- wrong split or dataset? If the ids are "
                         f"file names (ultralytics), use --match-images file_stem", path)

    cat_pos = {cid: i for i, cid in enumerate(sorted_category_ids(gt))}
    try:
        category_index = np.fromiter((cat_pos.get(k, -1) for k in category_ids), dtype=np.int64, count=n)
    except TypeError:
        i = next(i for i, k in enumerate(category_ids) if not isinstance(k, (int, str)))
        raise BenchError(f"detection #{i} has category_id {category_ids[i]!r}; expected an int", path) from None
    unknown = category_index < 0
    if unknown.any():
        ids = sorted({category_ids[i] for i in np.flatnonzero(unknown)}, key=repr)
        hint = ("If they are 0- or 1-based class indices, use --category-ids index0/index1" if index_hint else
                "Was the detector trained on categories this ground truth does not have, or on another dataset's "
                "category ids?")
        raise BenchError(f"{int(unknown.sum())} detections have category ids not in the ground truth "
                         f"({_examples(ids)}; ground truth has {_examples(sorted(cat_pos), 10)}). {hint}", path)
    return DetectionArrays(image_index, category_index, boxes, scores)


def _from_arrays(image_ids, category_ids, boxes_xyxy: np.ndarray, scores: np.ndarray) -> list[dict]:
    boxes = xyxy_to_xywh(boxes_xyxy)
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s}
            for i, c, b, s in zip(image_ids, category_ids, boxes.tolist(), np.asarray(scores, np.float64).tolist())]


def _labels_to_categories(labels: np.ndarray, label_map: list, where: str, path) -> list:
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        return []
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise BenchError(f"{where}: labels are not integers", path)
        labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= len(label_map))
    if bad.any():
        raise BenchError(f"{where}: label {int(labels[bad][0])} is out of range for {len(label_map)} classes "
                         f"(labels are 0-based; pass --classes to map them)", path)
    return [label_map[i] for i in labels.tolist()]


def _mmdet3(results: list, label_map: list, path) -> list[dict]:
    out: list[dict] = []
    for i, r in enumerate(results):
        if not isinstance(r, dict) or "pred_instances" not in r or "img_id" not in r:
            raise BenchError(f"entry #{i} of the mmdet 3.x results has no 'img_id' / 'pred_instances'", path)
        pred = r["pred_instances"]
        try:
            boxes = np.asarray(pred["bboxes"], dtype=np.float64).reshape(-1, 4)
            scores = np.asarray(pred["scores"], dtype=np.float64).reshape(-1)
            labels = np.asarray(pred["labels"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchError(f"entry #{i} (img_id {r['img_id']!r}): pred_instances needs bboxes (N, 4), scores and "
                             f"labels ({type(exc).__name__}: {exc})", path) from None
        if not (len(boxes) == len(scores) == labels.reshape(-1).shape[0]):
            raise BenchError(f"entry #{i} (img_id {r['img_id']!r}): {len(boxes)} boxes, {len(scores)} scores, "
                             f"{labels.size} labels", path)
        cats = _labels_to_categories(labels, label_map, f"entry #{i} (img_id {r['img_id']!r})", path)
        out += _from_arrays([r["img_id"]] * len(boxes), cats, boxes, scores)
    return out


def _mmdet2(results: list, gt: DetectionDataset, label_map: list, path) -> list[dict]:
    if len(results) != len(gt.images):
        raise BenchError(f"mmdet 2.x results have {len(results)} images but the ground truth has {len(gt.images)}; "
                         f"they are matched by position, so the counts must agree", path)
    out: list[dict] = []
    for i, (per_class, img) in enumerate(zip(results, gt.images)):
        if isinstance(per_class, tuple):  # (bbox_results, segm_results) from mask models
            per_class = per_class[0]
        if len(per_class) != len(label_map):
            raise BenchError(f"image #{i}: {len(per_class)} per-class arrays but {len(label_map)} classes", path)
        for label, arr in enumerate(per_class):
            try:
                arr = np.asarray(arr, dtype=np.float64).reshape(-1, 5)
            except (TypeError, ValueError):
                raise BenchError(f"image #{i}, class {label}: expected an (N, 5) array [x1, y1, x2, y2, score]",
                                 path) from None
            out += _from_arrays([img["id"]] * len(arr), [label_map[label]] * len(arr), arr[:, :4], arr[:, 4])
    return out


def _read_pickle(path: Path):
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except FileNotFoundError:
        raise BenchError("file not found", path) from None
    except Exception as exc:  # unpickling runs the file's own reducers: anything can be raised, all mean "not ours"
        message = " ".join(str(exc).split())  # one line (torch.save zips give a two-line UnpicklingError)
        raise BenchError(f"cannot unpickle ({type(exc).__name__}: {message}); mmdet pickles of torch tensors need "
                         f"torch installed", path) from None


def _from_pickle(data, gt: DetectionDataset, label_map: list, path) -> list[dict]:
    if not isinstance(data, (list, tuple)):
        raise BenchError(f"pickle holds a {type(data).__name__}; expected the list written by mmdet "
                         f"tools/test.py --out", path)
    data = list(data)
    if not data:
        return []
    first = data[0]
    if isinstance(first, dict):
        return _mmdet3(data, label_map, path)
    if isinstance(first, (list, tuple)):
        return _mmdet2(data, gt, label_map, path)
    raise BenchError(f"unrecognised pickle content (entries are {type(first).__name__}); expected mmdet 3.x dicts "
                     f"with 'pred_instances' or mmdet 2.x per-class arrays", path)


def load_detections(path: str | Path, gt: DetectionDataset, *, classes: Sequence[str] | None = None,
                    category_ids: str = "dataset", match_images: str = "id") -> list[dict]:
    """Read detections from `path` (format by content; see module docstring) as a validated COCO results list
    (only the four keys, ids from `gt`). Options and the pickle warning: `load_detection_arrays`."""
    return to_results(gt, load_detection_arrays(path, gt, classes=classes, category_ids=category_ids,
                                                match_images=match_images))


def load_detection_arrays(path: str | Path, gt: DetectionDataset, *, classes: Sequence[str] | None = None,
                          category_ids: str = "dataset", match_images: str = "id") -> DetectionArrays:
    """Read and validate detections from `path` into arrays (what `bench eval` uses: the parsed file is freed
    before evaluation, which keeps a 500k-detection evaluation under 1.5 GB).

    classes: detector class names in label order (mmdet config `classes`); default: GT categories by id.
    category_ids: for json, what `category_id` holds: "dataset" (GT category ids), or "index0"/"index1"
        (0- or 1-based class indices, e.g. older/newer ultralytics exports on non-COCO data).
    match_images: "id" (detection `image_id` is the GT image id) or "file_stem" (it is the image file's stem,
        as int when all digits -- ultralytics `predictions.json`).

    SECURITY: `.pkl`/`.pickle` files are read with `pickle`, which can execute arbitrary code while loading.
    Only load pickles you produced or trust. mmdet 3.x pickles hold torch tensors, so torch must be importable.
    """
    path = Path(path)
    with gc_paused():  # hundreds of thousands of small dicts: the cyclic GC only costs time here
        return _load(path, gt, classes, category_ids, match_images)


def check_read_options(path: str | Path, classes=None, category_ids: str = "dataset",
                       match_images: str = "id") -> None:
    """The read options on their own, before any file is read: `bench eval` checks them here, and `bench run
    --external` when it plans its cells (not when each cell runs)."""
    if category_ids not in CATEGORY_ID_MODES:
        raise BenchError(f"unknown --category-ids {category_ids!r} (choose from {', '.join(CATEGORY_ID_MODES)})")
    if match_images not in IMAGE_MATCH_MODES:
        raise BenchError(f"unknown image matching {match_images!r} (choose from {', '.join(IMAGE_MATCH_MODES)})",
                         Path(path))
    if classes is not None:
        first: dict = {}
        for label, name in enumerate(classes):
            if name in first:  # two labels mapped to one class: the other class's detections would score as it
                raise BenchError(f"class {name!r} appears twice in --classes (labels {first[name]} and {label})",
                                 Path(path))
            first[name] = label
    if classes is not None and category_ids == "dataset" and Path(path).suffix.lower() not in PICKLE_SUFFIXES:
        raise BenchError("--classes maps detector class indices, but --category-ids is 'dataset' (category_id "
                         "already holds ground-truth ids): pass --category-ids index0 or index1, or drop "
                         "--classes", Path(path))


def _load(path: Path, gt: DetectionDataset, classes, category_ids: str, match_images: str) -> DetectionArrays:
    check_read_options(path, classes, category_ids, match_images)
    label_map = label_to_category_id(gt, classes, path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        dets = _from_pickle(_read_pickle(path), gt, label_map, path)
    else:
        dets = read_json(path)
        if isinstance(dets, dict):
            hint = " (this looks like a ground-truth file)" if "annotations" in dets else ""
            raise BenchError(f"expected a JSON list of detections [{{image_id, category_id, bbox, score}}], "
                             f"got an object{hint}", path)
        if not isinstance(dets, list):
            raise BenchError(f"expected a JSON list of detections, got {type(dets).__name__}", path)
        if category_ids != "dataset":
            offset = 0 if category_ids == "index0" else 1
            dets = _remap_index_categories(dets, label_map, offset, path)
    if match_images != "id":
        dets = _remap_image_ids(dets, _image_id_resolver(gt, match_images, path))
    return to_arrays(gt, dets, path, index_hint=True)


def _remap_index_categories(dets: list, label_map: list, offset: int, path) -> list:
    out = []
    for i, d in enumerate(dets):
        if not isinstance(d, dict) or "category_id" not in d:
            return dets  # to_arrays names the problem
        c = d["category_id"]
        if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c - offset < len(label_map):
            raise BenchError(f"detection #{i}: category index {c!r} is out of range for {len(label_map)} classes "
                             f"({offset}-based)", path)
        out.append({**d, "category_id": label_map[c - offset]})
    return out


@dataclass(frozen=True)
class _UnmatchedImage:
    """An image key no ground-truth file stem matches; never equal to a real image id."""

    key: Any

    def __repr__(self) -> str:
        return f"file stem {self.key!r}"


def _remap_image_ids(dets: list, resolver: dict) -> list:
    out = []
    for d in dets:
        if isinstance(d, dict) and isinstance(d.get("image_id"), (str, int)):
            key = _image_key(d["image_id"])
            d = {**d, "image_id": resolver.get(key, _UnmatchedImage(key))}
        out.append(d)
    return out


def boxes_past_image(gt: DetectionDataset, arrays: DetectionArrays, share: float = 0.25) -> str | None:
    """A one-line note when more than `share` of the detections end over a pixel past their image: the sign of
    corners [x1, y1, x2, y2] written where COCO wants [x, y, w, h], which scores low without any other error."""
    if not len(arrays):
        return None
    size = np.array([(float(im.get("width") or np.inf), float(im.get("height") or np.inf)) for im in gt.images])
    wh = size[arrays.image_index]
    past = ((arrays.boxes[:, 0] + arrays.boxes[:, 2] > wh[:, 0] + 1)
            | (arrays.boxes[:, 1] + arrays.boxes[:, 3] > wh[:, 1] + 1))
    if past.mean() <= share:
        return None
    return (f"note: {int(past.sum())} of {len(arrays)} detections reach past their image's width or height: are "
            f"the boxes corners [x1, y1, x2, y2]? COCO results hold [x, y, w, h]")


def to_results(gt: DetectionDataset, arrays: DetectionArrays) -> list[dict]:
    """Validated arrays back to a clean COCO results list (only the four keys, plain floats)."""
    image_ids = [img["id"] for img in gt.images]
    cat_ids = sorted_category_ids(gt)
    with gc_paused():
        return [{"image_id": image_ids[i], "category_id": cat_ids[c], "bbox": b, "score": s}
                for i, c, b, s in zip(arrays.image_index.tolist(), arrays.category_index.tolist(),
                                      arrays.boxes.tolist(), arrays.scores.tolist())]
