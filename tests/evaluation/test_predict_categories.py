"""`predict` refuses a dataset whose category ids name other classes than the model's (it would be scored, every
box under the wrong class, without an error); the unknown-category hint only names --category-ids where it exists."""

import json

import pytest
import torch

from benchmark.config import resolve_config
from benchmark.datasets.coco import save_coco
from benchmark.engine import fit, predict
from benchmark.errors import BenchError
from benchmark.evaluation import evaluate, load_detections
from methods import get_method
from methods._core.toy import make_toy_dataset

TINY = {"train.epochs": 1, "train.iters_per_epoch": 1, "train.batch_size": 2, "train.steps": [1],
        "train.warmup_iters": 1, "model.widths": [8, 8, 16, 16], "model.pretrained": False, "model.fpn_channels": 16,
        "model.representation_size": 32, "model.box_batch_size_per_image": 16}
MODEL_CATS = [{"id": 1, "name": "ellipse"}, {"id": 2, "name": "rectangle"}, {"id": 3, "name": "triangle"},
              {"id": 4, "name": "cross"}]
SHUFFLED = [{"id": 1, "name": "triangle"}, {"id": 2, "name": "cross"}, {"id": 3, "name": "ellipse"},
            {"id": 4, "name": "dog"}]


def _with_categories(ds, cats):
    out = ds.replace_annotations([dict(a) for a in ds.annotations])
    out.categories = [dict(c) for c in cats]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-iteration Faster R-CNN on 4 named classes: (dataset, checkpoint)."""
    root = tmp_path_factory.mktemp("cats")
    ds = _with_categories(make_toy_dataset(root / "images", num_images=4, size=(64, 48), category_ids=(1, 2)),
                          MODEL_CATS)
    m = get_method("faster_rcnn")
    res = fit(m, ds, resolve_config(m, "cpu", "coco", None, TINY), root / "run", progress=False)
    return ds, res.checkpoint


def test_checkpoint_stores_category_names(trained):
    _, ckpt = trained
    for name in ("model_final.pth", "checkpoint.pth"):
        state = torch.load(ckpt.parent / name, map_location="cpu", weights_only=True)
        assert state["categories"] == [1, 2, 3, 4]
        assert state["category_names"] == ["ellipse", "rectangle", "triangle", "cross"]


def test_ids_naming_other_classes_are_refused(trained):
    ds, ckpt = trained
    m = get_method("faster_rcnn")
    with pytest.raises(BenchError) as exc:
        predict(m, ckpt, _with_categories(ds, SHUFFLED), progress=False)
    msg = str(exc.value)
    assert "4 category ids name other classes" in msg and "\n" not in msg
    assert "1: model 'ellipse' vs dataset 'triangle'; 2: model 'rectangle' vs dataset 'cross'; " in msg
    assert "3: model 'triangle' vs dataset 'ellipse'; ..." in msg and "dog" not in msg  # the first three only
    assert "remap the dataset's category ids to the model's (model: 1 ellipse, 2 rectangle, 3 triangle, 4 cross)" in msg


def test_matching_names_and_old_checkpoints_predict_as_before(trained, tmp_path):
    ds, ckpt = trained
    m = get_method("faster_rcnn")
    same = _with_categories(ds, [{"id": 1, "name": " Ellipse"}, {"id": 2, "name": "RECTANGLE"}])  # a subset, case
    assert {d["category_id"] for d in predict(m, ckpt, same, progress=False)} <= {1, 2, 3, 4}
    unnamed = _with_categories(ds, [{"id": 1}, {"id": 2}])  # e.g. a YOLO folder without names
    predict(m, ckpt, unnamed, progress=False)

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    del state["category_names"]  # written before names were saved: ids only, as before
    old = tmp_path / "old.pth"
    torch.save(state, old)
    assert predict(m, old, _with_categories(ds, SHUFFLED), progress=False)


def test_bench_predict_mismatch_is_one_line_error(trained, tmp_path, capsys):
    from benchmark.cli import main

    ds, ckpt = trained
    bad = tmp_path / "bad.json"
    save_coco(_with_categories(ds, SHUFFLED), bad)
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--checkpoint", str(ckpt.parent), "--dataset", f"coco:{bad},{bad}", "--out",
              str(tmp_path / "out"), "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "name other classes" in err and "\n" not in err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_unknown_category_hint_fits_the_caller(trained, tmp_path):
    """A 3-class ground truth and detections of class 4: `bench predict` (in-memory predictions) has no
    --category-ids, so only the file loaders behind `bench eval` / `bench run --external` suggest it."""
    ds, _ = trained
    gt = _with_categories(ds, MODEL_CATS[:3])
    dets = [{"image_id": ds.images[0]["id"], "category_id": 4, "bbox": [1, 1, 5, 5], "score": 0.9}]
    with pytest.raises(BenchError, match=r"not in the ground truth \(4; ground truth has 1, 2, 3\)") as exc:
        evaluate(gt, dets)
    assert "--category-ids" not in str(exc.value) and "trained on categories" in str(exc.value)
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    with pytest.raises(BenchError, match="use --category-ids index0/index1"):
        load_detections(path, gt)
