"""The training engine: adapter protocol on a two-iteration run, exact resume, NaN guard, hooks, predict."""

import json

import pytest
import torch
from engine_kit import stopping_at_call, stopping_at_epoch

from benchmark.config import resolve_config
from benchmark.engine import fit, lr_factor, predict
from benchmark.errors import BenchError
from methods import MethodAdapter, get_method
from methods._core.data import TrainOrder
from methods._core.geometry import boxes_to_original
from methods._core.model import build_faster_rcnn
from methods._core.toy import make_toy_dataset

TINY = {"train.epochs": 2, "train.iters_per_epoch": 1, "train.batch_size": 2, "train.steps": [1],
        "train.warmup_iters": 1, "model.widths": [8, 8, 16, 16], "model.pretrained": False, "model.fpn_channels": 16,
        "model.representation_size": 32, "model.box_batch_size_per_image": 16}


def tiny_cfg(method, **extra):
    return resolve_config(method, "cpu", "coco", None, {**TINY, **extra})


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), num_images=6, size=(64, 48), noise=0.2)


class HookedModel(torch.nn.Module):
    """Faster R-CNN that exercises every optional hook; records the targets it trains on."""

    def __init__(self, inner, fail_at=None):
        super().__init__()
        self.inner = inner
        self.fail_at = fail_at
        self.calls = 0
        self.epochs = []
        self.seen = {}
        self.diag = None

    def set_epoch(self, epoch, num_epochs):
        self.epochs.append((epoch, num_epochs))

    def set_diagnostics(self, d):
        self.diag = d

    def forward(self, images, targets=None):
        if not self.training:
            return self.inner(images)
        self.calls += 1
        resized = [im.shape[-2:] for im in images]
        for t, hw in zip(targets, resized):  # no resize here: original frame = model frame modulo flip
            back = boxes_to_original(t["boxes"].cpu(), hw, t)
            for aid, box in zip(t["ann_ids"].tolist(), back.tolist()):
                self.seen[aid] = box
        losses = self.inner(images, targets)
        if self.fail_at is not None and self.calls == self.fail_at:
            losses["loss_box_reg"] = losses["loss_box_reg"] * float("nan")
        return losses

    def refined_boxes(self):
        return dict(self.seen)

    def diagnostics(self):
        return {"boxes_seen": float(len(self.seen)), "got_diagnostics": float(self.diag is not None)}


class Hooked(MethodAdapter):
    name = "hooked_probe"
    fail_at = None

    def build_model(self, cfg, num_classes):
        return HookedModel(build_faster_rcnn(cfg["model"], num_classes), fail_at=self.fail_at)


def test_two_iteration_run_through_the_adapter_protocol(toy, tmp_path):
    method = get_method("faster_rcnn")
    cfg = tiny_cfg(method)
    result = method.train(toy, cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert result.checkpoint == run / "model_final.pth" and result.checkpoint.is_file()
    assert (run / "checkpoint.pth").is_file() and result.refined_boxes is None
    metrics = json.loads((run / "train_metrics.json").read_text())
    assert metrics["iterations"] == 2 and metrics["epochs"] == 2 and metrics["method"] == "faster_rcnn"
    assert metrics["seed"] == 0 and metrics["data_seed"] == 0 and len(metrics["history"]) == 2
    assert all(k in metrics["history"][0] for k in ("loss", "loss_classifier", "loss_objectness"))
    log = (run / "train.log").read_text()
    assert "iter 2/2" in log and "seed=0 data_seed=0" in log
    dets = method.predict(result.checkpoint, toy, cfg, progress=False)
    assert dets, "an untrained model with score threshold 0.01 still outputs boxes"
    assert {d["category_id"] for d in dets} <= {3, 7}
    assert {d["image_id"] for d in dets} <= {im["id"] for im in toy.images}
    for d in dets:
        x, y, w, h = d["bbox"]
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 64.01 and y + h <= 48.01 and 0 <= d["score"] <= 1


@pytest.mark.parametrize("name", ["faster_rcnn", "ssd_det", "oa_mil"])
def test_a_run_stopped_inside_an_epoch_resumes_from_its_mid_epoch_checkpoint(toy, tmp_path, name):
    # train.checkpoint_minutes ~0: a checkpoint after every iteration; stopped in the middle of epoch 2 of 2.
    # The hooks' state (refined boxes, diagnostics sums) must come back as it was, not as set_epoch resets it.
    method = get_method(name)
    cfg = tiny_cfg(method, **{"train.epochs": 2, "train.iters_per_epoch": 3, "train.steps": [4],
                              "train.checkpoint_minutes": 1e-9})
    full = fit(method, toy, cfg, tmp_path / "full", diagnostics=toy, progress=False)

    with pytest.raises(KeyboardInterrupt):
        fit(stopping_at_call(method, 5), toy, cfg, tmp_path / "split", diagnostics=toy, progress=False)
    ckpt = torch.load(tmp_path / "split" / "checkpoint.pth", weights_only=False)
    assert (ckpt["epoch"], ckpt["iteration"]) == (1, 4) and ckpt["partial"]["count"] == 1
    resumed = fit(method, toy, cfg, tmp_path / "split", diagnostics=toy, progress=False)
    a = torch.load(full.checkpoint, weights_only=False)["model"]
    b = torch.load(resumed.checkpoint, weights_only=False)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor)), \
        "resumed weights differ from the uninterrupted run"
    def without_time(metrics):
        return {k: ([{kk: vv for kk, vv in h.items() if kk != "seconds"} for h in v] if k == "history" else v)
                for k, v in metrics.items() if k not in ("train_seconds", "seconds_per_iter")}
    assert without_time(resumed.metrics) == without_time(full.metrics)
    if full.refined_boxes is not None:
        assert resumed.refined_boxes.read_bytes() == full.refined_boxes.read_bytes()
    log = (tmp_path / "split" / "train.log").read_text()
    assert "checkpoint at iteration 4 (epoch 2/2 under way)" in log and "resume from epoch 1 (iteration 4)" in log


def test_resume_reproduces_an_uninterrupted_run(toy, tmp_path):
    cfg = tiny_cfg(get_method("faster_rcnn"), **{"train.epochs": 3, "train.steps": [2]})
    full = fit(get_method("faster_rcnn"), toy, cfg, tmp_path / "full", progress=False)

    class Plain(MethodAdapter):  # same weights layout as faster_rcnn, no hooks
        name = "faster_rcnn"

        def build_model(self, cfg, num_classes):
            return build_faster_rcnn(cfg["model"], num_classes)

    with pytest.raises(KeyboardInterrupt):
        fit(stopping_at_epoch(Plain(), 1), toy, cfg, tmp_path / "split", progress=False)
    ckpt = torch.load(tmp_path / "split" / "checkpoint.pth", weights_only=True)
    assert (ckpt["epoch"], ckpt["iteration"]) == (1, 1)
    assert not (tmp_path / "split" / "model_final.pth").exists()
    resumed = fit(Plain(), toy, cfg, tmp_path / "split", progress=False)
    a = torch.load(full.checkpoint, weights_only=True)["model"]
    b = torch.load(resumed.checkpoint, weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    assert "resume from epoch 1" in (tmp_path / "split" / "train.log").read_text()
    assert resumed.metrics["iterations"] == 3

    # a different config cannot silently continue an old run
    other = tiny_cfg(get_method("faster_rcnn"), **{"train.epochs": 3, "train.steps": [2], "train.lr": 0.01})
    with pytest.raises(BenchError, match="different config"):
        fit(Plain(), toy, other, tmp_path / "split", progress=False)


def test_seeds_change_weights_and_data_independently(toy, tmp_path):
    m = get_method("faster_rcnn")
    runs = {}
    for name, extra in {"a": {}, "b": {}, "seed": {"train.seed": 1}, "data": {"train.data_seed": 1}}.items():
        res = fit(m, toy, tiny_cfg(m, **{"train.epochs": 1, "train.steps": [1], **extra}), tmp_path / name,
                  progress=False)
        runs[name] = torch.load(res.checkpoint, weights_only=True)["model"]
    key = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(runs["a"][key], runs["b"][key])
    assert not torch.equal(runs["a"][key], runs["seed"][key])
    assert not torch.equal(runs["a"][key], runs["data"][key])


def test_hooks_refined_boxes_and_diagnostics(toy, tmp_path):
    cfg = tiny_cfg(Hooked(), **{"train.iters_per_epoch": 3})
    result = fit(Hooked(), toy, cfg, tmp_path / "run", diagnostics={"clean": True}, progress=False)
    assert result.metrics["got_diagnostics"] == 1.0
    assert result.metrics["boxes_seen"] > 0
    refined = json.loads(result.refined_boxes.read_text())
    by_id = {a["id"]: a for a in toy.annotations}
    assert len(refined) == result.metrics["boxes_seen"]
    for r in refined:  # the refined box reported in original pixels is the un-flipped training box
        a = by_id[r["id"]]
        assert r["image_id"] == a["image_id"] and r["category_id"] == a["category_id"]
        assert r["bbox"] == pytest.approx(a["bbox"], abs=1e-3)


def test_hooks_run_in_order_and_the_checkpoint_keeps_its_layout(toy, tmp_path):
    """The engine's call order as methods/base.py documents it, and the checkpoint's keys in the order they are
    written (pickled dicts keep it); the schedule's lambda is stored as None, as LambdaLR does for plain functions."""
    calls = []

    class Recording(HookedModel):
        def set_diagnostics(self, d):
            calls.append("set_diagnostics")
            super().set_diagnostics(d)

        def set_epoch(self, epoch, num_epochs):
            calls.append(f"set_epoch {epoch}/{num_epochs}")

        def refined_boxes(self):
            calls.append("refined_boxes")
            return super().refined_boxes()

        def diagnostics(self):
            calls.append("diagnostics")
            return super().diagnostics()

    class Recorded(Hooked):
        def build_model(self, cfg, num_classes):
            return Recording(build_faster_rcnn(cfg["model"], num_classes))

    cfg = tiny_cfg(Recorded(), **{"train.log_every": 1})  # 2 epochs of 1 iteration: a scalars row each
    fit(Recorded(), toy, cfg, tmp_path / "run", diagnostics={"clean": True}, progress=False)
    assert calls == ["set_diagnostics", "set_epoch 0/2", "diagnostics", "set_epoch 1/2", "diagnostics",
                     "refined_boxes", "diagnostics"]
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)
    assert list(ckpt) == ["model", "optimizer", "scheduler", "scaler", "epoch", "iteration", "rng", "config",
                          "categories", "category_names", "method", "history", "elapsed", "partial"]
    assert ckpt["scheduler"]["lr_lambdas"] == [None] and ckpt["scaler"] == {} and ckpt["partial"] is None
    assert (ckpt["epoch"], ckpt["iteration"], len(ckpt["rng"])) == (2, 2, 1)
    final = torch.load(tmp_path / "run" / "model_final.pth", weights_only=True)
    assert list(final) == ["model", "config", "categories", "category_names", "method"]


def test_nan_loss_stops_with_iteration_and_image_ids(toy, tmp_path):
    class Failing(Hooked):
        fail_at = 2

    cfg = tiny_cfg(Failing(), **{"train.iters_per_epoch": 3})
    with pytest.raises(BenchError) as exc:
        fit(Failing(), toy, cfg, tmp_path / "run", progress=False)
    order = TrainOrder(len(toy.images), 2, cfg["train"]["data_seed"])
    ids = sorted(toy.images[i]["id"] for i, _, _ in order.batch(1))
    msg = str(exc.value)
    assert "non-finite loss at iteration 2 (epoch 1)" in msg and "loss_box_reg=nan" in msg
    assert f"batch image ids: {ids}" in msg


def test_lr_schedules():
    t = {"epochs": 12, "scheduler": "step", "steps": [8, 11], "gamma": 0.1, "warmup_iters": 500,
         "warmup_factor": 0.001}
    assert lr_factor(0, t, 100) == pytest.approx(0.001)
    assert lr_factor(250, t, 100) == pytest.approx(0.5005)
    assert lr_factor(799, t, 100) == 1.0 and lr_factor(800, t, 100) == pytest.approx(0.1)
    assert lr_factor(1100, t, 100) == pytest.approx(0.01)
    c = dict(t, scheduler="cosine", warmup_iters=0)
    assert lr_factor(0, c, 25) == 1.0 and lr_factor(150, c, 25) == pytest.approx(0.5)
    assert lr_factor(300, c, 25) == pytest.approx(0.0, abs=1e-12)


def test_predict_rejects_unknown_categories(toy, tmp_path):
    m = get_method("faster_rcnn")
    res = fit(m, toy, tiny_cfg(m, **{"train.epochs": 1, "train.steps": [1]}), tmp_path / "r", progress=False)
    other = toy.replace_annotations([])
    other.categories = toy.categories + [{"id": 99, "name": "new"}]
    with pytest.raises(BenchError, match=r"category ids \[99\]"):
        predict(m, res.checkpoint, other, progress=False)
    with pytest.raises(BenchError, match="checkpoint not found"):
        predict(m, tmp_path / "nope.pth", toy, progress=False)
