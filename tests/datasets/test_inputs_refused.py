"""Issue 25, classes 4, 6, 7 (check) and 8: a noisy file as ground truth, undefined metrics shown as zero, a YOLO
yaml entry or a `true` id that checks clean, and the inputs that ended in tracebacks. Each is a one-line
`BenchError` (exit 2), a counted problem, or `–`."""

from __future__ import annotations

import json
import math
import re

import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.datasets import load
from benchmark.datasets.coco import load_coco
from benchmark.datasets.core import DetectionDataset
from benchmark.errors import BenchError
from benchmark.evaluation import evaluate_voc
from benchmark.io import write_json

CATS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


def _bench(capsys, *args) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        out = capsys.readouterr()
        return exc.code, out.out, out.err
    out = capsys.readouterr()
    return 0, out.out, out.err


def _one_line_error(rc: int, err: str, *words: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]


def _coco() -> dict:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 80} for i in (1, 2, 3)]
    anns = [{"id": k + 1, "image_id": im["id"], "category_id": 1 + k % 2, "bbox": [10.0, 10.0, 30.0, 20.0]}
            for k, im in enumerate(images)]
    return {"images": images, "annotations": anns, "categories": CATS}


# ---- class 4: a noisy file is no ground truth ----------------------------------------------------------------
@pytest.fixture
def noisy_files(tmp_path):
    from noise import make_noisy, write_noisy

    write_json(tmp_path / "clean.json", _coco())
    clean = load_coco(tmp_path / "clean.json")
    write_noisy(make_noisy(clean, "uniform", 0.4, seed=0), tmp_path / "noisy")
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in clean.annotations]
    write_json(tmp_path / "dets.json", dets)
    return tmp_path


def test_eval_refuses_a_noisy_file_naming_its_marker(noisy_files, capsys):
    rc, _, err = _bench(capsys, "eval", "--gt", noisy_files / "noisy" / "train.json", "--dt", noisy_files / "dets.json")
    _one_line_error(rc, err, "ground truth is a noisy file", "info.noisybox", "uniform", "--allow-noisy-gt")


def test_eval_refuses_clean_boxes_beside_noisy_ones_without_the_marker(noisy_files, capsys):
    data = json.loads((noisy_files / "noisy" / "train.json").read_text())
    data["info"].pop("noisybox")
    write_json(noisy_files / "stripped.json", data)
    rc, _, err = _bench(capsys, "eval", "--gt", noisy_files / "stripped.json", "--dt", noisy_files / "dets.json")
    _one_line_error(rc, err, "true_bbox", "annotation 1")


def test_eval_scores_a_noisy_file_when_asked_to(noisy_files, capsys):
    rc, out, err = _bench(capsys, "eval", "--gt", noisy_files / "noisy" / "train.json", "--dt",
                          noisy_files / "dets.json", "--allow-noisy-gt", "--metric", "voc")
    assert rc == 0, err
    assert "VOC AP50" in out


def test_eval_scores_the_clean_file(noisy_files, capsys):
    rc, out, err = _bench(capsys, "eval", "--gt", noisy_files / "clean.json", "--dt", noisy_files / "dets.json",
                          "--metric", "voc")
    assert rc == 0, err
    assert "VOC AP50 (mmdet eval_map, area, difficult ignored): 100.0" in out


# ---- class 6: undefined is not zero --------------------------------------------------------------------------
def _all_difficult() -> DetectionDataset:
    coco = _coco()
    for a in coco["annotations"]:
        a["ignore"] = 1
    return DetectionDataset.from_coco(coco)


def test_voc_ap50_without_counted_ground_truth_is_undefined():
    gt = _all_difficult()
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20], "score": 0.9}]
    out = evaluate_voc(gt, dets)
    assert out["AP50"] is None and out["per_class"] == {"a": None, "b": None}
    # one counted box, nothing found: a defined 0
    gt.annotations[0]["ignore"] = 0
    assert evaluate_voc(gt, [])["AP50"] == 0.0


def test_eval_prints_undefined_as_a_dash_and_writes_null(tmp_path, capsys):
    write_json(tmp_path / "gt.json", _all_difficult().to_coco())
    write_json(tmp_path / "dets.json", [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20], "score": 0.9}])
    rc, out, err = _bench(capsys, "eval", "--gt", tmp_path / "gt.json", "--dt", tmp_path / "dets.json",
                          "--json", tmp_path / "m.json")
    assert rc == 0, err
    assert "VOC AP50 (mmdet eval_map, area, difficult ignored): –" in out
    assert " 0.0" not in out  # COCO AP of only-crowd ground truth is undefined too
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["voc"]["AP50"] is None and metrics["coco"]["AP"] is None


def test_sweep_table_prints_undefined_as_a_dash():
    import pandas as pd

    from benchmark.runner.sweep import ap_table

    df = pd.DataFrame({"cell": ["c1", "c2"], "dataset": ["d", "d"], "method": ["m", "m"], "noise_level": [0.0, 0.4],
                       "VOC_AP50": [float("nan"), 0.5]})
    table = ap_table(df, ["c1", "c2"], "VOC_AP50")
    assert "nan" not in table and "–" in table and "50.0" in table


def test_report_tables_print_undefined_as_a_dash():
    """A level where VOC AP50 is undefined for every seed: `–` in markdown and html, `--` (an en dash) in LaTeX."""
    import pandas as pd

    from reports.tables import metric_table, to_html, to_latex, to_markdown

    frame = pd.DataFrame({"method": ["m", "m"], "noise_level": [0.0, 0.4], "seed": [0, 0],
                          "VOC_AP50": [0.5, float("nan")], "AP": [0.4, 0.3]})
    t = metric_table(frame, ["AP", "VOC_AP50"], "t")
    md = to_markdown(t)
    row = next(line for line in md.splitlines() if line.startswith("| m |"))
    assert row.endswith("| – |") and row.count("–") == 1 and "nan" not in md.lower().split()
    assert "–" in to_html(t) and " -- " in to_latex(t)


def _row(metrics: dict) -> dict:
    return {"schema_version": 1, "method": "m", "method_name": "M", "paper": {"title": "T"}, "dataset": "coco2017",
            "test_split": "val2017", "noise": {"model": "uniform", "level": 0.4, "rng": "numpy"},
            "detector": "Faster R-CNN", "backbone": "R50-FPN", "schedule": "1x", "extra_supervision": "none",
            "reported": {"source": "Table 1", "metrics": metrics}, "reproduced": None}


def test_leaderboard_row_with_fractions_is_refused():
    from leaderboard.schema import row_errors

    errors = row_errors(_row({"AP": 0.748, "AP50": 0.9}))
    assert len(errors) == 1 and "look like fractions" in errors[0] and "AP 0.748" in errors[0]
    assert row_errors(_row({"AP": 74.8, "AP50": 90.0})) == []
    assert row_errors(_row({"AP": 0.0})) == []  # a detector that found nothing: zeros are points too
    assert row_errors(_row({"AP": 0.5, "AP50": 1.2})) == []  # one value above 1: points


def test_leaderboard_reproduced_fractions_are_refused():
    from leaderboard.schema import row_errors

    row = _row({"AP": 30.0})
    row["reproduced"] = {"metrics": {"AP": {"mean": 0.3, "std": None, "n": 1}}, "cells": ["c"], "suite_version": "0",
                         "hardware": "cpu"}
    assert any("reproduced.metrics" in e and "fractions" in e for e in row_errors(row))


# ---- class 7: what `data check --strict` let through -------------------------------------------------------
def _yolo(root, yaml: str):
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(root / "images" / "val" / "a.jpg")
    (root / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(yaml)
    return root


def test_yolo_yaml_train_entry_that_does_not_exist_fails(tmp_path, capsys):
    root = _yolo(tmp_path, "train: images/train\nval: images/val\nnames: [a]\n")
    rc, _, err = _bench(capsys, "data", "check", root, "--strict", "--no-images")
    _one_line_error(rc, err, "data.yaml", "split 'train'", "images/train does not exist")


def test_yolo_yaml_entry_read_from_the_layout_folder_is_a_problem(tmp_path, capsys):
    root = _yolo(tmp_path, "train: elsewhere/train\nval: images/val\nnames: [a]\n")
    (root / "images" / "train").mkdir()
    Image.new("RGB", (20, 10)).save(root / "images" / "train" / "b.jpg")
    rc, out, err = _bench(capsys, "data", "check", root, "--strict", "--no-images")
    assert rc == 1, out + err
    assert "missing_split_entry: 1" in out and "elsewhere/train" in out


def test_coco_annotation_with_boolean_ids_is_refused(tmp_path):
    for key in ("image_id", "category_id"):
        coco = _coco()
        coco["annotations"][1][key] = True
        write_json(tmp_path / "c.json", coco)
        with pytest.raises(BenchError, match=f"annotations\\[1\\] \\(id 2\\): {key} must be an integer id, got true"):
            load_coco(tmp_path / "c.json")


# ---- class 8: tracebacks ---------------------------------------------------------------------------------------
def _voc(root, split_text: bytes):
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "trainval.txt").write_bytes(split_text)
    return root


def test_voc_split_file_not_utf8(tmp_path, capsys):
    root = _voc(tmp_path, b"img\xff\xfe\n")
    rc, _, err = _bench(capsys, "data", "check", root, "--no-images")
    _one_line_error(rc, err, "trainval.txt", "not a UTF-8 text file")


def test_voc_split_ids_with_sub_folders(tmp_path, capsys):
    root = _voc(tmp_path, b"a/b\n")
    (root / "Annotations" / "a").mkdir()
    (root / "Annotations" / "a" / "b.xml").write_text("<annotation><size><width>5</width><height>5</height></size>"
                                                      "</annotation>")
    rc, _, err = _bench(capsys, "data", "check", root, "--no-images")
    _one_line_error(rc, err, "trainval.txt", "line 1", "'a/b'", "no sub-folders")


def test_voc_directory_where_an_xml_is_expected(tmp_path, capsys):
    root = _voc(tmp_path, b"x\n")
    (root / "Annotations" / "x.xml").mkdir()
    rc, _, err = _bench(capsys, "data", "check", root, "--no-images")
    _one_line_error(rc, err, "x.xml", "is a directory")


def test_yolo_yaml_not_utf8(tmp_path, capsys):
    root = _yolo(tmp_path, "")
    (root / "data.yaml").write_bytes(b"names: [\xff]\n")
    rc, _, err = _bench(capsys, "data", "check", root, "--no-images")
    _one_line_error(rc, err, "data.yaml", "not a UTF-8 text file")


def test_yolo_image_list_not_utf8(tmp_path, capsys):
    root = _yolo(tmp_path, "train: list.txt\nval: images/val\nnames: [a]\n")
    (root / "list.txt").write_bytes(b"images/val/a.jpg\n\xff\xfe\n")
    rc, _, err = _bench(capsys, "data", "check", root, "--no-images")
    _one_line_error(rc, err, "list.txt", "not a UTF-8 text file")


def test_null_byte_in_a_leaderboard_field(tmp_path, capsys):
    from leaderboard.rows import load_rows, validate_all

    (tmp_path / "e").mkdir()
    row = _row({"AP": 30.0})
    row["method"] = "m\x00x"
    write_json(tmp_path / "e" / "r.json", row)
    problems = validate_all(tmp_path / "e")
    assert problems and "method: contains the control character '\\x00'" in problems[0]
    with pytest.raises(BenchError, match="control character"):
        load_rows(tmp_path / "e")
    rc, _, err = _bench(capsys, "leaderboard", "render", "--entries", tmp_path / "e", "--out", tmp_path / "out")
    _one_line_error(rc, err, "method: contains the control character")


def test_seeds_count_too_large_is_refused_before_the_range_is_built():
    from benchmark.runner.grid import MAX_SEEDS, parse_seeds

    for text, words in (("10000000000", "the count 10000000000"), ("0..10000000000", "the range 0..10000000000"),
                        ("1,99999999999", "seed 99999999999 is too large")):
        with pytest.raises(BenchError, match=words):
            parse_seeds(text)
    assert parse_seeds(str(MAX_SEEDS))[-1] == MAX_SEEDS - 1


def test_run_with_too_many_seeds_is_one_line(tmp_path, capsys):
    rc, _, err = _bench(capsys, "run", "--method", "faster_rcnn", "--noise", "0", "--seeds", "10000000000",
                        "--out", tmp_path / "st", "--dry-run")
    _one_line_error(rc, err, "--seeds", "at most")


def test_voc_and_yolo_still_load(tmp_path):
    """The checks above refuse only what is wrong: a well-formed VOC split and YOLO yaml load as before."""
    root = _voc(tmp_path / "voc", b"x\n")
    (root / "Annotations" / "x.xml").write_text(
        "<annotation><size><width>50</width><height>40</height></size><object><name>a</name><bndbox><xmin>2</xmin>"
        "<ymin>3</ymin><xmax>12</xmax><ymax>13</ymax></bndbox></object></annotation>")
    ds = load(root)["train"]
    assert ds.annotations[0]["bbox"] == [1.0, 2.0, 11.0, 11.0] and math.isclose(ds.annotations[0]["area"], 121.0)
    y = _yolo(tmp_path / "y", "val: images/val\nnames: [a]\n")
    assert len(load(y)["test"].annotations) == 1


# ---- found by the property tests (tests/test_properties_*.py) --------------------------------------------------
@pytest.mark.parametrize("value, shown", [([], "[]"), ({}, "{}"), ([1], "[1]")])
def test_coco_annotation_with_a_list_or_object_as_id_is_one_line(tmp_path, value, shown):
    for key in ("image_id", "category_id"):
        coco = _coco()
        coco["annotations"][0][key] = value
        write_json(tmp_path / "c.json", coco)
        with pytest.raises(BenchError, match=f"{key} must be an integer id, got {re.escape(shown)}"):
            load_coco(tmp_path / "c.json")


@pytest.mark.parametrize("names, words", [
    ("{0.5: a}", "keys must be class indices 0..K-1, got 0.5"),
    ("{true: a}", "keys must be class indices 0..K-1, got True"),
    ("{0: a, '0': b}", "maps index 0 twice"),
    ("[a, null]", "class name must be non-empty text, got None"),
    ("[a, no]", "got False (quote it"),
    ("[[1, 2]]", "class name must be non-empty text, got [1, 2]"),
])
def test_yolo_names_that_are_no_class_names(tmp_path, names, words):
    root = _yolo(tmp_path, f"val: images/val\nnames: {names}\n")
    with pytest.raises(BenchError, match=re.escape(words)):
        load(root)


def test_yolo_names_as_numbers_or_index_strings_still_load(tmp_path):
    root = _yolo(tmp_path, "val: images/val\nnames: {'0': 7}\n")
    assert [c["name"] for c in load(root)["test"].categories] == ["7"]


def test_leaderboard_row_mixing_a_fraction_with_points_is_refused():
    """AP is the mean of AP at 10 IoU thresholds (AP50 one of them): AP < AP50 / 10 cannot be, whatever the unit."""
    from leaderboard.schema import row_errors

    errors = row_errors(_row({"AP": 0.748, "AP50": 57.9}))
    assert len(errors) == 1 and "AP 0.748 is below AP50 / 10" in errors[0]
    assert any("below AP75 / 10" in e for e in row_errors(_row({"AP": 2.0, "AP50": 5.0, "AP75": 35.0})))
    assert row_errors(_row({"AP": 5.7, "AP50": 57.9})) == []  # rounded to one decimal: 5.79 is 5.8 or 5.7
    assert row_errors(_row({"AP": 9.1, "AP50": 40.0, "AP75": 2.0})) == []  # a heavily noisy, legitimate row


def test_bench_errors_stay_one_line_whatever_the_file_name(tmp_path, capsys):
    """A line break in a file name or in a value quoted from the file is escaped, as Python writes it."""
    assert str(BenchError("got 'a\nb'", path="x\r.json")) == "x\\r.json: got 'a\\nb'"
    root = _yolo(tmp_path, 'train: "images/tr\\nain"\nval: images/val\nnames: [a]\n')
    rc, _, err = _bench(capsys, "data", "check", root)
    _one_line_error(rc, err, "split 'train'", "images/tr\\nain does not exist")
