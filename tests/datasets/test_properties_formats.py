"""Property: random valid datasets survive COCO <-> VOC <-> YOLO conversion, within each format's precision.

Precision of each format, as these properties pin it:
- COCO json: lossless (ids, boxes as floats, flags and category list exactly).
- VOC xml: whole pixels. Boxes on whole pixels at least 2 px a side come back exactly; other boxes move each edge
  by at most 0.5 px (a box under 2 px a side is widened: `xmax == xmin` would read back as a point click). Image and
  annotation ids are renumbered; ignored boxes travel as `<difficult>1</difficult>`; a class without boxes vanishes
  (VOC has no class list).
- YOLO txt: coordinates normalised to the image with 6 decimals, so each edge moves by at most 1e-6 x the image
  side; ignored boxes are left out (YOLO has no ignore flag) and counted; ids are renumbered.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from property_strategies import SETTINGS, canonical, datasets, write_images

from benchmark.datasets import load
from benchmark.datasets.coco import load_coco, save_coco
from benchmark.datasets.voc import save_voc
from benchmark.datasets.yolo import save_yolo


def assert_same_boxes(got: dict, want: dict, tol: float) -> None:
    """`canonical` forms equal: same images and sizes, and a one-to-one pairing of boxes of the same class and flag
    whose coordinates differ by at most `tol` (times the image's longer side when `tol` < 1e-3)."""
    assert sorted(got) == sorted(want)
    for name, w in want.items():
        g = got[name]
        assert g["size"] == w["size"], name
        assert len(g["boxes"]) == len(w["boxes"]), (name, g["boxes"], w["boxes"])
        limit = tol * max(w["size"]) if tol < 1e-3 else tol
        left = list(g["boxes"])
        for box in w["boxes"]:
            match = next((b for b in left if b[:2] == box[:2] and
                          max(abs(p - q) for p, q in zip(_edges(b), _edges(box))) <= limit + 1e-9), None)
            assert match is not None, (name, box, left)
            left.remove(match)


def _edges(box: tuple) -> tuple:
    _, _, x, y, w, h = box
    return x, y, x + w, y + h


@SETTINGS
@given(datasets())
def test_coco_round_trip_is_lossless(ds):
    with tempfile.TemporaryDirectory() as tmp:
        save_coco(ds, Path(tmp) / "train.json")
        back = load_coco(Path(tmp) / "train.json")
    assert back.images == ds.images and back.categories == ds.categories
    keys = ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "ignore")
    assert [{k: a[k] for k in keys} for a in back.annotations] == [{k: a[k] for k in keys} for a in ds.annotations]
    assert not back.info["skipped"] and not back.info["fixed"]


@SETTINGS
@given(datasets(integer=True, min_side=2))
def test_voc_round_trip_is_exact_on_whole_pixels(ds):
    with tempfile.TemporaryDirectory() as tmp:
        write_images(ds, Path(tmp) / "src")
        save_voc(ds, Path(tmp) / "voc", "trainval", images="copy")
        back = load(Path(tmp) / "voc")["train"]
    assert canonical(back) == canonical(ds)
    assert {c["name"] for c in back.categories} == {ds.category_names()[a["category_id"]] for a in ds.annotations}
    assert not back.info["skipped"] and not back.info["fixed"]


@SETTINGS
@given(datasets(min_side=2))
def test_voc_moves_edges_by_at_most_half_a_pixel(ds):
    with tempfile.TemporaryDirectory() as tmp:
        write_images(ds, Path(tmp) / "src")
        save_voc(ds, Path(tmp) / "voc", "trainval", images="copy")
        back = load(Path(tmp) / "voc")["train"]
    assert_same_boxes(canonical(back), canonical(ds), tol=0.5)


@SETTINGS
@given(datasets())
def test_yolo_round_trip_within_six_decimals(ds):
    with tempfile.TemporaryDirectory() as tmp:
        write_images(ds, Path(tmp) / "src")
        summary = save_yolo(ds, Path(tmp) / "yolo", "train", images="copy")
        back = load(Path(tmp) / "yolo")["train"]
    assert summary["ignored_boxes_left_out"] == sum(1 for a in ds.annotations if a["ignore"])
    assert [c["name"] for c in back.categories] == [c["name"] for c in sorted(ds.categories, key=lambda c: c["id"])]
    assert_same_boxes(canonical(back), canonical(ds, with_ignored=False), tol=1e-6)
    assert not back.info["skipped"]


@SETTINGS
@given(datasets(integer=True, min_side=2, ignore=False, every_class_used=True))
def test_whole_pixel_dataset_survives_a_cycle_through_every_format(ds):
    """COCO -> VOC -> COCO -> YOLO -> VOC -> COCO: YOLO's rounding is far below VOC's half pixel, so whole-pixel
    boxes come back exactly."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_images(ds, tmp / "src")
        save_coco(ds, tmp / "a" / "train.json")
        step = load(tmp / "a" / "train.json")["train"]
        save_voc(step, tmp / "b", "trainval", images="copy")
        step = load(tmp / "b")["train"]
        save_coco(step, tmp / "c" / "train.json")
        step = load(tmp / "c" / "train.json")["train"]
        save_yolo(step, tmp / "d", "train", images="copy")
        step = load(tmp / "d")["train"]
        save_voc(step, tmp / "e", "trainval", images="copy")
        step = load(tmp / "e")["train"]
        save_coco(step, tmp / "f" / "train.json")
        back = load(tmp / "f" / "train.json")["train"]
    assert canonical(back) == canonical(ds)
    assert sorted(c["name"] for c in back.categories) == sorted(c["name"] for c in ds.categories)
