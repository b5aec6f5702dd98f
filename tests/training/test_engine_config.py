"""Profiles, overrides and validation of the run config."""

import pytest

from benchmark.config import dataset_kind, parse_overrides, resolve_config, scaled_lr
from benchmark.errors import BenchError
from methods import MethodAdapter


class _Method(MethodAdapter):
    name = "cfg_probe"

    def default_config(self, profile, noise_level=None, dataset_kind="coco"):
        return {"lam": 0.1 if (noise_level or 0) >= 0.4 else 0.01, "start_epoch": 2, "mode": "refine"}

    def profile_overrides(self, profile, noise_level=None, dataset_kind="coco"):
        return {"train": {"epochs": 14, "steps": [9, 12]}} if profile == "paper" else {}


def test_profiles_have_the_documented_recipes():
    cpu = resolve_config(_Method(), "cpu", "shapes", 0.2)
    assert cpu["profile"] == {"name": "cpu", "dataset_kind": "shapes", "noise_level": 0.2}
    assert cpu["model"]["backbone"] == "tiny" and cpu["model"]["fpn_channels"] == 64
    t = cpu["train"]
    assert (t["optimizer"], t["lr"], t["batch_size"], t["grad_clip"]) == ("adamw", 1e-3, 8, 10.0)
    assert t["epochs"] * t["iters_per_epoch"] * t["batch_size"] == 3360  # 420 iterations x 8 images
    real = resolve_config(_Method(), "cpu", "voc")["train"]  # 320x240 images: half the batch, ~200 iterations
    assert (real["batch_size"], real["iters_per_epoch"], scaled_lr(real)) == (4, 17, 1e-3)
    # shapes, the quick-start dataset, trains the lighter head; real images keep the measured 128-RoI recipe
    head = ("box_batch_size_per_image", "representation_size", "rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train")
    assert tuple(cpu["model"][k] for k in head) == (64, 128, 500, 250)
    for kind in ("voc", "coco", "yolo"):
        assert tuple(resolve_config(_Method(), "cpu", kind)["model"][k] for k in head) == (128, 256, 1000, 500)
    paper = resolve_config(_Method(), "paper", "coco")
    assert paper["model"]["backbone"] == "resnet50" and paper["model"]["max_size"] == 1333
    assert paper["train"]["optimizer"] == "sgd" and scaled_lr(paper["train"]) == 0.02
    assert paper["train"]["epochs"] == 14 and paper["train"]["steps"] == [9, 12]  # the method's profile override
    voc = resolve_config(_Method(), "paper", "voc")
    assert (voc["model"]["min_size"], voc["model"]["max_size"]) == (600, 1000)
    assert voc["method"] == {"lam": 0.01, "start_epoch": 2, "mode": "refine"}
    assert resolve_config(_Method(), "cpu", "coco", 0.4)["method"]["lam"] == 0.1


def test_overrides_apply_and_scale_lr():
    cfg = resolve_config(_Method(), "paper", "coco", None,
                         {"train.batch_size": 4, "train.lr": 0.02, "method.lam": 0.5, "model": {"min_size": 600}})
    assert scaled_lr(cfg["train"]) == pytest.approx(0.005)
    assert cfg["method"]["lam"] == 0.5 and cfg["model"]["min_size"] == 600
    assert isinstance(resolve_config(_Method(), "cpu", "coco", None, {"train.lr": 1})["train"]["lr"], float)


@pytest.mark.parametrize("overrides,message", [
    ({"train.lrr": 0.1}, "unknown config key train.lrr .*did you mean train.lr"),
    ({"train.lr": -0.1}, "train.lr must be a positive number"),
    ({"train.lr": "fast"}, "train.lr must be a positive number"),
    ({"train.epochs": 0}, "train.epochs must be a positive integer"),
    ({"train.batch_size": 2.5}, "train.batch_size must be a positive integer"),
    ({"train.hflip": 1.5}, r"train.hflip must be a number in \[0, 1\]"),
    ({"train.optimizer": "adam"}, "train.optimizer must be one of sgd, adamw"),
    ({"train.steps": [11, 8]}, "train.steps must be increasing"),
    ({"train.steps": [13], "train.scheduler": "step"}, "train.steps must be increasing epochs in 1..train.epochs"),
    ({"train.iters_per_epoch": 0}, "train.iters_per_epoch must be a positive integer or null"),
    ({"train.device": "tpu"}, "train.device must be"),
    ({"train.amp": "yes"}, "train.amp must be true or false"),
    ({"model.backbone": "vgg"}, "model.backbone must be one of"),
    ({"model.min_size": 900, "model.max_size": 800}, "must not exceed"),
    ({"model.anchor_sizes": [[8], [16]]}, "anchor_sizes has 2 levels"),
    ({"method.lam": "big"}, "method.lam must be of type float"),
    ({"method.unknown": 1}, r"unknown config key method.unknown for method 'cfg_probe'; cfg_probe has lam, mode, "
                            r"start_epoch\. In a sweep, `--set METHOD:method.unknown=VALUE` sets it for one method"),
    ({"profile.name": "x"}, "cannot be overridden"),
    ({"lr": 0.1}, "must be SECTION.KEY"),
])
def test_bad_values_are_one_line_errors(overrides, message):
    with pytest.raises(BenchError, match=message) as exc:
        resolve_config(_Method(), "cpu", "coco", None, overrides)
    assert "\n" not in str(exc.value)


def test_unknown_profile_kind_and_noise_level():
    with pytest.raises(BenchError, match="unknown profile 'gpu'"):
        resolve_config(_Method(), "gpu", "coco")
    with pytest.raises(BenchError, match="unknown dataset kind"):
        resolve_config(_Method(), "cpu", "kitti")
    with pytest.raises(BenchError, match="noise level"):
        resolve_config(_Method(), "cpu", "coco", -0.2)


def test_parse_overrides():
    assert parse_overrides(["train.lr=0.01", "model.weights=/w/r50.pth", "train.steps=[8, 11]",
                            "train.iters_per_epoch=null", "train.amp=false"]) == {
        "train.lr": 0.01, "model.weights": "/w/r50.pth", "train.steps": [8, 11], "train.iters_per_epoch": None,
        "train.amp": False}
    with pytest.raises(BenchError, match="key=value"):
        parse_overrides(["train.lr"])


def test_dataset_kind_is_what_the_reader_recorded_never_the_name():
    from benchmark.datasets.core import DetectionDataset

    assert dataset_kind(DetectionDataset([], [], [], kind="shapes")) == "shapes"
    assert dataset_kind(DetectionDataset([], [], [], info={"format": "voc"})) == "voc"  # built in memory from VOC
    assert dataset_kind(DetectionDataset([], [], [], name="shapes", source="/voc/shapes.json")) == "coco"
    kept = DetectionDataset([], [], [], kind="voc").subset([]).replace_annotations([]).copy()
    assert dataset_kind(kept) == "voc"
    with pytest.raises(BenchError, match="declares kind 'lvis', which no recipe knows"):
        dataset_kind(DetectionDataset([], [], [], kind="lvis"))


def test_steps_beyond_a_short_cosine_run_are_not_an_error():
    from benchmark.config import resolve_config
    from methods import get_method

    cfg = resolve_config(get_method("faster_rcnn"), "cpu", "coco", None, {"train.epochs": 2})
    assert cfg["train"]["scheduler"] == "cosine" and cfg["train"]["epochs"] == 2
