"""`bench eval --gt` takes every dataset spec the other commands take (`coco:TRAIN,TEST` too), split by --split;
a single COCO json is still scored as it is."""

import json

import pytest

from benchmark.cli import main
from benchmark.io import write_json

CATS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


def _coco(first_image: int) -> dict:
    images = [{"id": first_image + i, "file_name": f"{first_image + i}.jpg", "width": 100, "height": 80}
              for i in range(3)]
    anns = [{"id": k + 1, "image_id": im["id"], "category_id": 1 + k % 2, "bbox": [10, 10, 30, 20]}
            for k, im in enumerate(images)]
    return {"images": images, "annotations": anns, "categories": CATS}


@pytest.fixture
def files(tmp_path):
    """train.json (images 10-12), test.json (images 20-22) and perfect detections for the test split."""
    train, test = _coco(10), _coco(20)
    write_json(tmp_path / "train.json", train)
    write_json(tmp_path / "test.json", test)
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in test["annotations"]]
    write_json(tmp_path / "dets.json", dets)
    return tmp_path


def _eval(capsys, *args):
    try:
        main(["eval", *args])
    except SystemExit as exc:
        return exc.code, capsys.readouterr()
    return 0, capsys.readouterr()


def test_coco_spec_scores_the_test_split_by_default(files, capsys):
    spec = f"coco:{files / 'train.json'},{files / 'test.json'}"
    rc, out = _eval(capsys, "--gt", spec, "--dt", str(files / "dets.json"), "--metric", "coco",
                    "--json", str(files / "m.json"))
    assert rc == 0, out.err
    metrics = json.loads((files / "m.json").read_text())
    assert metrics["coco"]["AP"] == pytest.approx(1.0) and metrics["split"] == "test" and metrics["gt"] == spec


def test_coco_spec_honours_split(files, capsys):
    spec = f"coco:{files / 'train.json'},{files / 'test.json'}"
    rc, out = _eval(capsys, "--gt", spec, "--split", "train", "--dt", str(files / "dets.json"), "--metric", "coco")
    assert rc == 2  # the test-split detections are not train images
    assert "image ids not in the ground truth (20, 21, 22" in out.err and "\n" not in out.err.strip()
    rc, out = _eval(capsys, "--gt", spec, "--split", "val", "--dt", str(files / "dets.json"))
    assert rc == 2 and "dataset has no split 'val' (has test, train)" in out.err


def test_coco_spec_with_a_missing_file_names_that_file(files, capsys):
    spec = f"coco:{files / 'train.json'},{files / 'nope.json'}"
    rc, out = _eval(capsys, "--gt", spec, "--dt", str(files / "dets.json"))
    assert rc == 2 and f"{files / 'nope.json'}: file not found" in out.err


def test_a_single_json_is_still_scored_whole(files, capsys):
    rc, out = _eval(capsys, "--gt", str(files / "test.json"), "--split", "train", "--dt", str(files / "dets.json"),
                    "--json", str(files / "m.json"))
    assert rc == 0, out.err
    metrics = json.loads((files / "m.json").read_text())
    assert metrics["coco"]["AP"] == pytest.approx(1.0) and metrics["split"] is None
    rc, out = _eval(capsys, "--gt", str(files / "missing.json"), "--dt", str(files / "dets.json"))
    assert rc == 2 and f"{files / 'missing.json'}: file not found" in out.err
