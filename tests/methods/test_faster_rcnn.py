"""The two reference adapters: the baseline trains on noisy `bbox` and never sees `true_bbox`; the oracle trains
on `true_bbox`. Plus `bench train` / `bench predict` end to end on a toy COCO dataset."""

import json

import pytest
import torch

import benchmark.engine as engine
from benchmark.config import resolve_config
from benchmark.datasets.coco import save_coco
from benchmark.errors import BenchError
from methods import METHODS, get_method
from methods._core.toy import make_toy_dataset

TINY = {"train.epochs": 1, "train.iters_per_epoch": 3, "train.batch_size": 2, "train.steps": [1],
        "train.warmup_iters": 1, "train.hflip": 0.0, "train.vflip": 0.0, "model.widths": [8, 8, 16, 16],
        "model.pretrained": False, "model.fpn_channels": 16, "model.representation_size": 32,
        "model.box_batch_size_per_image": 16}


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    """Noisy dataset whose clean boxes are 'poisoned': far from bbox, so any use of them is visible."""
    ds = make_toy_dataset(tmp_path_factory.mktemp("toy"), num_images=6, size=(64, 48), noise=0.3)
    for a in ds.annotations:
        a["true_bbox"] = [1.0, 2.0, 3.0, 4.0]
    return ds


def _targets_seen(method_name, ds, tmp_path, monkeypatch):
    """Train `method_name` and record the dataset the engine got and every target box the model trained on."""
    seen, got = {}, {}
    cls = type(get_method(method_name))

    class Recording(cls):
        def build_model(self, cfg, num_classes):
            model = super().build_model(cfg, num_classes)
            forward = model.forward

            def recording_forward(images, targets=None):
                if targets is not None:
                    for t in targets:
                        for aid, box in zip(t["ann_ids"].tolist(), t["boxes"].tolist()):
                            seen[aid] = box
                return forward(images, targets)

            model.forward = recording_forward
            return model

    real_fit = engine.fit

    def spy_fit(adapter, train, cfg, workdir, **kw):
        got["train"] = train
        return real_fit(adapter, train, cfg, workdir, **kw)

    monkeypatch.setattr(engine, "fit", spy_fit)
    method = Recording()
    method.train(ds, resolve_config(method, "cpu", "coco", 0.3, TINY), tmp_path / method_name, progress=False)
    return seen, got["train"]


def test_registered_with_metadata():
    assert {"faster_rcnn", "clean"} <= set(METHODS.names())
    assert get_method("clean").reads_clean_boxes and not get_method("faster_rcnn").reads_clean_boxes
    assert get_method("faster_rcnn").paper.year == 2015


def test_baseline_trains_on_noisy_boxes_and_never_sees_clean_ones(poisoned, tmp_path, monkeypatch):
    seen, train = _targets_seen("faster_rcnn", poisoned, tmp_path, monkeypatch)
    assert not any("true_bbox" in a for a in train.annotations)
    noisy = {a["id"]: a["bbox"] for a in poisoned.annotations}
    assert seen
    for aid, (x1, y1, x2, y2) in seen.items():
        x, y, w, h = noisy[aid]
        assert [x1, y1, x2, y2] == pytest.approx([x, y, x + w, y + h], abs=1e-4)


def test_oracle_trains_on_clean_boxes(poisoned, tmp_path, monkeypatch):
    seen, train = _targets_seen("clean", poisoned, tmp_path, monkeypatch)
    assert seen
    assert all(box == pytest.approx([1.0, 2.0, 4.0, 6.0]) for box in seen.values())
    assert all(a["bbox"] == [1.0, 2.0, 3.0, 4.0] for a in train.annotations)


def test_bench_train_and_predict_cli(tmp_path):
    from benchmark.cli import main

    torch.set_num_threads(1)
    train = make_toy_dataset(tmp_path / "images", num_images=6, size=(64, 48), seed=1)
    test = make_toy_dataset(tmp_path / "images_test", num_images=3, size=(64, 48), seed=2)
    save_coco(train, tmp_path / "train.json")
    save_coco(test, tmp_path / "test.json")
    spec = f"coco:{tmp_path / 'train.json'},{tmp_path / 'test.json'}"
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    out = tmp_path / "run"
    main(["train", "--method", "clean", "--dataset", spec, "--out", str(out), "--quiet", *sets])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["run"]["method"] == "clean" and cfg["train"]["iters_per_epoch"] == 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"coco", "voc", "train", "timing"}
    assert 0.0 <= metrics["coco"]["AP"] <= 1.0 and metrics["train"]["iterations"] == 3
    assert (out / "train" / "model_final.pth").is_file() and (out / "predictions.json").is_file()

    for given in (out / "train", out):  # the weights' folder, or the run folder `bench train --out` made
        pred_out = tmp_path / "pred" / given.name
        main(["predict", "--checkpoint", str(given), "--dataset", spec, "--out", str(pred_out), "--quiet"])
        again = json.loads((pred_out / "metrics.json").read_text())
        assert again["coco"]["AP"] == pytest.approx(metrics["coco"]["AP"])


def test_a_folder_without_weights_names_what_was_looked_for(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "checkpoint.pth").write_bytes(b"")
    assert engine.find_checkpoint(tmp_path) == tmp_path / "train" / "checkpoint.pth"
    (tmp_path / "model_final.pth").write_bytes(b"")
    assert engine.find_checkpoint(tmp_path) == tmp_path / "model_final.pth"  # the folder's own weights first
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match=r"no checkpoint in this directory \(looked for \{model_final.pth"):
        engine.find_checkpoint(tmp_path / "empty")


def test_bench_train_bad_override_is_one_line_error(tmp_path, capsys):
    from benchmark.cli import main

    train = make_toy_dataset(tmp_path / "images", num_images=2, size=(32, 32))
    save_coco(train, tmp_path / "train.json")
    spec = f"coco:{tmp_path / 'train.json'},{tmp_path / 'train.json'}"
    with pytest.raises(SystemExit) as exc:
        main(["train", "--method", "faster_rcnn", "--dataset", spec, "--out", str(tmp_path / "o"),
              "--set", "train.lr=-1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: train.lr must be a positive number, got -1") and "\n" not in err
