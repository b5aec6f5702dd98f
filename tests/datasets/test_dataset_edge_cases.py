"""Dataset inputs a new user has: split names repeated across splits, Darknet-style labels, byte-order marks,
non-finite values, odd category names and yamls naming one folder twice. Each case failed before its fix."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from PIL import Image

from benchmark.cli import cli
from benchmark.datasets import load, load_coco, load_voc, load_yolo, save_voc
from benchmark.datasets.yolo import save_yolo, yolo_class_names
from benchmark.errors import BenchError


def write_image(path: Path, w: int = 40, h: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def yolo_two_splits_same_names(root: Path) -> Path:
    """`images/train/0001.jpg` and `images/val/0001.jpg`: different images, one name (the usual numbering)."""
    write_image(root / "images" / "train" / "0001.jpg", 100, 80)
    write_text(root / "labels" / "train" / "0001.txt", "0 0.5 0.5 0.2 0.2\n0 0.2 0.2 0.1 0.1\n")
    write_image(root / "images" / "val" / "0001.jpg", 60, 50)
    write_text(root / "labels" / "val" / "0001.txt", "1 0.5 0.5 0.4 0.4\n")
    write_text(root / "data.yaml", "names: {0: cat, 1: dog}\n")
    return root


def test_convert_to_voc_keeps_both_splits_when_they_share_file_names(tmp_path):
    src = yolo_two_splits_same_names(tmp_path / "y")
    res = CliRunner().invoke(cli, ["data", "convert", str(src), str(tmp_path / "voc"), "--to", "voc"])
    assert res.exit_code == 0, res.output
    assert "renamed images 1" in res.output
    back = load(tmp_path / "voc")
    names = {s: [back[s].category_names()[a["category_id"]] for a in back[s].annotations] for s in back}
    assert names == {"train": ["cat", "cat"], "test": ["dog"]}  # the val xml used to replace the train one
    assert [(im["width"], im["height"]) for im in back["train"].images] == [(100, 80)]
    assert [(im["width"], im["height"]) for im in back["test"].images] == [(60, 50)]
    for s in back:
        assert all(Path(back[s].image_path(im)).resolve().is_file() for im in back[s].images)
    with Image.open(back["train"].image_path(back["train"].images[0])) as im:
        assert im.size == (100, 80)


def test_save_voc_gives_two_images_of_one_stem_their_own_xml(tmp_path):
    write_image(tmp_path / "img" / "a.jpg", 40, 30)
    write_image(tmp_path / "img" / "a.png", 20, 20)
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
                       {"id": 2, "file_name": "a.png", "width": 20, "height": 20}],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
                            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [2, 2, 5, 5]},
                            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [9, 9, 5, 5]}]}
    (tmp_path / "train.json").write_bytes(orjson.dumps(coco))
    summary = save_voc(load_coco(tmp_path / "train.json", tmp_path / "img"), tmp_path / "voc", "trainval")
    assert summary["renamed_images"] == 1
    back = load_voc(tmp_path / "voc", "trainval")
    assert len(back.images) == 2 and len(back.annotations) == 3 and not back.info["skipped"]


def test_coco_iscrowd_as_text_is_one_line_error_not_a_crowd_box(tmp_path):
    """`"iscrowd": "0"` (a string exporter) is truthy: it silently made every box crowd, so none was trained on."""
    def coco(crowd):
        return {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
                "categories": [{"id": 1, "name": "cat"}],
                "annotations": [{"id": k, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "iscrowd": c}
                                for k, c in enumerate(crowd, start=1)]}

    (tmp_path / "train.json").write_bytes(orjson.dumps(coco([0, "0"])))
    with pytest.raises(BenchError, match=r"train.json: annotation 2: iscrowd must be 0 or 1, got '0'"):
        load_coco(tmp_path / "train.json")
    (tmp_path / "train.json").write_bytes(orjson.dumps(coco([0, 1, True, False, 0.0, None])))
    assert [a["iscrowd"] for a in load_coco(tmp_path / "train.json").annotations] == [0, 1, 1, 0, 0, 0]


@pytest.mark.parametrize("field, value, message", [
    ("difficult", "0", "difficult must be 0 or 1, got '0'"),  # read as truthy: the box silently ignored
    ("ignore", "no", "ignore must be 0 or 1, got 'no'"),
    ("area", "big", "area must be a number >= 0 (or left out), got 'big'"),  # noise then blamed the bbox
    ("area", -5, "area must be a number >= 0 (or left out), got -5"),
])
def test_coco_flags_and_area_of_the_wrong_type_are_one_line_errors(tmp_path, field, value, message):
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
            "categories": [{"id": 1, "name": "cat"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], field: value}]}
    (tmp_path / "train.json").write_bytes(orjson.dumps(coco))
    with pytest.raises(BenchError, match=re.escape(f"train.json: annotation 1: {message}")):
        load_coco(tmp_path / "train.json")
    coco["annotations"][0][field] = 1 if field != "area" else 12.5
    (tmp_path / "train.json").write_bytes(orjson.dumps(coco))
    assert load_coco(tmp_path / "train.json").annotations[0]["ignore"] == (0 if field == "area" else 1)


def test_coco_category_name_that_is_not_text_is_one_line_error(tmp_path):
    write_image(tmp_path / "a.jpg")
    for name in (1, "", None):
        coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
                "categories": [{"id": 1, "name": name}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}]}
        (tmp_path / "train.json").write_bytes(orjson.dumps(coco))
        with pytest.raises(BenchError, match=r"train.json: categories\[0\] \(id 1\): name must be a non-empty "
                                             r"string, got "):
            load_coco(tmp_path / "train.json")
    # ... as `bench data check` / `convert` hit it (it was a TypeError / AttributeError traceback there)
    res = CliRunner().invoke(cli, ["data", "convert", str(tmp_path / "train.json"), str(tmp_path / "v"), "--to",
                                   "voc"])
    assert isinstance(res.exception, BenchError)


def test_yolo_labels_beside_the_images_are_a_counted_problem(tmp_path):
    root = tmp_path / "y"
    for n in "ab":
        write_image(root / "images" / "train" / f"{n}.jpg")
        write_text(root / "images" / "train" / f"{n}.txt", "0 0.5 0.5 0.2 0.2\n")  # Darknet style
    write_image(root / "images" / "train" / "bg.jpg")  # a background image: no label anywhere, nothing to say
    write_text(root / "data.yaml", "train: images/train\nval: images/train\nnames: [a]\n")
    ds = load_yolo(root, "train")
    assert len(ds.images) == 3 and ds.annotations == []
    assert ds.info["skipped"] == {"label_beside_image": 2}
    assert ds.info["problem_examples"]["label_beside_image"][0] == (
        "images/train/a.txt: ignored, the label of a.jpg is read from labels/train/a.txt")
    res = CliRunner().invoke(cli, ["data", "check", str(root), "--no-images", "--strict", "--split", "train"])
    assert res.exit_code == 1 and "label_beside_image: 2" in res.output


def test_yolo_image_listed_twice_is_loaded_once_and_counted(tmp_path):
    root = tmp_path / "y"
    for name in ("a.jpg", "b.jpg"):
        write_image(root / "images" / "train" / name)
        write_text(root / "labels" / "train" / name.replace(".jpg", ".txt"), "0 0.5 0.5 0.2 0.2\n")
    write_text(root / "train.txt", "images/train/a.jpg\nimages/train/b.jpg\n./images/train/a.jpg\n")
    write_text(root / "data.yaml", "train: train.txt\nnames: [a]\n")
    ds = load_yolo(root, "train")
    assert len(ds.images) == 2 and len(ds.annotations) == 2  # the boxes of a.jpg once, not twice
    assert ds.info["skipped"] == {"duplicate_image_in_split": 1}
    assert ds.info["problem_examples"]["duplicate_image_in_split"] == ["train.txt: a.jpg"]


def test_yolo_files_with_a_byte_order_mark_read_as_text(tmp_path):
    root = tmp_path / "y"
    write_image(root / "images" / "train" / "a.jpg")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_bytes("\ufeff0 0.5 0.5 0.2 0.2\r\n1 0.3 0.3 0.1 0.1\r\n".encode())
    (root / "classes.txt").write_bytes("\ufeffcat\r\ndog\r\n".encode())
    assert yolo_class_names(root) == ["cat", "dog"]  # was "\ufeffcat"
    ds = load_yolo(root, "train")
    assert sorted(a["category_id"] for a in ds.annotations) == [1, 2]  # was "line 1: expected numbers"


@pytest.mark.parametrize("cls", ["nan", "inf", "-inf"])
def test_yolo_non_finite_class_is_one_line_error(tmp_path, cls):
    root = tmp_path / "y"
    write_image(root / "images" / "train" / "a.jpg")
    write_text(root / "labels" / "train" / "a.txt", f"{cls} 0.5 0.5 0.2 0.2\n")
    write_text(root / "data.yaml", "names: [a]\n")
    with pytest.raises(BenchError, match=rf"a.txt: line 1: class must be a non-negative integer, got '{cls}'"):
        load_yolo(root, "train")  # was ValueError / OverflowError from int()


@pytest.mark.parametrize("size, got", [("<width>nan</width><height>30</height>", "nanx30"),
                                       ("<width>1e400</width><height>30</height>", "infx30"),
                                       ("<width>-40</width><height>30</height>", "-40x30"),
                                       ("<height>-30</height>", "?x-30")])
def test_voc_size_that_is_not_a_positive_number_is_one_line_error(tmp_path, size, got):
    root = tmp_path / "voc"
    write_image(root / "JPEGImages" / "a.jpg")
    write_text(root / "Annotations" / "a.xml", f"<annotation><filename>a.jpg</filename><size>{size}</size><object>"
               "<name>x</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
               "</annotation>")
    write_text(root / "ImageSets" / "Main" / "trainval.txt", "a\n")
    message = f"a.xml: <size>: width and height must be positive numbers, got {got}"
    with pytest.raises(BenchError, match=re.escape(message)):
        load_voc(root, "trainval")  # nan / inf: a traceback from int(); -40: an image of negative width


def test_voc_fractional_size_keeps_boxes_inside_the_image_it_records(tmp_path):
    root = tmp_path / "voc"
    write_image(root / "JPEGImages" / "a.jpg")
    write_text(root / "Annotations" / "a.xml", "<annotation><filename>a.jpg</filename><size><width>40.7</width>"
               "<height>30</height></size><object><name>x</name><bndbox><xmin>2</xmin><ymin>2</ymin>"
               "<xmax>40.6</xmax><ymax>9</ymax></bndbox></object></annotation>")
    write_text(root / "ImageSets" / "Main" / "trainval.txt", "a\n")
    ds = load_voc(root, "trainval")
    (im,), (a,) = ds.images, ds.annotations
    x, y, w, h = a["bbox"]
    assert im["width"] == 40 and x + w <= 40  # clipped to 40.7 once: the box ended outside its 40-px image


def test_noise_make_on_a_dataset_without_boxes_says_so(tmp_path):
    root = tmp_path / "y"
    write_image(root / "images" / "train" / "a.jpg")
    write_text(root / "data.yaml", "names: [a]\n")
    res = CliRunner().invoke(cli, ["noise", "make", "-d", str(root), "-l", "0.4", "-o", str(tmp_path / "n")])
    assert isinstance(res.exception, BenchError)
    assert "dataset has no annotations" in str(res.exception)  # was "dataset has no images"


def test_yolo_user_yaml_with_train_equal_to_val_keeps_its_train_split(tmp_path):
    root = tmp_path / "y"
    write_image(root / "images" / "train" / "a.jpg")
    write_text(root / "labels" / "train" / "a.txt", "0 0.5 0.5 0.2 0.2\n")
    write_text(root / "data.yaml", "train: images/train\nval: images/train\nnames: [a]\n")
    splits = load(root)
    assert sorted(splits) == ["test", "train"]  # the train split used to vanish ("dataset has no 'train' split")
    assert len(splits["train"].annotations) == 1
    # our own export of a lone test split (`train:` repeats the test images for Ultralytics) stays test-only
    res = CliRunner().invoke(cli, ["data", "convert", str(root), str(tmp_path / "out"), "--to", "yolo",
                                   "--split", "test"])
    assert res.exit_code == 0, res.output
    assert sorted(load(tmp_path / "out")) == ["test"]
    # ... and of a lone train split (`val:` repeats the train images) stays train-only: it read back as `test`
    res = CliRunner().invoke(cli, ["data", "convert", str(root), str(tmp_path / "out_train"), "--to", "yolo",
                                   "--split", "train"])
    assert res.exit_code == 0, res.output
    back = load(tmp_path / "out_train")
    assert sorted(back) == ["train"] and len(back["train"].annotations) == 1
    made = CliRunner().invoke(cli, ["noise", "make", "-d", str(tmp_path / "out_train"), "-l", "0.2",
                                    "-o", str(tmp_path / "noisy")])
    assert made.exit_code == 0, made.output


def test_convert_refuses_to_mix_into_an_earlier_export_or_overwrite_its_source(tmp_path):
    """Left-over label / image files of another export in `labels/<split>` would load as part of the new split;
    converting a dataset into its own folder rewrote its labels in place (polygons lost)."""
    src = yolo_two_splits_same_names(tmp_path / "y")
    runner = CliRunner()
    first = runner.invoke(cli, ["data", "convert", str(src), str(tmp_path / "out"), "--to", "yolo"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(cli, ["data", "convert", str(src), str(tmp_path / "out"), "--to", "yolo", "--overwrite"])
    assert again.exit_code == 0, again.output  # the same export again, replacing the earlier one
    other = tmp_path / "z"
    write_image(other / "images" / "train" / "b.jpg")
    write_text(other / "labels" / "train" / "b.txt", "0 0.5 0.5 0.2 0.2\n")
    write_text(other / "data.yaml", "names: {0: cat, 1: dog}\n")
    mixed = runner.invoke(cli, ["data", "convert", str(other), str(tmp_path / "out"), "--to", "yolo"])
    assert isinstance(mixed.exception, BenchError)
    assert "DST is not empty" in str(mixed.exception) and "--overwrite" in str(mixed.exception)
    assert len(load_yolo(tmp_path / "out", "train").images) == 1  # nothing of `z` was mixed in
    # the API refuses to mix too
    with pytest.raises(BenchError, match=r"labels/train already holds 1 file\(s\) this export does not write"):
        save_yolo(load_yolo(other, "train"), tmp_path / "out", "train")
    for dst in (src, src / "data.yaml"):
        inplace = runner.invoke(cli, ["data", "convert", str(dst), str(src), "--to", "yolo"])
        assert isinstance(inplace.exception, BenchError) and "own folder" in str(inplace.exception)
    coco = tmp_path / "c.json"
    runner.invoke(cli, ["data", "convert", str(src), str(coco), "--to", "coco", "--split", "train"])
    over = runner.invoke(cli, ["data", "convert", str(coco), str(coco), "--to", "coco", "--split", "train"])
    assert isinstance(over.exception, BenchError) and "overwrite the source file" in str(over.exception)
