"""The `paper` and `fair` recipes: every value the fidelity audit lists, pinned against the reference code's values
and their sources; `fair` keeps one shared recipe; the `cpu` profile's resolved configs (hence its cell ids) are
unchanged by the move of the recipes into data; `bench recipe show`; the paper-recipe models build and train."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from benchmark.config import OPTIONAL_KEYS, PROFILES, resolve_config, resolve_with_origin
from benchmark.errors import BenchError
from benchmark.io import dumps_json, sha256_bytes, sha256_file
from methods import get_method

OAMIL_MODEL = "OA-MIL configs/_base_/models/faster_rcnn_r50_fpn_coco_oamil.py"
OAMIL_FR = "OA-MIL configs/_base_/models/faster_rcnn_r50_fpn_coco.py"
SSD_COCO = "SSD-Det configs/COCO/NoiseBox/ENoiseBoxPLUS_r50_fpn_1x_coco.py"
SSD_VOC = "SSD-Det configs/VOC/NoiseBox/ENoiseBoxPLUS_r50_fpn_1x_voc_0.4.py"
SCHEDULE = "OA-MIL configs/_base_/schedules/schedule_1x.py"

# (methods, dataset kinds, key, reference value, text its source must contain): the audit's rows, as the
# reference code has them (cxliu0/OA-MIL @6921b7d5; PointTinyBenchmark SSD-Det @9ffa750d)
ALL = ("faster_rcnn", "clean", "oa_mil", "ssd_det", "ssd_det+retrain")
FR_LIKE = ("faster_rcnn", "clean", "oa_mil")
SSD = ("ssd_det", "ssd_det+retrain")
KINDS = ("coco", "voc")
REFERENCE = [
    # SSD-Det (D1, D2, B1, B2)
    (SSD, KINDS, "method.loss_sisd", 5.0, "MIL_bbox_head_EPLUS.py:46"),
    (SSD, KINDS, "method.fpn_norm", "group", f"{SSD_COCO}:7,25-33"),
    (SSD, KINDS, "model.fpn_p6", "conv_on_input", f"{SSD_COCO}:25-33 (add_extra_convs='on_input'"),
    (SSD, KINDS, "train.grad_clip", 10.0, f"{SSD_COCO}:264"),
    (SSD, ("voc",), "train.batch_size", 4, f"{SSD_VOC}:249"),
    (SSD, ("voc",), "train.base_batch_size", 4, "no linear rescaling"),
    (SSD, ("voc",), "train.lr", 0.002, f"{SSD_VOC}:275"),
    (SSD, ("coco",), "train.batch_size", 16, "OA-MIL train_coco.sh"),
    (SSD, ("coco",), "train.lr", 0.02, f"{SCHEDULE}:2"),
    (SSD, KINDS, "model.box_coder", "xywh", f"{SSD_COCO}:43-48"),
    (SSD, KINDS, "model.rpn_box_loss", "smooth_l1", "anchor_head.py:55-56"),
    (SSD, KINDS, "model.rcnn_box_loss", "l1", f"{SSD_COCO}:75"),
    # OA-MIL and its Faster R-CNN baseline (A3, A4, B1)
    (("faster_rcnn", "clean"), KINDS, "model.box_coder", "xyxy", f"{OAMIL_FR}:27-33,47-54"),
    (("faster_rcnn", "clean"), KINDS, "model.rpn_box_loss", "l1", f"{OAMIL_FR}:27-33"),
    (("faster_rcnn", "clean"), KINDS, "model.rcnn_box_loss", "l1", f"{OAMIL_FR}:54"),
    (("oa_mil",), KINDS, "model.box_coder", "xyxy", f"{OAMIL_MODEL}:27-33"),
    (("oa_mil",), KINDS, "model.rpn_box_loss", "l1", f"{OAMIL_MODEL}:27-33"),
    (("oa_mil",), KINDS, "model.rcnn_box_loss", "l1", f"{OAMIL_MODEL}:54"),
    (FR_LIKE, KINDS, "train.grad_clip", None, f"{SCHEDULE}:3"),
    (FR_LIKE, KINDS, "model.fpn_p6", "maxpool", "plain FPN"),
    (FR_LIKE, KINDS, "train.batch_size", 16, "train_voc07.sh"),
    (FR_LIKE, KINDS, "train.lr", 0.02, f"{SCHEDULE}:2"),
    # the mmdet detector all of them ran on (A1, A5-A8, B3, B5)
    (ALL, KINDS, "model.roi_align_aligned", True, f"{OAMIL_MODEL}:38"),
    (ALL, KINDS, "model.roi_sampling_ratio", 0, f"{OAMIL_MODEL}:38"),
    (ALL, KINDS, "model.norm_eval_affine_trainable", True, f"{OAMIL_MODEL}:10-11"),
    (ALL, KINDS, "model.init", "mmdet", "fc_cls N(0,0.01), fc_reg N(0,0.001)"),
    (ALL, KINDS, "train.aspect_ratio_group", True, "GroupSampler"),
    (ALL, KINDS, "model.valid_anchors_only", True, "valid_flags"),
    (ALL, KINDS, "model.rpn_min_pos_iou", 0.3, "min_pos_iou=0.3"),
    (ALL, KINDS, "model.round_anchors", False, "not rounded"),
    (ALL, KINDS, "train.filter_empty_gt", True, "filter_empty_gt"),
    (ALL, KINDS, "train.clip_gt", False, "not clipped"),
    (ALL, KINDS, "train.amp", False, "fp32"),
    (ALL, ("voc",), "model.min_size", 600, "img_scale=(1000, 600)"),
    (ALL, ("coco",), "model.max_size", 1333, ""),
]


def _cases():
    for methods, kinds, key, value, source in REFERENCE:
        for m in methods:
            for kind in kinds:
                yield pytest.param(m, kind, key, value, source, id=f"{m}-{kind}-{key}")


@pytest.mark.parametrize("method,kind,key,value,source", list(_cases()))
def test_paper_recipe_has_the_reference_value_and_its_source(method, kind, key, value, source):
    cfg, origin = resolve_with_origin(get_method(method), "paper", kind, 0.4)
    sec, k = key.split(".")
    assert cfg[sec][k] == value
    layer, src = origin[key]
    assert source in src, (layer, src)


def test_every_paper_value_that_differs_from_fair_names_its_source():
    for method in ALL:
        for kind in ("coco", "voc", "yolo", "shapes"):
            paper, origin = resolve_with_origin(get_method(method), "paper", kind, 0.4)
            fair = resolve_config(get_method(method), "fair", kind, 0.4)
            for sec in ("model", "train", "method"):
                for key, v in paper[sec].items():
                    if fair[sec].get(key) != v:
                        assert origin[f"{sec}.{key}"][1], f"{method} {kind} {sec}.{key} has no source"


def test_ssd_det_voc_runs_about_15k_iterations():
    """2 GPUs x 2 images over VOC07 trainval's 5011 images for 12 epochs."""
    t = resolve_config(get_method("ssd_det"), "paper", "voc", 0.4)["train"]
    iters = t["epochs"] * math.ceil(5011 / t["batch_size"])
    assert 14_500 < iters < 15_500
    from benchmark.config import scaled_lr

    assert scaled_lr(t) == 0.002  # as written, not the linear-scaling rule's 0.005


def test_fair_is_one_recipe_for_every_method_and_keeps_todays_detector():
    """`fair`: identical model/train sections for every method (torchvision's detector, clip 10, AMP on)."""
    sections = []
    for method in ALL:
        cfg = resolve_config(get_method(method), "fair", "coco", 0.4)
        sections.append(dumps_json({"model": cfg["model"], "train": cfg["train"]}))
        for sec, defaults in OPTIONAL_KEYS.items():
            assert {k: cfg[sec][k] for k in defaults} == defaults
        assert cfg["train"]["grad_clip"] == 10.0 and cfg["train"]["amp"] is True
    assert len(set(sections)) == 1
    assert resolve_config(get_method("ssd_det"), "fair", "coco", 0.4)["method"]["loss_sisd"] == 0.25


# `cpu` configs and cell ids as the suite computed them before the recipes moved into data (commit cefc26f): the
# sha256 of the canonical JSON of the resolved config without runtime keys (what a cell id hashes), and whole cell
# ids for fixed dataset fingerprints. (A release that changes the cpu profile on purpose updates these.)
CPU_PINS = [
    ("faster_rcnn", "shapes", 0.4, None, "4c3c520defd58ee7"),
    ("oa_mil", "shapes", 0.2, None, "291f8a16752c215e"),
    ("ssd_det", "shapes", 0.4, None, "0375c01cae8da89e"),
    ("clean", "coco", 0.0, None, "e1e7b548e17efd4c"),
    ("oa_mil", "voc", 0.4, None, "a0e11db321ea8dce"),
    ("ssd_det+retrain", "yolo", 0.3, None, "745c3d0491b7fd8a"),
    ("faster_rcnn", "voc", 0.1, {"train.lr": 0.002}, "55475a36f1576f00"),
]


@pytest.mark.parametrize("method,kind,level,overrides,digest", CPU_PINS)
def test_cpu_profile_resolves_as_before(method, kind, level, overrides, digest):
    from benchmark.config import without_runtime_keys

    # pinned before the recipes moved to data, when the cpu profile trained from scratch: with
    # `model.pretrained=false` the resolved config is still exactly that one ...
    scratch = resolve_config(get_method(method), "cpu", kind, level, {**(overrides or {}), "model.pretrained": False})
    assert sha256_bytes(dumps_json(without_runtime_keys(scratch)))[:16] == digest
    assert not any(k in scratch[sec] for sec, keys in OPTIONAL_KEYS.items() for k in keys)
    # ... and the default differs from it only by the suite's pretrained start and that file's sha256
    cfg = resolve_config(get_method(method), "cpu", kind, level, overrides)
    from methods._core.weights import TINY_PRETEXT

    assert cfg["model"] == {**scratch["model"], "pretrained": True, "weights_sha256": sha256_file(TINY_PRETEXT)}
    assert {k: v for k, v in cfg.items() if k != "model"} == {k: v for k, v in scratch.items() if k != "model"}


CPU_CELLS = [
    ("faster_rcnn", "shapes", 0.4, 0, {}, "390fd6d34ebbe5bb"),
    ("oa_mil", "shapes", 0.2, 1, {}, "250f61e2bff8046a"),
    ("ssd_det", "shapes", 0.4, 0, {}, "bb31251c822b7542"),
    ("clean", "bccd", 0.0, 0, {}, "04dee36a3aab19ae"),
    ("oa_mil", "bccd", 0.4, 2, {"train.lr": 0.002}, "38858f3e7ae8391d"),
]


@pytest.mark.parametrize("method,dataset,level,seed,overrides,cell", CPU_CELLS)
def test_cpu_cell_ids_are_unchanged(method, dataset, level, seed, overrides, cell):
    from benchmark.runner.cells import DatasetCache, resolve
    from benchmark.runner.grid import CellSpec
    from noise.spec import CLEAN, NoiseSpec

    class Fixed(DatasetCache):  # fixed fingerprints: no dataset is loaded
        def facts(self, spec):
            return {"name": spec, "kind": {"shapes": "shapes", "bccd": "voc"}[spec], "train_sha256": "a" * 64,
                    "test_sha256": "b" * 64}

    def cell_id(extra):
        noise = NoiseSpec.parse("uniform", level=level) if level else CLEAN
        spec = CellSpec(method, dataset, noise, seed, profile="cpu", overrides={**overrides, **extra})
        return resolve(spec, Fixed(), gpu=False).config["cell_id"]

    # from scratch (the cpu profile's start when these were pinned) a cell keeps its id; the pretrained start,
    # now the default, is part of the experiment and so of the id
    assert cell_id({"model.pretrained": False}) == cell
    assert cell_id({}) != cell


def test_profiles_are_the_data_folders_plus_cpu():
    from benchmark.recipes import data_profiles, rule_files

    assert set(PROFILES) == {"cpu", *data_profiles()} == {"cpu", "fair", "paper"}
    assert len(rule_files("paper")) >= 8


def test_optional_keys_may_be_set_on_the_cpu_profile_and_are_checked():
    cfg = resolve_config(get_method("faster_rcnn"), "cpu", "shapes", 0.4, {"model.box_coder": "xyxy"})
    assert cfg["model"]["box_coder"] == "xyxy" and "rcnn_box_loss" not in cfg["model"]
    with pytest.raises(BenchError, match="model.box_coder must be one of xywh, xyxy"):
        resolve_config(get_method("faster_rcnn"), "cpu", "shapes", 0.4, {"model.box_coder": "cxcywh"})
    with pytest.raises(BenchError, match="rpn_min_pos_iou must be a number"):
        resolve_config(get_method("faster_rcnn"), "paper", "coco", 0.4, {"model.rpn_min_pos_iou": 2})


def test_a_bad_recipe_file_is_one_line(tmp_path, monkeypatch):
    import benchmark.recipes as recipes

    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "profile.yaml").write_text("model:\n  lr: [1, 2\n")
    monkeypatch.setattr(recipes, "ROOT", tmp_path)
    recipes._read.cache_clear()
    try:
        with pytest.raises(BenchError, match="cannot read recipe"):
            recipes.layers("paper", "faster_rcnn", "coco")
        (tmp_path / "paper" / "profile.yaml").write_text("modle: {}\n")
        with pytest.raises(BenchError, match="unknown recipe field"):
            recipes.layers("paper", "faster_rcnn", "coco")
    finally:
        recipes._read.cache_clear()


def _bench(*args):
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True)


def test_recipe_show_prints_values_and_their_origins():
    done = _bench("recipe", "show", "--method", "ssd_det", "--dataset", "voc", "--profile", "paper", "--level", "0.4",
                  "--set", "train.warmup_iters=100")
    assert done.returncode == 0, done.stderr
    lines = {ln.split(" = ")[0]: ln for ln in done.stdout.splitlines() if " = " in ln}
    assert "0.002" in lines["train.lr"] and "method rule paper/ssd_det@voc" in lines["train.lr"]
    assert "ENoiseBoxPLUS_r50_fpn_1x_voc_0.4.py:275" in lines["train.lr"]
    assert "5.0" in lines["method.loss_sisd"] and "MIL_bbox_head_EPLUS.py:46" in lines["method.loss_sisd"]
    assert "dataset rule paper/voc" in lines["model.min_size"]
    assert "method ssd_det (default_config)" in lines["method.topk"]
    assert "user --set" in lines["train.warmup_iters"]
    cpu = _bench("recipe", "show", "--method", "faster_rcnn", "--dataset", "shapes", "--profile", "cpu")
    assert cpu.returncode == 0 and "profile cpu (benchmark/config.py)" in cpu.stdout
    bad = _bench("recipe", "show", "--method", "faster_rcnn", "--dataset", "voc", "--set", "train.lrr=1")
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown config key train.lrr")


# ---- the paper-recipe models build and take a training step (small images, a from-scratch ResNet-18) -------------
SMALL = {"model.backbone": "resnet18", "model.pretrained": False, "model.min_size": 96, "model.max_size": 128,
         "model.representation_size": 64, "model.fpn_channels": 64, "model.box_batch_size_per_image": 32}


@pytest.mark.parametrize("method", ["faster_rcnn", "oa_mil", "ssd_det"])
def test_paper_models_build_and_train_one_step(method):
    from methods._core.geometry import XYXYBoxCoder
    from methods._core.model import CoreRPN, LastLevelP6Conv

    adapter = get_method(method)
    overrides = dict(SMALL)
    if method == "ssd_det":
        overrides.update({"method.num_negatives": 16, "method.refiner_pool_size": 4})
    cfg = resolve_config(adapter, "paper", "coco", 0.4, overrides)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="from scratch"):
        model = adapter.build_model(cfg, 3)
    det = getattr(model, "detector", model)
    assert isinstance(det.rpn, CoreRPN) and det.rpn.valid_anchors_only
    assert det.roi_heads.box_roi_pool.aligned and det.roi_heads.box_roi_pool.sampling_ratio == 0
    if method == "ssd_det":
        p6 = det.backbone.fpn.extra_blocks
        assert isinstance(p6, LastLevelP6Conv) and isinstance(p6.norm, torch.nn.GroupNorm)
        assert isinstance(det.backbone.fpn.layer_blocks[0][1], torch.nn.GroupNorm)
        assert model.refiner.pooler.aligned
    else:
        assert isinstance(det.rpn.box_coder, XYXYBoxCoder) and isinstance(det.roi_heads.box_coder, XYXYBoxCoder)
    model.train()
    images = [torch.rand(3, 96, 128), torch.rand(3, 128, 96)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([1]),
                "ann_ids": torch.tensor([1]), "image_id": torch.tensor(1), "orig_size": torch.tensor([96, 128]),
                "flip": torch.tensor([False, False])},
               {"boxes": torch.tensor([[5.0, 20.0, 70.0, 120.0]]), "labels": torch.tensor([2]),
                "ann_ids": torch.tensor([2]), "image_id": torch.tensor(2), "orig_size": torch.tensor([128, 96]),
                "flip": torch.tensor([False, False])}]
    losses = model(images, targets)
    assert all(torch.isfinite(v).item() for v in losses.values())
    sum(losses.values()).backward()
