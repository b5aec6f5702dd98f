"""Run configuration: the `cpu` and `paper` profiles, overrides and validation.

A resolved config is a plain dict with four sections, recorded with every run:
- `profile`: {name, dataset_kind, noise_level} (+ `detector` for a method on the one-stage core)
- `model`:   the detector (backbone, FPN, anchors, image size, RPN/RoI sampling) -> `methods._core.model`
- `train`:   optimisation, schedule, augmentation, seeds, device -> `benchmark.engine`
- `method`:  the adapter's own settings (`MethodAdapter.default_config`)

Schedules are in epochs. `train.iters_per_epoch` (optional) makes an "epoch" a fixed number of iterations, so a
short CPU run keeps the 12-epoch phase structure (lr steps, OA-MIL's epoch-gated stages) that methods rely on.
Learning rates are given for `train.base_batch_size` images and scaled linearly to `train.batch_size`
(the papers' linear-scaling rule); `train.batch_size` is the total over all DDP processes.

Profiles:
- `cpu` (here, in code): the measured CPU recipe (tiny 4-stage conv backbone 32-160 started from the suite's
  pretrained weights (`model.pretrained`; false = from scratch) + 64-ch FPN, anchors 8-96 px, 128 RoIs/img, AdamW
  1e-3, 30-iteration warm-up + cosine, grad-clip 10, h+v flips; images kept native up to 320x240: 128 px shapes train
  at 128 px, 640x480 BCCD at 320x240). Shapes: batch 8, 12 epochs x 35 = 420 iterations, and a lighter head (64
  RoIs/img, 128-d box head, 500/250 RPN proposals; ~2.3 min on one core, clean AP ~0.66 from the pretrained start);
  other datasets (larger images): batch 4, 12 x 17 = 204 iterations.
- `fair` (data: `benchmark/recipes/fair/`): one ResNet-50-FPN recipe for every method (ImageNet weights, stem +
  stage 1 frozen, frozen BN, 1333x800 or VOC 1000x600, flip 0.5, SGD 0.02 momentum 0.9 wd 1e-4 for batch 16,
  warm-up 500, 12 epochs, steps 8/11, clip 10): controlled comparisons.
- `paper` (data: `benchmark/recipes/paper/`): each method as its authors trained it (the mmdet 2.x detector, and
  per method and dataset the coders, losses, neck, batch, lr and clipping of the reference code), every value with
  its source; for reproducing the papers' tables. `bench recipe show` prints a resolved config and its origins.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from benchmark.errors import BenchError
from benchmark.scalars import check_loggers

PROFILES = ("cpu", "fair", "paper")  # cpu: in code below; fair, paper: benchmark/recipes/
DATASET_KINDS = ("coco", "voc", "yolo", "shapes")  # recipe kinds; each dataset format declares one of them
SECTIONS = ("profile", "model", "train", "method")
DETECTORS = ("two_stage", "one_stage")  # MethodAdapter.detector: the detection core a method builds on
DEFAULT_DETECTOR = "two_stage"

_MODEL_COMMON = {
    "aspect_ratios": [0.5, 1.0, 2.0],
    "box_nms_thresh": 0.5,
    "box_detections_per_img": 100,
    "pretrained": False,
    "weights": None,
    "upscale": True,
}

_TRAIN_COMMON = {
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "gamma": 0.1,
    "warmup_factor": 0.001,
    "seed": 0,
    "data_seed": 0,
    "amp": True,
    "device": "auto",
    "workers": 0,
    "cache_images": False,
    "log_every": 20,
    "find_unused_parameters": False,
    "checkpoint_every": 1,
    "checkpoint_minutes": 30.0,
    "loggers": ["csv"],
}

# train keys that may differ between runs of the same experiment: left out of cell ids and of the check that a
# resumed run continues the same experiment
RUNTIME_KEYS = {"train": ("device", "workers", "log_every", "amp", "cache_images", "checkpoint_every",
                          "checkpoint_minutes", "loggers")}


# Detector and data keys the `paper` and `fair` recipes set (benchmark/recipes/). A config without one of them
# (the `cpu` profile) behaves as its default here, the suite's detector as it was before these keys existed, so
# cpu-profile configs and cell ids do not change. Any profile may set them with --set.
OPTIONAL_KEYS: dict[str, dict[str, Any]] = {
    "model": {
        "box_coder": "xywh",  # xywh: torchvision BoxCoder (RPN 1,1,1,1; RCNN 10,10,5,5) | xyxy: mmdet DeltaXYXY
        "rpn_box_loss": "smooth_l1",  # smooth_l1 (beta 1/9, torchvision) | l1 (mmdet L1Loss)
        "rcnn_box_loss": "smooth_l1",
        "roi_align_aligned": False,  # mmcv RoIAlign: True (half-pixel shift)
        "roi_sampling_ratio": 2,  # mmcv: 0 (adaptive)
        "norm_eval_affine_trainable": False,  # mmdet norm_eval=True + requires_grad=True: stats frozen, gamma/beta train
        "init": "torchvision",  # mmdet: xavier FPN and box-head fcs, N(0, 0.01) classifier, N(0, 0.001) regressor
        "valid_anchors_only": False,  # mmdet: anchors over an image's padding are never sampled by the RPN
        "rpn_min_pos_iou": None,  # mmdet MaxIoUAssigner min_pos_iou for the RPN's low-quality matches
        "round_anchors": True,  # torchvision rounds base anchors (and derives strides by integer division)
        "fpn_p6": "maxpool",  # maxpool: torchvision LastLevelMaxPool | conv_on_input: mmdet add_extra_convs='on_input'
    },
    "train": {
        "aspect_ratio_group": False,  # mmdet GroupSampler: every batch all landscape or all portrait
        "filter_empty_gt": False,  # mmdet filter_empty_gt: training images without a box are dropped
        "clip_gt": True,  # the suite clips training boxes to the image; mmdet does not
    },
}


def option(cfg_section: dict, section: str, key: str):
    """`cfg_section[key]`, or its `OPTIONAL_KEYS` default where the config predates the key."""
    return cfg_section.get(key, OPTIONAL_KEYS[section][key])


def without_runtime_keys(cfg: dict, also: dict[str, tuple[str, ...]] | None = None) -> dict:
    """A copy of a resolved config without its `RUNTIME_KEYS` (and the keys in `also`, by section): the part that
    defines the experiment. Sections are copied, so `cfg` is left as it is."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.items()}
    for drop in (RUNTIME_KEYS, also or {}):
        for section, keys in drop.items():
            for key in keys:
                (out.get(section) or {}).pop(key, None)
    return out

PROFILE_DEFAULTS: dict[str, dict[str, dict]] = {
    "cpu": {
        "model": {
            **_MODEL_COMMON,
            "backbone": "tiny",
            "pretrained": True,  # the suite's own pretrained tiny weights (see _record_weights); false = from scratch
            "widths": [32, 48, 96, 160],
            "fpn_channels": 64,
            "trainable_layers": 5,
            "anchor_sizes": [[8, 12], [16, 24], [32, 48], [64, 96]],
            "roi_featmaps": ["0", "1", "2"],
            "representation_size": 256,
            "min_size": 240,
            "max_size": 320,
            "upscale": False,
            "rpn_pre_nms_top_n_train": 1000,
            "rpn_post_nms_top_n_train": 500,
            "rpn_pre_nms_top_n_test": 500,
            "rpn_post_nms_top_n_test": 250,
            "box_batch_size_per_image": 128,
            "box_score_thresh": 0.01,
        },
        "train": {
            **_TRAIN_COMMON,
            "epochs": 12,
            "iters_per_epoch": 35,
            "batch_size": 8,
            "base_batch_size": 8,
            "optimizer": "adamw",
            "lr": 1e-3,
            "scheduler": "cosine",
            "steps": [8, 11],
            "warmup_iters": 30,
            "grad_clip": 10.0,
            "hflip": 0.5,
            "vflip": 0.5,
            "cache_images": True,
        },
    },
}

# dataset-kind specific changes to a profile
# (320x240 images cost ~2.5x a 128 px shapes image per iteration: the cpu profile halves the batch there and runs
#  12 x 17 = 204 iterations of 4 images, the measured BCCD prototype budget of ~2-3 min on one core)
_CPU_REAL_IMAGES = {"train": {"batch_size": 4, "base_batch_size": 4, "iters_per_epoch": 17}}
# shapes (~5 objects on a 128 px image) is the quick-start dataset, sized so the default sweep fits 20 min on two
# cores: 64 sampled RoIs/img, a 128-d box head and 500/250 RPN proposals before/after NMS make a training step
# ~0.65x as long, at a clean AP within the seed spread (45.1 +- 5.0 vs 47.4 +- 6.2 over 3 seeds, measured on one
# day) and the same collapse at 40 % noise (2.7 +- 0.7)
_CPU_SHAPES = {"model": {"box_batch_size_per_image": 64, "representation_size": 128,
                         "rpn_pre_nms_top_n_train": 500, "rpn_post_nms_top_n_train": 250}}
_KIND_DEFAULTS: dict[tuple[str, str], dict[str, dict]] = {
    ("cpu", "shapes"): _CPU_SHAPES,
    ("cpu", "voc"): _CPU_REAL_IMAGES,
    ("cpu", "coco"): _CPU_REAL_IMAGES,
    ("cpu", "yolo"): _CPU_REAL_IMAGES,
}

_CHOICES = {
    ("model", "backbone"): ("tiny", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                              "mobilenet_v3_large"),
    ("model", "box_coder"): ("xywh", "xyxy"),
    ("model", "rpn_box_loss"): ("smooth_l1", "l1"),
    ("model", "rcnn_box_loss"): ("smooth_l1", "l1"),
    ("model", "init"): ("torchvision", "mmdet"),
    ("model", "fpn_p6"): ("maxpool", "conv_on_input"),
    ("train", "optimizer"): ("sgd", "adamw"),
    ("train", "scheduler"): ("step", "cosine", "constant"),
}
_POSITIVE_INT = {("model", k) for k in ("fpn_channels", "representation_size", "min_size", "max_size",
                                         "rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train",
                                         "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test",
                                         "box_batch_size_per_image", "box_detections_per_img")}
_POSITIVE_INT |= {("train", k) for k in ("epochs", "batch_size", "base_batch_size", "log_every", "checkpoint_every")}
_NONNEG_INT = {("train", k) for k in ("warmup_iters", "workers", "seed", "data_seed")} | {
    ("model", k) for k in ("trainable_layers", "roi_sampling_ratio")}
_POSITIVE_FLOAT = {("train", "lr")}
_NONNEG_FLOAT = {("train", k) for k in ("weight_decay", "momentum", "checkpoint_minutes")}
_UNIT_FLOAT = {("train", k) for k in ("hflip", "vflip", "warmup_factor", "gamma")} | {
    ("model", k) for k in ("box_nms_thresh", "box_score_thresh")}
_BOOL = {("model", k) for k in ("pretrained", "upscale", "roi_align_aligned", "norm_eval_affine_trainable",
                                 "valid_anchors_only", "round_anchors")} | {
    ("train", k) for k in ("amp", "cache_images", "find_unused_parameters", "aspect_ratio_group", "filter_empty_gt",
                           "clip_gt")}


def profile_defaults(profile: str, dataset_kind: str = "coco") -> dict:
    """`model` and `train` sections of a profile for a dataset kind (deep copies)."""
    out, _, _ = _profile_layers(profile, dataset_kind, None)
    return {"model": out["model"], "train": out["train"]}


def _check_profile(profile: str, dataset_kind: str) -> None:
    if profile not in PROFILES:
        raise BenchError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    if dataset_kind not in DATASET_KINDS:
        raise BenchError(f"unknown dataset kind {dataset_kind!r} (known: {', '.join(DATASET_KINDS)})")


def _profile_layers(profile: str, dataset_kind: str, method_name: str | None):
    """(sections, origin, method layers): the profile's model/train sections for the dataset kind with the origin
    of every value ({"model.key": (label, source or "")}), and the method rules still to apply after the
    method's own defaults."""
    _check_profile(profile, dataset_kind)
    origin: dict[str, tuple[str, str]] = {}
    if profile in PROFILE_DEFAULTS:  # cpu: in code
        out = copy.deepcopy(PROFILE_DEFAULTS[profile])
        for sec, vals in out.items():
            origin.update({f"{sec}.{k}": (f"profile {profile} (benchmark/config.py)", "") for k in vals})
        for sec, vals in _KIND_DEFAULTS.get((profile, dataset_kind), {}).items():
            out[sec].update(copy.deepcopy(vals))
            origin.update({f"{sec}.{k}": (f"dataset rule {profile}/{dataset_kind} (benchmark/config.py)", "")
                           for k in vals})
        return out, origin, []
    from benchmark.recipes import layers

    found = layers(profile, method_name, dataset_kind)
    base = [layer for layer in found if not layer.label.startswith("method rule")]
    out = {"model": {}, "train": {}}
    for layer in base:
        for sec, vals in layer.values.items():
            for key, v in vals.items():
                if layer is not base[0] and key not in out[sec] and key not in OPTIONAL_KEYS.get(sec, {}):
                    raise BenchError(f"recipe sets unknown config key {sec}.{key}", layer.path)
                out[sec][key] = copy.deepcopy(v)
                origin[f"{sec}.{key}"] = (layer.label, layer.sources.get(sec, {}).get(key, ""))
    return out, origin, [layer for layer in found if layer.label.startswith("method rule")]


def dataset_kind(dataset) -> str:
    """The recipe kind of a loaded dataset: the kind its format declares and its reader recorded
    (`benchmark.datasets.formats`), never a guess from its path or name."""
    from benchmark.datasets.formats import kind_of

    kind = kind_of(dataset)
    if kind not in DATASET_KINDS:
        raise BenchError(f"dataset format declares kind {kind!r}, which no recipe knows (known: "
                         f"{', '.join(DATASET_KINDS)}): a format's kind must be one of them")
    return kind


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`["train.lr=0.01", "model.backbone=resnet50"]` -> {"train.lr": 0.01, ...}; values parsed as JSON if they can."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--set expects key=value (e.g. train.lr=0.01), got {item!r}")
        raw = raw.strip()
        try:
            value = json.loads(raw)
        except ValueError:
            value = {"none": None, "null": None, "true": True, "false": False}.get(raw.lower(), raw)
        out[key.strip()] = value
    return out


def _flatten_overrides(overrides: dict | None) -> dict[tuple[str, str], Any]:
    flat: dict[tuple[str, str], Any] = {}
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and key in SECTIONS:
            for k, v in value.items():
                flat[(key, k)] = v
            continue
        sec, dot, k = key.partition(".")
        if not dot or sec not in SECTIONS or not k:
            raise BenchError(f"config key {key!r} must be SECTION.KEY with SECTION one of {', '.join(SECTIONS[1:])}")
        flat[(sec, k)] = value
    return flat


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check(sec: str, key: str, v: Any) -> None:
    name = f"{sec}.{key}"
    sk = (sec, key)
    if sk in _CHOICES and v not in _CHOICES[sk]:
        raise BenchError(f"{name} must be one of {', '.join(_CHOICES[sk])}, got {v!r}")
    if sk in _POSITIVE_INT and not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
        raise BenchError(f"{name} must be a positive integer, got {v!r}")
    if sk in _NONNEG_INT and not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
        raise BenchError(f"{name} must be a non-negative integer, got {v!r}")
    if sk in _POSITIVE_FLOAT and not (_is_number(v) and v > 0):
        raise BenchError(f"{name} must be a positive number, got {v!r}")
    if sk in _NONNEG_FLOAT and not (_is_number(v) and v >= 0):
        raise BenchError(f"{name} must be a non-negative number, got {v!r}")
    if sk in _UNIT_FLOAT and not (_is_number(v) and 0 <= v <= 1):
        raise BenchError(f"{name} must be a number in [0, 1], got {v!r}")
    if sk in _BOOL and not isinstance(v, bool):
        raise BenchError(f"{name} must be true or false, got {v!r}")


def validate(cfg: dict) -> dict:
    """Check every value of a resolved config; the first problem is a one-line BenchError naming the key."""
    m, t = cfg["model"], cfg["train"]
    for sec in ("model", "train"):
        for key, v in cfg[sec].items():
            _check(sec, key, v)
    if t["iters_per_epoch"] is not None and not (isinstance(t["iters_per_epoch"], int)
                                                 and not isinstance(t["iters_per_epoch"], bool)
                                                 and t["iters_per_epoch"] > 0):
        raise BenchError(f"train.iters_per_epoch must be a positive integer or null, got {t['iters_per_epoch']!r}")
    if t["grad_clip"] is not None and not (_is_number(t["grad_clip"]) and t["grad_clip"] >= 0):
        raise BenchError(f"train.grad_clip must be a non-negative number or null, got {t['grad_clip']!r}")
    steps = t["steps"]
    if not isinstance(steps, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in steps) \
            or steps != sorted(steps) or (t["scheduler"] == "step" and any(s <= 0 or s > t["epochs"] for s in steps)):
        # the epoch range only matters to the step schedule; cosine/constant runs may shorten `epochs` freely
        raise BenchError(f"train.steps must be increasing epochs in 1..train.epochs ({t['epochs']}), got {steps!r}")
    check_loggers(t["loggers"])
    if not is_device(t["device"]):
        raise BenchError(f"train.device must be auto, cpu, cuda or cuda:N, got {t['device']!r}")
    if m["min_size"] > m["max_size"]:
        raise BenchError(f"model.min_size ({m['min_size']}) must not exceed model.max_size ({m['max_size']})")
    sizes = m["anchor_sizes"]
    if not isinstance(sizes, list) or not sizes or not all(
            isinstance(level, list) and level and all(_is_number(s) and s > 0 for s in level) for level in sizes):
        raise BenchError(f"model.anchor_sizes must be a non-empty list of lists of positive sizes, got {sizes!r}")
    ratios = m["aspect_ratios"]
    if not isinstance(ratios, list) or not ratios or not all(_is_number(r) and r > 0 for r in ratios):
        raise BenchError(f"model.aspect_ratios must be a non-empty list of positive numbers, got {ratios!r}")
    widths = m["widths"]
    if not isinstance(widths, list) or len(widths) != 4 or not all(isinstance(w, int) and w > 0 for w in widths):
        raise BenchError(f"model.widths must be 4 positive integers, got {widths!r}")
    if not isinstance(m["roi_featmaps"], list) or not m["roi_featmaps"]:
        raise BenchError(f"model.roi_featmaps must be a non-empty list of feature map names, got {m['roi_featmaps']!r}")
    levels = len(m["roi_featmaps"]) + 1  # the FPN's returned levels + the max-pool level
    if len(sizes) != levels:
        raise BenchError(f"model.anchor_sizes has {len(sizes)} levels but the FPN gives {levels} "
                         f"(model.roi_featmaps + pool)")
    iou = m.get("rpn_min_pos_iou")
    if iou is not None and not (_is_number(iou) and 0 <= iou <= 1):
        raise BenchError(f"model.rpn_min_pos_iou must be a number in [0, 1] or null, got {iou!r}")
    if m["weights"] is not None and not isinstance(m["weights"], str):
        raise BenchError(f"model.weights must be a file path or null, got {m['weights']!r}")
    return cfg


# ---- initial weights recorded in the config (issue 27) --------------------------------------------------------
_SHA_CACHE: dict[tuple, str] = {}


def _file_sha256(path) -> str:
    from pathlib import Path

    from benchmark.io import sha256_file

    p = Path(path)
    if not p.is_file():
        raise BenchError("weights file not found", path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(p)
    return _SHA_CACHE[key]


def _record_weights(cfg: dict) -> None:
    """Put the sha256 of the initial weights file in `model.weights_sha256`: a `model.weights` file, or the suite's
    pretrained tiny backbone (`model.pretrained` with `model.backbone=tiny`), so a cell's identity names its start
    and `methods._core.model` refuses a file that changed. Configs without a weights file get no key (their cell
    ids stay as they were)."""
    m = cfg["model"]
    if m.get("weights"):
        m["weights_sha256"] = _file_sha256(m["weights"])
    elif m["backbone"] == "tiny" and m["pretrained"]:
        from methods._core.weights import TINY_PRETEXT, TINY_PRETEXT_WIDTHS

        if m["widths"] != TINY_PRETEXT_WIDTHS:
            raise BenchError(f"the suite's pretrained tiny backbone has model.widths={TINY_PRETEXT_WIDTHS}, not "
                             f"{m['widths']}; set model.pretrained=false to train other widths from scratch")
        m["weights_sha256"] = _file_sha256(TINY_PRETEXT)


def resolve_config(method, profile: str, dataset_kind: str = "coco", noise_level: float | None = None,
                   overrides: dict | None = None) -> dict:
    """Profile defaults (+ dataset rule) + the method's `default_config` and `profile_overrides` + the recipe's
    method rules + user overrides, validated.

    `overrides` maps "section.key" (or {section: {key: value}}) to values; unknown keys are errors, never ignored.
    """
    return resolve_with_origin(method, profile, dataset_kind, noise_level, overrides)[0]


def resolve_with_origin(method, profile: str, dataset_kind: str = "coco", noise_level: float | None = None,
                        overrides: dict | None = None) -> tuple[dict, dict[str, tuple[str, str]]]:
    """`resolve_config` and where each value came from: {"section.key": (layer, reference source or "")}, layer
    one of `profile P`, `dataset rule P/KIND`, `method M (default_config)`, `method M (profile_overrides)`,
    `method rule P/M[@KIND]`, `user --set` (`bench recipe show` prints them)."""
    if noise_level is not None and not (_is_number(noise_level) and noise_level >= 0):
        raise BenchError(f"noise level must be a non-negative number, got {noise_level!r}")
    name = getattr(method, "name", "") or None
    base, origin, method_rules = _profile_layers(profile, dataset_kind, name)
    method_defaults = copy.deepcopy(method.default_config(profile, noise_level, dataset_kind) or {})
    origin.update({f"method.{k}": (f"method {name} (default_config)", "") for k in method_defaults})
    profile_overrides = getattr(method, "profile_overrides", None)
    for sec, values in (profile_overrides(profile, noise_level, dataset_kind) if profile_overrides else {}).items():
        if sec not in ("model", "train"):
            raise BenchError(f"method {method.name!r} overrides unknown config section {sec!r}")
        for k, v in values.items():
            if k not in base[sec]:
                raise BenchError(f"method {method.name!r} sets unknown config key {sec}.{k}")
            base[sec][k] = copy.deepcopy(v)
            origin[f"{sec}.{k}"] = (f"method {name} (profile_overrides)", "")
    sections = {"model": base["model"], "train": base["train"], "method": method_defaults}
    for layer in method_rules:
        for sec, vals in layer.values.items():
            for key, v in vals.items():
                if key not in sections[sec] and key not in OPTIONAL_KEYS.get(sec, {}):
                    raise BenchError(f"recipe sets unknown config key {sec}.{key} for method {name!r}", layer.path)
                sections[sec][key] = copy.deepcopy(v)
                origin[f"{sec}.{key}"] = (layer.label, layer.sources.get(sec, {}).get(key, ""))
    detector = getattr(method, "detector", "two_stage")
    if detector not in DETECTORS:
        raise BenchError(f"method {method.name!r} declares detector {detector!r} (known: {', '.join(DETECTORS)})")
    cfg = {
        "profile": {"name": profile, "dataset_kind": dataset_kind, "noise_level": noise_level,
                    # only a non-default core is recorded: two-stage configs (and so their cell ids) are unchanged
                    **({"detector": detector} if detector != DEFAULT_DETECTOR else {})},
        "model": base["model"],
        "train": base["train"],
        "method": method_defaults,
    }
    for (sec, key), value in _flatten_overrides(overrides).items():
        origin[f"{sec}.{key}"] = ("user --set", "")
        if sec == "profile":
            raise BenchError(f"profile.{key} cannot be overridden; choose --profile instead")
        if key not in cfg[sec] and key in OPTIONAL_KEYS.get(sec, {}):
            cfg[sec][key] = copy.deepcopy(OPTIONAL_KEYS[sec][key])  # a profile that predates the key: its default
        if key not in cfg[sec]:
            import difflib

            close = difflib.get_close_matches(key, list(cfg[sec]), n=2)
            hint = f" (did you mean {', '.join(f'{sec}.{c}' for c in close)}?)" if close else ""
            if sec == "method":  # a key of another method: in a sweep the baselines meet it too
                hint += (f"; {method.name} has {', '.join(sorted(cfg[sec])) or 'no method keys'}. In a sweep, "
                         f"`--set METHOD:method.{key}=VALUE` sets it for one method only")
            raise BenchError(f"unknown config key {sec}.{key} for method {method.name!r}{hint}")
        default = cfg[sec][key]
        if sec == "method" and default is not None and value is not None:
            if isinstance(default, bool) != isinstance(value, bool) or (
                    _is_number(default) and not _is_number(value)) or (
                    isinstance(default, str) and not isinstance(value, str)):
                raise BenchError(f"method.{key} must be of type {type(default).__name__}, got {value!r}")
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        cfg[sec][key] = value
    validate(cfg)
    _record_weights(cfg)
    return cfg, origin


def is_device(value) -> bool:
    """`auto`, `cpu`, `cuda` or `cuda:N`: what `train.device` (and `bench predict --device`) may say."""
    return isinstance(value, str) and (value in ("auto", "cpu", "cuda")
                                       or (value.startswith("cuda:") and value[5:].isdigit()))


def scaled_lr(train_cfg: dict) -> float:
    """Linear-scaling rule: lr is given for `base_batch_size` images."""
    return float(train_cfg["lr"]) * train_cfg["batch_size"] / train_cfg["base_batch_size"]


def config_file_sets(path) -> list[str]:
    """A YAML config file as `--set` items (given before the command line's, which win).

    The file takes the keys `--set` takes: `train.lr: 0.01`, `ssd_det:method.topk: 3`, or sections as mappings
    (`train: {lr: 0.01}`, `ssd_det:method: {topk: 3}`).
    """
    import yaml

    from benchmark.io import read_bytes

    raw = read_bytes(path)
    try:
        data = yaml.safe_load(raw.decode("utf-8")) or {}
    except UnicodeDecodeError:
        raise BenchError("a config file must be UTF-8 text", path) from None
    except yaml.YAMLError as exc:
        raise BenchError(f"not valid YAML: {str(exc).splitlines()[0]}", path) from None
    if not isinstance(data, dict):
        raise BenchError("a config file must be a mapping of keys (train.lr: 0.01) or sections (train: {lr: 0.01})",
                         path)
    items = []
    for key, value in data.items():
        if not isinstance(key, str):
            raise BenchError(f"config key {key!r} is not text", path)
        section = key.rpartition(":")[2]
        if isinstance(value, dict) and section in SECTIONS:
            for sub, v in value.items():
                if not isinstance(sub, str) or "." in sub:
                    raise BenchError(f"key {sub!r} under {key!r} must be a plain key name", path)
                items.append(f"{key}.{sub}={json.dumps(v)}")
        elif "." in section:
            items.append(f"{key}={json.dumps(value)}")
        else:
            raise BenchError(f"config key {key!r} must be SECTION.KEY or a section (model, train, method) "
                             "holding keys", path)
    return items
