"""Hypothesis strategies shared by the property tests (`tests/test_properties_*.py`): small random COCO-style
datasets, valid by the loaders' rules, and a canonical form to compare them across formats.

Reproducible: every property runs with `SETTINGS` (derandomized, so CI draws the same examples every run; a fixed
number of examples, no deadline: the first call of a loader or evaluator is slow on a shared machine)."""

from __future__ import annotations

import os
import string
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

from benchmark.datasets.core import DetectionDataset

# NOISYBOX_PROPERTY_EXAMPLES=500 (and NOISYBOX_PROPERTY_RANDOM=1 for fresh draws) explores further than CI does
SETTINGS = settings(max_examples=int(os.environ.get("NOISYBOX_PROPERTY_EXAMPLES", 50)), deadline=None,
                    derandomize=not os.environ.get("NOISYBOX_PROPERTY_RANDOM"), database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

# class names every format carries as they are (VOC and YOLO cannot carry every string: that is the writers' job to
# refuse); no two differ only in case (the VOC loader notes those as lookalikes)
CLASS_NAME = st.text(string.ascii_lowercase + string.digits + "_", min_size=1, max_size=6)


@st.composite
def boxes_in(draw, width: int, height: int, integer: bool, min_side: float) -> list:
    """One [x, y, w, h] strictly inside a width x height image, each side at least `min_side`."""
    if integer:
        x = draw(st.integers(0, width - int(min_side)))
        y = draw(st.integers(0, height - int(min_side)))
        return [x, y, draw(st.integers(int(min_side), width - x)), draw(st.integers(int(min_side), height - y))]
    f = dict(allow_nan=False, allow_infinity=False)
    x = draw(st.floats(0, width - min_side, **f))
    y = draw(st.floats(0, height - min_side, **f))
    w = draw(st.floats(min_side, width - x, **f))
    h = draw(st.floats(min_side, height - y, **f))
    if x + w > width or y + h > height:  # x + (width - x) can round past the border
        w, h = width - x, height - y
    return [x, y, w, h]


@st.composite
def datasets(draw, integer: bool = False, min_side: float = 1.0, ignore: bool = True, max_images: int = 4,
             max_boxes: int = 6, every_class_used: bool = False, unique_boxes: bool = False) -> DetectionDataset:
    """A random valid dataset: 1-4 images of 8-48 px, 0-6 boxes each, random ids (images, annotations and
    categories), some boxes ignored (crowd / difficult) when `ignore`. `integer`: whole-pixel boxes (what VOC holds
    exactly). `every_class_used`: each class has a box (VOC has no class list: an unused class vanishes).
    `unique_boxes`: no two boxes of one class in one image are equal (see the evaluator properties)."""
    names = draw(st.lists(CLASS_NAME, min_size=1, max_size=4, unique_by=str.casefold))
    cat_ids = draw(st.lists(st.integers(1, 10**6), min_size=len(names), max_size=len(names), unique=True))
    categories = [{"id": c, "name": n} for c, n in zip(cat_ids, names)]
    n_images = draw(st.integers(1, max_images))
    image_ids = draw(st.lists(st.integers(1, 10**9), min_size=n_images, max_size=n_images, unique=True))
    images, annotations = [], []
    for k, iid in enumerate(image_ids):
        width, height = draw(st.integers(8, 48)), draw(st.integers(8, 48))
        images.append({"id": iid, "file_name": f"img{k}.png", "width": width, "height": height})
        seen = set()
        for _ in range(draw(st.integers(0, max_boxes))):
            cid = draw(st.sampled_from(cat_ids))
            box = draw(boxes_in(width, height, integer, min_side))
            if unique_boxes and (cid, tuple(box)) in seen:
                continue
            seen.add((cid, tuple(box)))
            flag = int(ignore and draw(st.integers(0, 4)) == 0)
            annotations.append({"image_id": iid, "category_id": cid, "bbox": box,
                                "area": float(box[2]) * float(box[3]), "iscrowd": 0, "ignore": flag})
    if every_class_used:
        used = {a["category_id"] for a in annotations if not a["ignore"]}
        for c in cat_ids:
            if c not in used:
                img = images[0]
                box = draw(boxes_in(img["width"], img["height"], integer, min_side))
                annotations.append({"image_id": img["id"], "category_id": c, "bbox": box,
                                    "area": float(box[2]) * float(box[3]), "iscrowd": 0, "ignore": 0})
    ann_ids = draw(st.lists(st.integers(1, 10**9), min_size=len(annotations), max_size=len(annotations),
                            unique=True))
    for a, aid in zip(annotations, ann_ids):
        a["id"] = aid
    return DetectionDataset(images, annotations, categories)


def write_images(ds: DetectionDataset, folder: Path) -> DetectionDataset:
    """Real image files for `ds` (the YOLO loader reads sizes from them), with `ds.image_root` set to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for img in ds.images:
        Image.new("RGB", (img["width"], img["height"])).save(folder / img["file_name"])
    ds.image_root = folder
    return ds


def canonical(ds: DetectionDataset, with_ignored: bool = True) -> dict:
    """What a conversion must keep, independent of ids: file name -> (size, sorted boxes as (class name, ignore,
    x, y, w, h)). Image and annotation ids are each format's own (VOC and YOLO renumber them)."""
    names = ds.category_names()
    out = {}
    for img in ds.images:
        out[img["file_name"]] = {"size": (img["width"], img["height"]), "boxes": []}
    by_id = {img["id"]: img["file_name"] for img in ds.images}
    for a in ds.annotations:
        if not with_ignored and a.get("ignore"):
            continue
        out[by_id[a["image_id"]]]["boxes"].append((names[a["category_id"]], int(bool(a.get("ignore"))),
                                                   *(float(v) for v in a["bbox"])))
    for v in out.values():
        v["boxes"].sort()
    return out
