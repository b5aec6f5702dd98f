"""COCO / VOC / YOLO loaders and writers: fixtures written here, BCCD, round trips, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from datasets_kit import coco_dict, make_coco, write_image
from PIL import Image

from benchmark.datasets import DetectionDataset, load, load_coco, load_voc, load_yolo, save_coco, save_voc, save_yolo
from benchmark.datasets.yolo import yolo_class_names
from benchmark.errors import BenchError


# ---- fixtures -----------------------------------------------------------------------------------------------
def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(obj))
    return path


def voc_xml(filename: str, objects: list[tuple], size: tuple | None = (60, 40), path: str = "/home/x/y.jpg") -> str:
    size_xml = "" if size is None else f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b, d in objects)
    return (f"<annotation><folder>JPEGImages</folder><filename>{filename}</filename><path>{path}</path>"
            f"{size_xml}{objs}</annotation>")


def make_voc(root: Path) -> Path:
    """4 images: trainval = img1, img2, img3 ; test = img4 (only class 'a' in test)."""
    specs = {
        "img1": ([("a", (11, 6, 30, 20), 0), ("b", (31, 11, 60, 40), 1)], (60, 40)),
        "img2": ([("b", (1, 1, 10, 10), 0), ("a", (5, 5, 5, 9), 0), ("a", (8, 8, 4, 12), 0)], (60, 40)),
        "img3": ([("a", (50, 30, 70, 45), 0)], None),  # no <size>: read from the image; box crosses the border
        "img4": ([("a", (2, 2, 12, 12), 0)], (0, 0)),  # zero size: read from the image
    }
    for stem, (objs, size) in specs.items():
        write_image(root / "JPEGImages" / f"{stem}.jpg", 60, 40)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", objs, size))
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("img1\nimg2\nimg3\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("img4\n")
    return root


def make_yolo(root: Path, names_yaml: str = "names:\n  0: a\n  1: b\n") -> Path:
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(names_yaml)
    write_image(root / "images" / "train" / "p.png", 100, 50)
    write_image(root / "images" / "train" / "q.jpg", 40, 40)
    write_image(root / "images" / "train" / "bg.png", 20, 20)  # background image: no label file
    write_image(root / "images" / "val" / "v.png", 64, 64)
    lbl = root / "labels" / "train"
    lbl.mkdir(parents=True)
    (lbl / "p.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.1 0.2 0.1 0.2\n\n")
    (lbl / "q.txt").write_text("1 0.25 0.25 0.5 0.5\n5 0.5 0.5 0.1 0.1\n0 0.5 0.5 0 0.2\n0 0.95 0.5 0.2 0.2\n"
                               "0 0.1 0.1 0.3 0.1 0.3 0.3 0.1 0.3\n")
    (lbl / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "val" / "v.txt").write_text("1 0.5 0.5 0.5 0.25\n")
    return root


def boxes_by_file(ds: DetectionDataset) -> dict[str, list[tuple]]:
    names = ds.category_names()
    files = {im["id"]: Path(im["file_name"]).stem.split("__")[-1] for im in ds.images}
    out: dict[str, list[tuple]] = {f: [] for f in files.values()}
    for a in ds.annotations:
        out[files[a["image_id"]]].append((names[a["category_id"]], *a["bbox"], a.get("ignore", 0)))
    return {k: sorted(v) for k, v in out.items()}


def assert_same_boxes(a: DetectionDataset, b: DetectionDataset, tol: float, skip_ignored: bool = False) -> None:
    ba, bb = boxes_by_file(a), boxes_by_file(b)
    assert ba.keys() == bb.keys()
    for f in ba:
        xa = [x for x in ba[f] if not (skip_ignored and x[-1])]
        assert len(xa) == len(bb[f]), f
        for p, q in zip(xa, bb[f]):
            assert p[0] == q[0] and p[-1] == q[-1], (f, p, q)
            assert np.allclose(p[1:5], q[1:5], atol=tol), (f, p, q)


# ---- COCO ---------------------------------------------------------------------------------------------------
def test_coco_loads_fields_flags_and_image_root(tmp_path):
    ds = load_coco(make_coco(tmp_path))
    assert [im["id"] for im in ds.images] == [10, 11, 12]
    assert {c["id"]: c["name"] for c in ds.categories} == {3: "cat", 7: "dog"}
    anns = {a["id"]: a for a in ds.annotations}
    assert anns[5]["iscrowd"] == 1 and anns[5]["ignore"] == 1 and anns[1]["ignore"] == 0
    assert anns[1]["bbox"] == [5.25, 4.5, 20.5, 10.0] and anns[1]["area"] == pytest.approx(205.0)
    assert anns[2]["area"] == 500.0  # a given area is kept (COCO's is the mask area)
    assert ds.image_root == tmp_path / "images"  # guessed: images/ beside the json
    assert all(ds.image_path(im).is_file() for im in ds.images)
    assert ds.annotations_by_image()[12] == []  # image without annotations is kept
    assert ds.info["skipped"] == {} and ds.info["fixed"] == {}


def test_coco_image_root_in_coco_layout(tmp_path):
    data = coco_dict()
    for i, im in enumerate(data["images"]):
        write_image(tmp_path / "val2017" / im["file_name"], im["width"], im["height"], seed=i)
    p = write_json(tmp_path / "annotations" / "instances_val2017.json", data)
    assert load_coco(p).image_root == tmp_path / "val2017"
    assert load_coco(p, image_root=tmp_path / "x").image_root == tmp_path / "x"
    (tmp_path / "val2017" / data["images"][0]["file_name"]).unlink()  # the first image missing: still found
    assert load_coco(p).image_root == tmp_path / "val2017"


def test_coco_save_load_is_exact(tmp_path):
    ds = load_coco(make_coco(tmp_path))
    out = save_coco(ds, tmp_path / "out" / "copy.json")
    back = load_coco(out)
    assert back.annotations == ds.annotations and back.images == ds.images and back.categories == ds.categories
    assert back.image_root.resolve() == ds.image_root.resolve()  # found again through info.image_root
    assert back.fingerprint() == ds.fingerprint()


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["annotations"][0].update(bbox=[5, 4, 0, 10]), "zero_size_box"),
    (lambda d: d["annotations"][0].update(bbox=[5, 4, 10, -3]), "inverted_box"),
    (lambda d: d["annotations"][0].update(bbox=[70, 50, 10, 10]), "box_outside_image"),
    (lambda d: d["annotations"][0].update(category_id=99), "unknown_category"),
    (lambda d: d["annotations"][0].update(image_id=99), "unknown_image"),
])
def test_coco_bad_box_is_dropped_and_counted(tmp_path, mutate, expected):
    data = coco_dict()
    mutate(data)
    ds = load_coco(make_coco(tmp_path, data))
    assert ds.info["skipped"] == {expected: 1}
    assert 1 not in {a["id"] for a in ds.annotations} and len(ds.annotations) == 3
    assert "train.json: annotation 1" in ds.info["problem_examples"][expected][0]


def test_coco_box_crossing_border_is_clipped_and_counted(tmp_path):
    data = coco_dict()
    data["annotations"][0]["bbox"] = [-5, 30, 20, 20]  # image is 60x40
    ds = load_coco(make_coco(tmp_path, data))
    a = next(a for a in ds.annotations if a["id"] == 1)
    assert a["bbox"] == [0.0, 30, 15.0, 10.0]
    assert ds.info["fixed"] == {"box_clipped_to_image": 1} and ds.info["skipped"] == {}
    data["annotations"][0]["bbox"] = [0, 0, 60.0000001, 40]  # float round-off at the border: no report
    ds = load_coco(make_coco(tmp_path, data))
    assert ds.info["fixed"] == {} and next(a for a in ds.annotations if a["id"] == 1)["bbox"] == [0, 0, 60.0, 40]


def _messy_coco() -> dict:
    """Every per-box rule at once: clean, clipped, round-off, outside, zero, inverted, unknown image / category,
    integer coordinates, crowd and difficult flags, a missing area."""
    data = coco_dict()  # image 10 is 60x40, category 3
    base = {"image_id": 10, "category_id": 3}
    boxes = [[1, 2, 3, 4], [-5, 30, 20, 20], [0, 0, 60.0000001, 40], [70, 50, 10, 10], [5, 4, 0, 10],
             [5, 4, 10, -3], [1.5, 2.5, 3.25, 4], [0, 0, 60, 40]]
    anns = [{**base, "id": 100 + k, "bbox": b, "area": 1.0} for k, b in enumerate(boxes)]
    anns += [{**base, "id": 200, "image_id": 99, "bbox": [1, 1, 2, 2]},
             {**base, "id": 201, "category_id": 9, "bbox": [1, 1, 2, 2]},
             {**base, "id": 204, "bbox": [1, 1, 2, 2.5]},
             {**base, "id": 202, "bbox": [1, 1, 2, 2], "iscrowd": True},
             {**base, "id": 203, "bbox": [1, 1, 2, 2], "difficult": 1}]
    data["annotations"] = anns
    return data


def test_coco_column_check_gives_what_the_per_annotation_rules_give(tmp_path, monkeypatch):
    """The column-wise pre-check only decides which annotations need the per-box rules: loading with it and with
    every annotation through the rules gives the same dataset and the same problem counts and examples."""
    from benchmark.datasets import coco

    path = make_coco(tmp_path, _messy_coco())
    fast = load_coco(path)
    monkeypatch.setattr(coco, "_rows_needing_care", lambda *a: (None, None))
    careful = load_coco(path)
    assert fast.annotations == careful.annotations and fast.info == careful.info
    assert fast.info["skipped"] == {"box_outside_image": 1, "zero_size_box": 1, "inverted_box": 1,
                                    "unknown_image": 1, "unknown_category": 1}
    assert fast.info["fixed"] == {"box_clipped_to_image": 1}
    by_id = {a["id"]: a for a in fast.annotations}
    assert by_id[101]["bbox"] == [0.0, 30, 15.0, 10.0] and by_id[102]["bbox"] == [0, 0, 60.0, 40]
    assert by_id[202]["iscrowd"] == 1 and by_id[202]["ignore"] == 1 and by_id[203]["ignore"] == 1
    assert by_id[204]["area"] == 5.0 and by_id[100]["area"] == 1.0 and 200 not in by_id and 201 not in by_id


def test_coco_huge_ids_take_the_per_annotation_rules(tmp_path):
    data = coco_dict()
    big = 2 ** 63 + 5  # a uint64 id (orjson reads it) beyond int64: no column shortcut, same rules
    data["images"][0]["id"] = big
    for a in data["annotations"]:
        if a["image_id"] == 10:
            a["image_id"] = big
    data["annotations"][0]["bbox"] = [50, 30, 20, 20]  # crosses the 60x40 border: clipped
    path = tmp_path / "big.json"
    path.write_text(json.dumps(data))
    ds = load_coco(path)
    assert ds.info["fixed"] == {"box_clipped_to_image": 1} and len(ds.annotations) == 4


def test_coco_load_records_the_file_sha256(tmp_path):
    from benchmark.io import sha256_file

    path = make_coco(tmp_path, coco_dict())
    ds = load_coco(path)
    assert ds.file_sha256 == sha256_file(path)
    assert ds.copy().file_sha256 == ds.file_sha256  # an identical copy keeps it
    assert ds.subset([10]).file_sha256 is None and ds.without_clean_boxes().file_sha256 is None


@pytest.mark.parametrize("content, message", [
    (b'{"images": [', "malformed JSON"),
    (b'[{"image_id": 1, "bbox": [0,0,1,1], "score": 0.5}]', "got a JSON list (a detection results file?)"),
    (orjson.dumps({"images": [], "categories": []}), "missing required key 'annotations'"),
    (orjson.dumps({"images": {}, "annotations": [], "categories": []}), "'images' must be a list"),
    (orjson.dumps({"images": [{"id": 1, "file_name": "a.png", "height": 3}], "annotations": [], "categories": []}),
     "images[0] (id 1): missing required key 'width'"),
    (orjson.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 0, "height": 3}], "annotations": [],
                   "categories": []}), "width/height must be positive"),
    (orjson.dumps({"images": [{"id": "x", "file_name": "a.png", "width": 4, "height": 3}], "annotations": [],
                   "categories": []}), "id must be an integer"),
    (orjson.dumps({**coco_dict(), "images": coco_dict()["images"] + [coco_dict()["images"][0]]}),
     "duplicate image id 10"),
    (orjson.dumps({**coco_dict(), "annotations": coco_dict()["annotations"] + [coco_dict()["annotations"][0]]}),
     "duplicate annotation id 1"),
    (orjson.dumps({**coco_dict(), "categories": [{"id": 3, "name": "cat"}, {"id": 3, "name": "dog"}]}),
     "duplicate category id 3"),
    (orjson.dumps({**coco_dict(), "categories": [{"id": 3}]}), "categories[0] must be an object with 'id' and 'name'"),
    (orjson.dumps({**coco_dict(), "annotations": [{"id": 1, "image_id": 10, "category_id": 3}]}),
     "annotations[0]: missing required key 'bbox'"),
    (orjson.dumps({**coco_dict(), "annotations": [{"id": 1, "image_id": 10, "category_id": 3, "bbox": [1, 2, 3]}]}),
     "bbox must be 4 numbers"),
    *[(orjson.dumps({**coco_dict(), "annotations": [{"id": 1, "image_id": 10, "category_id": 3, "bbox": [1, 2, 3, 4]},
                                                    {"id": 2, "image_id": 10, "category_id": 3, "bbox": bad}]}),
       f"annotations[1] (id 2): bbox must be 4 numbers [x, y, w, h], got {bad!r}")
      for bad in ([True, 1, 2, 3], [0, 1, 2, False], ["1.5", 1, 2, 3], [None, 1, 2, 3])],
])
def test_coco_malformed_file_is_one_line_error_naming_it(tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(BenchError) as exc:
        load_coco(p)
    text = str(exc.value)
    assert message in text and str(p) in text and "\n" not in text


def test_coco_missing_file(tmp_path):
    with pytest.raises(BenchError, match="nothere.json: file not found"):
        load_coco(tmp_path / "nothere.json")


# ---- VOC ----------------------------------------------------------------------------------------------------
def test_voc_loads_with_conventions(tmp_path):
    root = make_voc(tmp_path / "voc")
    ds = load_voc(root, "trainval")
    assert [c["name"] for c in ds.categories] == ["a", "b"]
    b_id = 2
    by = boxes_by_file(ds)
    assert by["img1"] == [("a", 10.0, 5.0, 20.0, 15.0, 0), ("b", 30.0, 10.0, 30.0, 30.0, 1)]  # -1 on xmin/ymin only
    diff = next(a for a in ds.annotations if a["category_id"] == b_id and a["image_id"] == 1)
    assert diff["difficult"] == 1 and diff["ignore"] == 1 and diff["iscrowd"] == 0
    # img2: (5,5,5,9) is a zero-size point (dropped); (8,8,4,12) is inverted (dropped)
    assert by["img2"] == [("b", 0.0, 0.0, 10.0, 10.0, 0)]
    assert ds.info["skipped"] == {"zero_size_box": 1, "inverted_box": 1}
    assert "Annotations/img2.xml: object 2 (a)" in ds.info["problem_examples"]["zero_size_box"][0]
    # img3 has no <size>: 60x40 from the image; its box (49,29)-(70,45) is clipped to the image
    img3 = next(im for im in ds.images if im["file_name"] == "img3.jpg")
    assert (img3["width"], img3["height"]) == (60, 40)
    assert by["img3"] == [("a", 49.0, 29.0, 11.0, 11.0, 0)] and ds.info["fixed"] == {"box_clipped_to_image": 1}
    assert ds.image_root == root / "JPEGImages" and all(ds.image_path(im).is_file() for im in ds.images)
    test = load_voc(root, "test")
    assert (test.images[0]["width"], test.images[0]["height"]) == (60, 40)  # <size> 0x0 -> from the image
    assert {im["id"] for im in ds.images} == {1, 2, 3} and test.images[0]["id"] == 4  # ids independent of split


def test_voc_classes_argument_and_category_alignment(tmp_path):
    root = make_voc(tmp_path / "voc")
    only_a = load_voc(root, "trainval", classes=["a"])
    assert [c["name"] for c in only_a.categories] == ["a"] and only_a.info["skipped"]["unknown_category"] == 2
    splits = load(root)  # test has only class 'a' but must number it like train does
    assert splits["train"].categories == splits["test"].categories == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert splits["test"].annotations[0]["category_id"] == 1


@pytest.mark.parametrize("xml, message", [
    ("<annotation><object>", "malformed XML"),
    ("<root></root>", "root element is <root>"),
    (voc_xml("img1.jpg", [("a", (1, 1, "ten", 5), 0)]), "object 1 (a): <xmax> is not a number: 'ten'"),
    ("<annotation><size><width>9</width><height>9</height></size><object><name>a</name></object></annotation>",
     "object 1 (a): missing <bndbox>"),
    ("<annotation><object><bndbox><xmin>1</xmin></bndbox></object></annotation>", "object 1: missing <name>"),
    ("<annotation><size><width>9</width><height>9</height></size><object><name>a</name><bndbox><xmin>1</xmin>"
     "<ymin>1</ymin><xmax>3</xmax></bndbox></object></annotation>", "needs xmin, ymin, xmax and ymax"),
])
def test_voc_malformed_xml_names_file(tmp_path, xml, message):
    root = make_voc(tmp_path / "voc")
    (root / "Annotations" / "img1.xml").write_text(xml)
    with pytest.raises(BenchError) as exc:
        load_voc(root, "trainval")
    assert message in str(exc.value) and "img1.xml" in str(exc.value)


def test_voc_structure_errors(tmp_path):
    root = make_voc(tmp_path / "voc")
    with pytest.raises(BenchError, match=r"val.txt: split file not found \(available splits: test, trainval\)"):
        load_voc(root, "val")
    (root / "Annotations" / "img4.xml").unlink()
    with pytest.raises(BenchError, match=r"img4.xml: annotation file not found \(listed in test.txt\)"):
        load_voc(root, "test")
    with pytest.raises(BenchError, match="no Annotations/ directory"):
        load_voc(tmp_path, "test")


def test_voc_missing_image_without_size_is_counted_skip(tmp_path):
    root = make_voc(tmp_path / "voc")
    (root / "JPEGImages" / "img3.jpg").unlink()
    ds = load_voc(root, "trainval")
    assert len(ds.images) == 2 and ds.info["skipped"]["unreadable_image"] == 1
    assert "img3" in ds.info["problem_examples"]["unreadable_image"][0]


def test_bccd_counts_and_zero_size_boxes(bccd_root):
    splits = load("bccd")
    tr, te = splits["train"], splits["test"]
    assert (len(tr), len(te)) == (292, 72)
    assert [c["name"] for c in tr.categories] == ["Platelets", "RBC", "WBC"] and tr.categories == te.categories
    kept = len(tr.annotations) + len(te.annotations)
    skipped = sum(tr.info["skipped"].values()) + sum(te.info["skipped"].values())
    assert (kept, skipped) == (4886, 2) and kept + skipped == 4888
    zero = tr.info["problem_examples"]["zero_size_box"] + te.info["problem_examples"].get("zero_size_box", [])
    assert any("BloodImage_00338.xml" in z for z in zero) and any("BloodImage_00343.xml" in z for z in zero)
    names = tr.category_names()
    per_class = {}
    for a in tr.annotations + te.annotations:
        per_class[names[a["category_id"]]] = per_class.get(names[a["category_id"]], 0) + 1
    assert per_class == {"RBC": 4155 - 2, "WBC": 372, "Platelets": 361}
    assert all(im["width"] == 640 and im["height"] == 480 for im in tr.images + te.images)
    assert all(tr.image_path(im).is_file() for im in tr.images[:5])  # <path> from the author's machine ignored
    b = tr.annotations[0]["bbox"]
    x1, y1, x2, y2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    assert min(x1, y1) >= 0 and x2 <= 640 and y2 <= 480


# ---- YOLO ---------------------------------------------------------------------------------------------------
def test_yolo_loads_and_counts(tmp_path):
    root = make_yolo(tmp_path / "y")
    ds = load_yolo(root, "train")
    assert [c["name"] for c in ds.categories] == ["a", "b"]
    assert [im["file_name"] for im in ds.images] == ["bg.png", "p.png", "q.jpg"]
    assert [(im["width"], im["height"]) for im in ds.images] == [(20, 20), (100, 50), (40, 40)]
    by = boxes_by_file(ds)
    assert by["bg"] == []
    assert by["p"] == sorted([("a", 40.0, 15.0, 20.0, 20.0, 0), ("b", 5.0, 5.0, 10.0, 10.0, 0)])
    q = by["q"]
    assert ("b", 0.0, 0.0, 20.0, 20.0, 0) in q
    assert any(x[0] == "a" and np.allclose(x[1:5], [34.0, 16.0, 6.0, 8.0]) for x in q)  # clipped at the right edge
    assert any(x[0] == "a" and np.allclose(x[1:5], [4.0, 4.0, 8.0, 8.0]) for x in q)  # polygon -> its box
    assert ds.info["skipped"] == {"unknown_category": 1, "zero_size_box": 1, "label_without_image": 1}
    assert ds.info["fixed"] == {"box_clipped_to_image": 1} and ds.info["notes"] == {"polygon_label": 1}
    assert "labels/train/q.txt: line 2" in ds.info["problem_examples"]["unknown_category"][0]
    assert ds.image_root == root / "images" / "train"


def test_yolo_corrupt_image_is_counted_skip(tmp_path):
    root = make_yolo(tmp_path / "y")
    (root / "images" / "train" / "q.jpg").write_bytes(b"not really a jpeg")
    ds = load_yolo(root, "train")
    assert [im["file_name"] for im in ds.images] == ["bg.png", "p.png"]
    assert ds.info["skipped"]["unreadable_image"] == 1
    assert "q.jpg: not a readable image" in ds.info["problem_examples"]["unreadable_image"][0]


@pytest.mark.parametrize("line, message", [
    ("0 0.5 0.5 0.2", "line 1: expected 5 values 'class cx cy w h' (or a polygon), got 4"),
    ("0 0.5 0.5 0.2 0.2 0.9", "got 6"),
    ("cat 0.5 0.5 0.2 0.2", "line 1: expected numbers"),
    ("1.5 0.5 0.5 0.2 0.2", "class must be a non-negative integer"),
])
def test_yolo_malformed_label_names_file_and_line(tmp_path, line, message):
    root = make_yolo(tmp_path / "y")
    (root / "labels" / "train" / "p.txt").write_text(line + "\n")
    with pytest.raises(BenchError) as exc:
        load_yolo(root, "train")
    assert message in str(exc.value) and "p.txt" in str(exc.value)


def test_yolo_class_names_sources(tmp_path):
    forms = {
        "names: [a, 'b c', \"d\"]\n": ["a", "b c", "d"],
        "nc: 2\nnames:\n  - a\n  - b  # comment\ntrain: x\n": ["a", "b"],
        "names:\n  0: a\n  1: 'b: c'\n": ["a", "b: c"],
        "names: ['a', 'b',\n        'c']\n": ["a", "b", "c"],
        "names: {0: a, 1: b}\n": ["a", "b"],
    }
    for text, expected in forms.items():
        (tmp_path / "data.yaml").write_text(text)
        assert yolo_class_names(tmp_path) == expected, text
    (tmp_path / "data.yaml").write_text("nc: 5\nnames: [a, b]\n")  # one of the two is wrong: say so
    with pytest.raises(BenchError, match=r"data.yaml: nc is 5 but names lists 2 classes"):
        yolo_class_names(tmp_path)
    (tmp_path / "data.yaml").unlink()
    (tmp_path / "classes.txt").write_text("x\ny\n\n")
    assert yolo_class_names(tmp_path) == ["x", "y"]
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(BenchError, match="no class names: expected data.yaml with 'names' or classes.txt"):
        yolo_class_names(tmp_path)
    (tmp_path / "data.yaml").write_text("names:\n  0: a\n  2: b\n")
    with pytest.raises(BenchError, match="data.yaml: 'names' must map every index"):
        yolo_class_names(tmp_path)
    (tmp_path / "data.yaml").write_text("train: x\n")
    with pytest.raises(BenchError, match="data.yaml: no 'names' key"):
        yolo_class_names(tmp_path)


def test_yolo_structure_errors(tmp_path):
    root = make_yolo(tmp_path / "y")
    with pytest.raises(BenchError, match=r"no images/test/ directory \(available splits: train, val\)"):
        load_yolo(root, "test")
    splits = load(root)
    assert set(splits) == {"train", "test"} and splits["test"].info["split"] == "val"


# ---- round trips --------------------------------------------------------------------------------------------
def make_roboflow(root: Path) -> Path:
    """A Roboflow YOLO export: <split>/images + <split>/labels, data.yaml with `../<split>/images` entries."""
    root.mkdir(parents=True)
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\ntest: ../test/images\n"
                                    "nc: 2\nnames: ['cell', 'dot']\n")
    for split, files in {"train": ["a.jpg", "b.png"], "valid": ["c.png"], "test": ["d.png"]}.items():
        for k, f in enumerate(files):
            write_image(root / split / "images" / f, 40 + 10 * k, 30)
            lbl = root / split / "labels" / f"{Path(f).stem}.txt"
            lbl.parent.mkdir(parents=True, exist_ok=True)
            lbl.write_text(f"{k % 2} 0.5 0.5 0.5 0.5\n")
    (root / "train" / "labels" / "stray.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    return root


def test_yolo_roboflow_export_loads_through_its_data_yaml(tmp_path):
    root = make_roboflow(tmp_path / "rf")
    ds = load_yolo(root, "train")
    assert [im["file_name"] for im in ds.images] == ["a.jpg", "b.png"] and ds.image_root == root / "train" / "images"
    assert boxes_by_file(ds) == {"a": [("cell", 10.0, 7.5, 20.0, 15.0, 0)], "b": [("dot", 12.5, 7.5, 25.0, 15.0, 0)]}
    assert ds.info["split_from"] == "'train' in data.yaml"
    assert ds.info["skipped"] == {"label_without_image": 1}
    assert "train/labels/stray.txt" in ds.info["problem_examples"]["label_without_image"][0]
    splits = load(root)  # the folder: a data.yaml with splits is enough to recognise YOLO
    assert set(splits) == {"train", "test"} and splits["test"].info["split"] == "test"
    assert [im["file_name"] for im in splits["test"].images] == ["d.png"]
    by_yaml = load(root / "data.yaml")  # or the yaml file itself
    assert by_yaml["train"].annotations == splits["train"].annotations and by_yaml["train"].name == "rf/train"


def test_yolo_data_yaml_with_path_lists_and_layout_fallback(tmp_path):
    root = tmp_path / "u"
    for f in ("x.png", "y.png", "z.png"):
        write_image(root / "data" / "images" / "all" / f, 20, 20)
        (root / "data" / "labels" / "all").mkdir(parents=True, exist_ok=True)
        (root / "data" / "labels" / "all" / f"{f[0]}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data" / "train.txt").write_text("./images/all/x.png\nimages/all/y.png\n# comment\nimages/all/gone.png\n")
    write_image(root / "images" / "val" / "v.png", 10, 10)  # the images/<split> layout beside the yaml
    (root / "coco8.yaml").write_text("path: data\ntrain: [train.txt, images/all/z.png]\nval: nowhere/images\n"
                                    "names: {0: thing}\n")
    ds = load_yolo(root / "coco8.yaml", "train")
    assert [im["file_name"] for im in ds.images] == ["x.png", "y.png", "z.png"]
    assert ds.image_root == root / "data" / "images" / "all" and len(ds.annotations) == 3
    assert ds.info["skipped"] == {"listed_image_missing": 1}
    assert "train.txt: line 4: images/all/gone.png" in ds.info["problem_examples"]["listed_image_missing"][0]
    val = load_yolo(root / "coco8.yaml", "val")  # the yaml's val does not exist: images/val/ does
    assert val.info["split_from"] == "images/val/" and [im["file_name"] for im in val.images] == ["v.png"]
    (root / "images" / "val" / "v.png").unlink()
    (root / "images" / "val").rmdir()
    with pytest.raises(BenchError, match=r"coco8.yaml: split 'val': .*nowhere/images does not exist"):
        load_yolo(root / "coco8.yaml", "val")
    (root / "coco8.yaml").write_text("train: 3\nnames: [a]\n")
    with pytest.raises(BenchError, match="'train' must be a path or a list of paths, got 3"):
        load_yolo(root / "coco8.yaml", "train")


def test_round_trip_coco_voc_yolo_coco(tmp_path):
    src = load_coco(make_coco(tmp_path / "src"))
    save_voc(src, tmp_path / "voc", "trainval")
    voc = load_voc(tmp_path / "voc", "trainval")
    assert sorted(c["name"] for c in voc.categories) == ["cat", "dog"]
    assert_same_boxes(src, voc, tol=1.0)  # VOC stores integer pixels
    assert all(voc.image_path(im).is_file() for im in voc.images)
    assert sum(a["ignore"] for a in voc.annotations) == 1  # the crowd box comes back as difficult

    summary = save_yolo(voc, tmp_path / "yolo", "train")
    assert summary["ignored_boxes_left_out"] == 1 and summary["missing_source_images"] == 0
    yolo = load_yolo(tmp_path / "yolo", "train")
    assert_same_boxes(voc, yolo, tol=1e-3, skip_ignored=True)  # 6 decimals of the image size

    save_coco(yolo, tmp_path / "back.json")
    back = load_coco(tmp_path / "back.json")
    assert_same_boxes(yolo, back, tol=0)
    assert all(back.image_path(im).is_file() for im in back.images)


def test_round_trip_coco_yolo_exact_to_format_precision(tmp_path):
    src = load_coco(make_coco(tmp_path / "src"))
    save_yolo(src, tmp_path / "yolo", "train", images="copy")
    yolo = load_yolo(tmp_path / "yolo", "train")
    assert not (tmp_path / "yolo" / "images" / "train" / "a.png").is_symlink()
    assert (tmp_path / "yolo" / "images" / "train" / "sub" / "b.jpg").is_file()  # sub-folders kept
    assert_same_boxes(src, yolo, tol=1e-4 * 60, skip_ignored=True)
    with pytest.raises(BenchError, match="data.yaml lists other class names"):
        save_yolo(DetectionDataset(src.images, [], [{"id": 1, "name": "zebra"}]), tmp_path / "yolo", "val")


def test_round_trip_bccd_voc_coco_voc_is_exact(bccd_root, tmp_path):
    ds = load_voc(bccd_root, "test")
    save_coco(ds, tmp_path / "test.json")
    coco = load_coco(tmp_path / "test.json")
    assert coco.annotations == ds.annotations and coco.image_root.resolve() == ds.image_root.resolve()
    save_voc(coco, tmp_path / "voc", "test", images="none")
    again = load_voc(tmp_path / "voc", "test")
    assert_same_boxes(ds, again, tol=0)
    assert not (tmp_path / "voc" / "JPEGImages").exists()


def test_voc_writer_never_writes_zero_size_boxes(tmp_path):
    ds = DetectionDataset([{"id": 1, "file_name": "x.png", "width": 20, "height": 20}],
                          [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [3.2, 4.4, 0.4, 0.5], "ignore": 0}],
                          [{"id": 1, "name": "t"}])
    save_voc(ds, tmp_path, "test", images="none")
    back = load_voc(tmp_path, "test")
    assert len(back.annotations) == 1 and back.info["skipped"] == {}
    assert back.annotations[0]["bbox"] == [3.0, 4.0, 2.0, 2.0]  # the smallest box VOC can hold (within 1 px)


@pytest.mark.parametrize("ids", [
    [1, 2, 3, 4, 5],  # dense and increasing: the lookup table
    [5, 3, 9, 1, 7],  # dense, unordered
    [3, 1, 3, 2, 1],  # duplicates: the first row wins (sorted search)
    [10 ** 12, 7, 10 ** 15],  # sparse: sorted search
    [-4, -2, 0, 2],  # negative ids
    [42],
])
def test_rows_by_id_is_a_first_wins_dict_lookup(ids):
    from benchmark.datasets.core import rows_by_id

    first: dict = {}
    for row, i in enumerate(ids):
        first.setdefault(i, row)
    wanted = sorted(set(ids)) + [min(ids) - 1, max(ids) + 1, 6, 0, 10 ** 13] + list(reversed(ids))
    got = rows_by_id(np.array(ids, np.int64), np.array(wanted, np.int64))
    assert got.tolist() == [first.get(w, -1) for w in wanted]
    assert rows_by_id(np.zeros(0, np.int64), np.array([1, 2])).tolist() == [-1, -1]


def test_coco_duplicate_annotation_ids_out_of_order_are_an_error(tmp_path):
    data = coco_dict()
    data["annotations"][-1]["id"] = data["annotations"][0]["id"]  # not adjacent: the increasing-ids shortcut fails
    with pytest.raises(BenchError, match="duplicate annotation id"):
        load_coco(make_coco(tmp_path, data))


def write_sideways_jpeg(path: Path, orientation: int = 6) -> np.ndarray:
    """A 40x20 JPEG stored sideways with an EXIF orientation tag; returns its stored pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :10] = (255, 0, 0)  # a red band on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, exif=exif.tobytes(), quality=95)
    return arr


def test_exif_orientation_gives_the_upright_image_unless_annotated_as_stored(tmp_path):
    from PIL import ImageOps

    from benchmark.datasets.images import decode_problem, image_size, open_rgb
    from methods._core.data import load_image

    path = tmp_path / "y" / "images" / "train" / "side.jpg"
    write_sideways_jpeg(path)
    with Image.open(path) as im:
        upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert image_size(path) == (20, 40) and upright.shape == (40, 20, 3)
    assert np.array_equal(np.asarray(open_rgb(path)), upright)
    assert open_rgb(path, (20, 40)).size == (20, 40) and open_rgb(path, (40, 20)).size == (40, 20)  # stored size
    assert decode_problem(path, 20, 40) is None and decode_problem(path, 40, 20) is None
    assert "size mismatch" in decode_problem(path, 30, 30)
    write_image(tmp_path / "plain.png", 40, 20)
    assert image_size(tmp_path / "plain.png") == (40, 20)
    # YOLO labels are normalised to the upright image (Ultralytics' convention)
    root = tmp_path / "y"
    (root / "data.yaml").write_text("names: [band]\n")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "side.txt").write_text("0 0.25 0.5 0.5 0.5\n")
    ds = load_yolo(root, "train")
    assert (ds.images[0]["width"], ds.images[0]["height"]) == (20, 40)
    assert ds.annotations[0]["bbox"] == [0.0, 10.0, 10.0, 20.0]
    pixels = load_image(ds, ds.images[0])
    assert tuple(pixels.shape) == (3, 40, 20) and np.array_equal(pixels.permute(1, 2, 0).numpy(), upright)
    stored = dict(ds.images[0], width=40, height=20)  # e.g. a COCO file that recorded the stored size
    assert tuple(load_image(ds, stored).shape) == (3, 20, 40)


def test_voc_lookalike_class_names_are_noted(tmp_path):
    """'a' and 'A ' would train and score as two classes: the loader keeps them apart (the data may mean it) but
    notes it, with the object counts; a fixed class list has nothing to note."""
    root = make_voc(tmp_path / "voc")
    (root / "Annotations" / "img2.xml").write_text(voc_xml("img2.jpg", [("A ", (1, 1, 10, 10), 0),
                                                                         ("b", (5, 5, 9, 9), 0)]))
    ds = load_voc(root, "trainval")
    assert [c["name"] for c in ds.categories] == ["A", "a", "b"]  # <name> is stripped
    assert ds.info["notes"] == {"lookalike_class_names": 1}
    (example,) = ds.info["problem_examples"]["lookalike_class_names"]
    assert "'A' (1 object) and 'a' (2 objects)" in example and "--classes" in example
    assert "lookalike_class_names" not in load_voc(root, "trainval", classes=["a", "b"]).info["notes"]
    assert "lookalike_class_names" not in load_voc(make_voc(tmp_path / "v2"), "trainval").info["notes"]
