"""Detections from other tools (mmdet, detectron2, ultralytics), every bad input, and `bench eval` end to end."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import cli, main
from benchmark.datasets.core import DetectionDataset
from benchmark.errors import BenchError
from benchmark.evaluation import evaluate_coco, evaluate_voc, load_detections, to_arrays
from benchmark.io import write_json

CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 8, "name": "dog"}, {"id": 5, "name": "bird"}]  # id order: 3, 5, 8


def small_gt() -> dict:
    images = [{"id": 10 + i, "file_name": f"images/{i:06d}.jpg", "width": 200, "height": 150} for i in range(4)]
    anns = [
        {"id": 1, "image_id": 10, "category_id": 3, "bbox": [10, 10, 50, 40]},
        {"id": 2, "image_id": 10, "category_id": 8, "bbox": [100, 20, 60, 80]},
        {"id": 3, "image_id": 11, "category_id": 5, "bbox": [30, 30, 20, 20]},
        {"id": 4, "image_id": 11, "category_id": 3, "bbox": [120, 60, 40, 40], "difficult": 1},
        {"id": 5, "image_id": 12, "category_id": 8, "bbox": [0, 0, 100, 100]},
        {"id": 6, "image_id": 12, "category_id": 8, "bbox": [150, 100, 30, 30], "iscrowd": 1},
    ]  # image 13 has no boxes
    return {"images": images, "annotations": anns, "categories": CATEGORIES}


def coco_results() -> list[dict]:
    return [
        {"image_id": 10, "category_id": 3, "bbox": [11.0, 9.0, 50.0, 42.0], "score": 0.9},
        {"image_id": 10, "category_id": 8, "bbox": [100.0, 25.0, 58.0, 70.0], "score": 0.8},
        {"image_id": 10, "category_id": 5, "bbox": [0.0, 100.0, 20.0, 20.0], "score": 0.3},
        {"image_id": 11, "category_id": 5, "bbox": [31.0, 29.0, 20.0, 22.0], "score": 0.7},
        {"image_id": 11, "category_id": 3, "bbox": [121.0, 60.0, 40.0, 40.0], "score": 0.6},
        {"image_id": 12, "category_id": 8, "bbox": [5.0, 0.0, 90.0, 100.0], "score": 0.95},
        {"image_id": 12, "category_id": 8, "bbox": [150.0, 100.0, 25.0, 25.0], "score": 0.5},
        {"image_id": 13, "category_id": 3, "bbox": [10.0, 10.0, 30.0, 30.0], "score": 0.4},
    ]


@pytest.fixture
def gt() -> DetectionDataset:
    return DetectionDataset.from_coco(small_gt())


def _xyxy(b):
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]


def _same(a: list[dict], b: list[dict]) -> None:
    key = lambda d: (d["image_id"], d["category_id"], d["score"])  # noqa: E731
    a, b = sorted(a, key=key), sorted(b, key=key)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x["image_id"], x["category_id"]) == (y["image_id"], y["category_id"])
        assert x["bbox"] == pytest.approx(y["bbox"], abs=1e-4) and x["score"] == pytest.approx(y["score"], abs=1e-6)


# ---- formats -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["results.json", "model.bbox.json", "coco_instances_results.json"])
def test_coco_style_json_files(tmp_path, gt, name):
    dets = coco_results()
    if name.startswith("coco_instances"):  # detectron2 adds fields we must ignore
        dets = [{**d, "segmentation": {"size": [150, 200], "counts": "abc"}} for d in dets]
    path = tmp_path / name
    path.write_text(json.dumps(dets))
    loaded = load_detections(path, gt)
    _same(loaded, coco_results())
    assert set(loaded[0]) == {"image_id", "category_id", "bbox", "score"}
    assert evaluate_coco(gt, loaded) == evaluate_coco(gt, coco_results())


def _label(cid: int) -> int:  # default label order: categories by id (3, 5, 8)
    return [3, 5, 8].index(cid)


def test_mmdet3_pickle(tmp_path, gt):
    per_image: dict[int, list] = {}
    for d in coco_results():
        per_image.setdefault(d["image_id"], []).append(d)
    results = [{"img_id": iid, "img_path": f"x/{iid}.jpg", "ori_shape": (150, 200),
                "pred_instances": {"bboxes": np.array([_xyxy(d["bbox"]) for d in ds], dtype=np.float32),
                                   "scores": np.array([d["score"] for d in ds], dtype=np.float32),
                                   "labels": np.array([_label(d["category_id"]) for d in ds])}}
               for iid, ds in per_image.items()]
    results.append({"img_id": 13, "pred_instances": {"bboxes": np.zeros((0, 4), np.float32),
                                                     "scores": np.zeros(0, np.float32),
                                                     "labels": np.zeros(0, np.int64)}})
    path = tmp_path / "results.pkl"
    path.write_bytes(pickle.dumps(results))
    loaded = load_detections(path, gt)
    _same(loaded, coco_results())
    assert evaluate_voc(gt, loaded)["AP50"] == pytest.approx(evaluate_voc(gt, coco_results())["AP50"])


def test_mmdet3_pickle_with_torch_tensors_and_class_order(tmp_path, gt):
    torch = pytest.importorskip("torch")
    results = [{"img_id": 10, "pred_instances": {"bboxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]),
                                                 "scores": torch.tensor([0.9]),
                                                 "labels": torch.tensor([1])}}]
    path = tmp_path / "results.pkl"
    path.write_bytes(pickle.dumps(results))
    assert load_detections(path, gt)[0]["category_id"] == 5  # label 1 -> second category by id
    # the config's class order decides otherwise: label 1 is "cat" here
    assert load_detections(path, gt, classes=["dog", "cat", "bird"])[0]["category_id"] == 3


def test_mmdet2_pickle(tmp_path, gt):
    results = []
    for img in gt.images:
        per_class = [np.zeros((0, 5), np.float32) for _ in range(3)]
        for d in coco_results():
            if d["image_id"] == img["id"]:
                k = _label(d["category_id"])
                per_class[k] = np.vstack([per_class[k], [_xyxy(d["bbox"]) + [d["score"]]]]).astype(np.float32)
        results.append(per_class)
    path = tmp_path / "results.pkl"
    path.write_bytes(pickle.dumps(results))
    _same(load_detections(path, gt), coco_results())
    # Mask R-CNN style: (bbox_results, segm_results) per image
    path.write_bytes(pickle.dumps([(r, [[] for _ in r]) for r in results]))
    _same(load_detections(path, gt), coco_results())


def test_ultralytics_predictions_by_file_stem_and_class_index(tmp_path, gt):
    stems = {img["id"]: int(img["file_name"].split("/")[-1].split(".")[0]) for img in gt.images}  # "000000" -> 0
    dets = [{**d, "image_id": stems[d["image_id"]], "category_id": _label(d["category_id"]) + 1}
            for d in coco_results()]
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(dets))
    _same(load_detections(path, gt, match_images="file_stem", category_ids="index1"), coco_results())
    zero_based = [{**d, "category_id": d["category_id"] - 1} for d in dets]
    path.write_text(json.dumps(zero_based))
    _same(load_detections(path, gt, match_images="file_stem", category_ids="index0"), coco_results())
    # a stem that names no image is an error, even when it happens to equal a real image id
    path.write_text(json.dumps([{**dets[0], "image_id": 10}]))
    with pytest.raises(BenchError, match="no ground-truth file has") as info:
        load_detections(path, gt, match_images="file_stem", category_ids="index1")
    assert "use --match-images file_stem" not in str(info.value)  # it was given: the hint would send them round
    # a path or a file name instead of the stem names the same image
    named = [{**d, "image_id": f"val/{d['image_id']:06d}.png"} for d in dets]
    path.write_text(json.dumps(named))
    _same(load_detections(path, gt, match_images="file_stem", category_ids="index1"), coco_results())


# ---- bad input -----------------------------------------------------------------------------------------------
def _write(tmp_path, obj, name="dets.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def _one(**override):
    return [{**coco_results()[0], **override}]


@pytest.mark.parametrize("content, message", [
    ("[{\"image_id\": 1,", "malformed JSON"),
    ({"images": [], "annotations": [], "categories": []}, "looks like a ground-truth file"),
    ("\"text\"", "expected a JSON list"),
    ([[10, 3, 1, 1, 1, 1, 0.5]], "detection #0 is a list"),
    ([{"image_id": 10, "category_id": 3, "bbox": [1, 1, 1, 1]}], "has no 'score'"),
    (_one(bbox=[1, 2, 3]), "expected \\[x, y, w, h\\] numbers"),
    (_one(bbox=["1", 2, 3, 4]), "expected \\[x, y, w, h\\] numbers"),
    (_one(score="high"), "score 'high'; expected a number"),
    (_one(score=None), "expected a number"),
    (_one(image_id=999), "image ids not in the ground truth .*999"),
    (_one(image_id="000010"), "image ids not in the ground truth"),
    (_one(image_id=[10]), "expected an int or str"),
    (_one(category_id=4), "category ids not in the ground truth .*4"),
    (_one(category_id=True), "category_id True; expected an id"),
    (_one(bbox=[10, 10, -5, 20]), "negative width or height"),
    ('[{"image_id": 10, "category_id": 3, "bbox": [1, 1, NaN, 1], "score": 1}]', "malformed JSON"),
    ('[{"image_id": 10, "category_id": 3, "bbox": [1, 1, 1e400, 1], "score": 1}]', "malformed JSON"),
])
def test_bad_json_is_one_line_error_naming_the_file(tmp_path, gt, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(BenchError, match=message) as info:
        load_detections(path, gt)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file(tmp_path, gt):
    with pytest.raises(BenchError, match="file not found"):
        load_detections(tmp_path / "nope.json", gt)


def test_non_finite_values_from_python_are_errors(gt):
    for bad in (_one(bbox=[float("nan"), 0, 1, 1]), _one(score=float("inf"))):
        with pytest.raises(BenchError, match="non-finite"):
            evaluate_coco(gt, bad)
        with pytest.raises(BenchError, match="non-finite"):
            evaluate_voc(gt, bad)


def test_unknown_image_ids_are_never_scored(gt):
    dets = coco_results() + _one(image_id=12345)
    with pytest.raises(BenchError, match="1 detections refer to 1 image ids not in the ground truth"):
        evaluate_coco(gt, dets)


def test_zero_size_boxes_are_kept(gt):
    arrays = to_arrays(gt, coco_results() + _one(bbox=[5, 5, 0, 0], score=0.99))
    assert len(arrays) == len(coco_results()) + 1


@pytest.mark.parametrize("content, message", [
    (b"not a pickle", "cannot unpickle"),
    (pickle.dumps({"a": 1}), "pickle holds a dict"),
    (pickle.dumps([1, 2]), "unrecognised pickle content"),
    (pickle.dumps([{"img_id": 10}]), "no 'img_id' / 'pred_instances'"),
    (pickle.dumps([{"img_id": 10, "pred_instances": {"bboxes": np.zeros((1, 4)), "scores": np.ones(1),
                                                     "labels": np.array([7])}}]), "label 7 is out of range"),
    (pickle.dumps([{"img_id": 10, "pred_instances": {"bboxes": np.zeros((2, 4)), "scores": np.ones(1),
                                                     "labels": np.array([0])}}]), "2 boxes, 1 scores"),
    (pickle.dumps([{"img_id": 99, "pred_instances": {"bboxes": np.zeros((1, 4)), "scores": np.ones(1),
                                                     "labels": np.array([0])}}]), "not in the ground truth"),
    (pickle.dumps([{"img_id": 10, "pred_instances": {"bboxes": np.array([[5, 5, 1, 1.0]]), "scores": np.ones(1),
                                                     "labels": np.array([0])}}]), "negative width"),
    (pickle.dumps([[np.zeros((0, 5))] * 3] * 3), "3 images but the ground truth has 4"),
    (pickle.dumps([[np.zeros((0, 5))] * 2] * 4), "2 per-class arrays but 3 classes"),
    (pickle.dumps([[np.zeros((1, 4))] * 3] * 4), "expected an \\(N, 5\\) array"),
    (pickle.dumps([[np.full((1, 5), np.nan)] * 3] * 4), "non-finite"),
])
def test_bad_pickles(tmp_path, gt, content, message):
    path = tmp_path / "results.pkl"
    path.write_bytes(content)
    with pytest.raises(BenchError, match=message) as info:
        load_detections(path, gt)
    assert str(path) in str(info.value)


def test_bad_options(tmp_path, gt):
    path = _write(tmp_path, coco_results())
    with pytest.raises(BenchError, match="'horse'"):
        load_detections(path, gt, classes=["cat", "horse"], category_ids="index0")
    with pytest.raises(BenchError, match="category index 3 is out of range"):
        load_detections(_write(tmp_path, _one(category_id=3)), gt, category_ids="index0")
    with pytest.raises(BenchError, match="unknown --category-ids"):
        load_detections(path, gt, category_ids="names")
    # class names map detector indices; with GT ids in the json they would be silently unused
    names = [c["name"] for c in gt.categories]
    with pytest.raises(BenchError, match="--category-ids index0 or index1, or drop --classes") as info:
        load_detections(path, gt, classes=names)
    assert str(path) in str(info.value)
    assert load_detections(_write(tmp_path, _one(category_id=0)), gt, classes=names, category_ids="index0")
    # a name twice: two detector labels scored as one class (a silently wrong AP)
    with pytest.raises(BenchError, match=r"class 'cat' appears twice in --classes \(labels 0 and 1\)"):
        load_detections(_write(tmp_path, _one(category_id=0)), gt, classes=["cat", "cat"], category_ids="index0")


def test_empty_results_file(tmp_path, gt):
    dets = load_detections(_write(tmp_path, []), gt)
    assert dets == [] and evaluate_coco(gt, dets)["AP"] == 0.0


# ---- bench eval ----------------------------------------------------------------------------------------------
def test_bench_eval_prints_table_and_writes_json(tmp_path, gt):
    gt_path = tmp_path / "gt.json"
    write_json(gt_path, small_gt())
    dt_path = _write(tmp_path, coco_results())
    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(cli, ["eval", "--gt", str(gt_path), "--dt", str(dt_path), "--json", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    expected_coco = evaluate_coco(gt, coco_results())
    assert metrics["coco"].pop("per_class") == pytest.approx(expected_coco.pop("per_class"))
    assert metrics["coco"] == pytest.approx(expected_coco)
    assert metrics["voc"]["AP50"] == pytest.approx(evaluate_voc(gt, coco_results())["AP50"])
    assert metrics["num_detections"] == len(coco_results())
    assert "AP50" in result.output and "AR100" in result.output
    assert f"{100 * expected_coco['AP']:.1f}" in result.output
    for name in ("cat", "dog", "bird"):
        assert name in result.output


def test_bench_eval_notes_boxes_that_look_like_corners(tmp_path, gt):
    gt_path = tmp_path / "gt.json"
    write_json(gt_path, small_gt())
    runner = CliRunner()  # .output holds stderr too
    fine = runner.invoke(cli, ["eval", "--gt", str(gt_path), "--dt", str(_write(tmp_path, coco_results()))])
    assert fine.exit_code == 0 and "corners" not in fine.output
    corners = [{**d, "bbox": _xyxy(d["bbox"])} for d in coco_results()]  # written as x1, y1, x2, y2 by mistake
    wrong = runner.invoke(cli, ["eval", "--gt", str(gt_path), "--dt", str(_write(tmp_path, corners, "c.json"))])
    assert wrong.exit_code == 0
    assert "detections reach past their image's width or height: are the boxes corners" in wrong.output


def test_bench_eval_single_metric_and_pickle(tmp_path, gt):
    gt_path = tmp_path / "gt.json"
    write_json(gt_path, small_gt())
    results = [{"img_id": 10, "pred_instances": {"bboxes": np.array([[11.0, 9.0, 61.0, 51.0]]),
                                                 "scores": np.array([0.9]), "labels": np.array([2])}}]
    dt_path = tmp_path / "out.pkl"
    dt_path.write_bytes(pickle.dumps(results))
    result = CliRunner().invoke(cli, ["eval", "--gt", str(gt_path), "--dt", str(dt_path), "--metric", "voc",
                                      "--classes", "dog,bird,cat"])
    assert result.exit_code == 0, result.output
    assert "VOC AP50" in result.output and "COCO" not in result.output


def test_bench_eval_bad_input_is_one_line_exit_2(tmp_path, capsys):
    gt_path = tmp_path / "gt.json"
    write_json(gt_path, small_gt())
    dt_path = _write(tmp_path, _one(image_id=999))
    with pytest.raises(SystemExit) as info:
        main(["eval", "--gt", str(gt_path), "--dt", str(dt_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(dt_path) in err and "\n" not in err
    with pytest.raises(SystemExit):
        main(["eval", "--gt", str(gt_path), "--dt", str(dt_path), "--metric", "map"])
    assert "--metric" in capsys.readouterr().err


def test_bench_eval_on_bccd_voc_folder(tmp_path, bccd_root):
    from benchmark.datasets import load

    test = load(str(bccd_root))["test"]
    assert len(test.images) == 72
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in test.annotations if not a["ignore"]]
    rng = np.random.default_rng(0)
    shifted = [{**d, "bbox": [d["bbox"][0] + rng.uniform(0.3, 0.6) * d["bbox"][2], *d["bbox"][1:]],
                "score": float(rng.random())} for d in perfect]
    out = tmp_path / "m.json"
    dt_path = _write(tmp_path, perfect + shifted)
    result = CliRunner().invoke(cli, ["eval", "--gt", str(bccd_root), "--split", "test", "--dt", str(dt_path),
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    # every object found at score 1.0; the shifted copies (duplicates or misses, all FP) rank below: AP is 1
    assert metrics["voc"]["AP50"] == pytest.approx(1.0) and metrics["coco"]["AP"] == pytest.approx(1.0)
    assert set(metrics["voc"]["per_class"]) == {c["name"] for c in test.categories}
    assert metrics["num_detections"] == 2 * len(perfect)
