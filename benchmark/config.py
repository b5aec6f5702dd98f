"""Run configuration: the `cpu` and `paper` profiles, overrides and validation.

A resolved config is a plain dict with four sections, recorded with every run:
- `profile`: {name, dataset_kind, noise_level}
- `model`:   the detector (backbone, FPN, anchors, image size, RPN/RoI sampling) -> `methods._core.model`
- `train`:   optimisation, schedule, augmentation, seeds, device -> `benchmark.engine`
- `method`:  the adapter's own settings (`MethodAdapter.default_config`)

Schedules are in epochs. `train.iters_per_epoch` (optional) makes an "epoch" a fixed number of iterations, so a
short CPU run keeps the 12-epoch phase structure (lr steps, OA-MIL's epoch-gated stages) that methods rely on.
Learning rates are given for `train.base_batch_size` images and scaled linearly to `train.batch_size`
(the papers' linear-scaling rule); `train.batch_size` is the total over all DDP processes.

Profiles:
- `cpu`: the measured CPU recipe (tiny 4-stage conv backbone 32-160 started from the suite's pretrained weights
  (`model.pretrained`; false = from scratch) + 64-ch FPN, anchors 8-96 px, 128 RoIs/img,
  AdamW 1e-3, 30-iteration warm-up + cosine, grad-clip 10, h+v flips; images kept native up to 320x240: 128 px
  shapes train at 128 px, 640x480 BCCD at 320x240). Shapes: batch 8, 12 epochs x 35 = 420 iterations, and a lighter
  head (64 RoIs/img, 128-d box head, 500/250 RPN proposals; ~2.3 min on one core, clean AP ~0.45); other datasets
  (larger images): batch 4, 12 x 17 = 204 iterations.
- `paper`: the papers' recipe (ResNet-50-FPN, ImageNet weights, stem + stage 1 frozen, frozen BN, 1333x800 or
  VOC 1000x600, flip 0.5, SGD 0.02 momentum 0.9 wd 1e-4 for batch 16, warm-up 500, 12 epochs, steps 8/11, clip 10).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from benchmark.errors import BenchError

PROFILES = ("cpu", "paper")
DATASET_KINDS = ("coco", "voc", "yolo", "shapes")
SECTIONS = ("profile", "model", "train", "method")

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
}

# train keys that may differ between runs of the same experiment: left out of cell ids and of the check that a
# resumed run continues the same experiment
RUNTIME_KEYS = {"train": ("device", "workers", "log_every", "amp", "cache_images", "checkpoint_every",
                          "checkpoint_minutes")}


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
    "paper": {
        "model": {
            **_MODEL_COMMON,
            "backbone": "resnet50",
            "widths": [32, 48, 96, 160],
            "pretrained": True,
            "fpn_channels": 256,
            "trainable_layers": 3,
            "anchor_sizes": [[32], [64], [128], [256], [512]],
            "roi_featmaps": ["0", "1", "2", "3"],
            "representation_size": 1024,
            "min_size": 800,
            "max_size": 1333,
            "rpn_pre_nms_top_n_train": 2000,
            "rpn_post_nms_top_n_train": 1000,
            "rpn_pre_nms_top_n_test": 1000,
            "rpn_post_nms_top_n_test": 1000,
            "box_batch_size_per_image": 512,
            "box_score_thresh": 0.05,
        },
        "train": {
            **_TRAIN_COMMON,
            "epochs": 12,
            "iters_per_epoch": None,
            "batch_size": 16,
            "base_batch_size": 16,
            "optimizer": "sgd",
            "lr": 0.02,
            "scheduler": "step",
            "steps": [8, 11],
            "warmup_iters": 500,
            "grad_clip": 10.0,
            "hflip": 0.5,
            "vflip": 0.0,
            "workers": 4,
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
    ("paper", "voc"): {"model": {"min_size": 600, "max_size": 1000}},
    ("cpu", "voc"): _CPU_REAL_IMAGES,
    ("cpu", "coco"): _CPU_REAL_IMAGES,
    ("cpu", "yolo"): _CPU_REAL_IMAGES,
}

_CHOICES = {
    ("model", "backbone"): ("tiny", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "mobilenet_v3_large"),
    ("train", "optimizer"): ("sgd", "adamw"),
    ("train", "scheduler"): ("step", "cosine", "constant"),
}
_POSITIVE_INT = {("model", k) for k in ("fpn_channels", "representation_size", "min_size", "max_size",
                                         "rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train",
                                         "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test",
                                         "box_batch_size_per_image", "box_detections_per_img")}
_POSITIVE_INT |= {("train", k) for k in ("epochs", "batch_size", "base_batch_size", "log_every", "checkpoint_every")}
_NONNEG_INT = {("train", k) for k in ("warmup_iters", "workers", "seed", "data_seed")} | {("model", "trainable_layers")}
_POSITIVE_FLOAT = {("train", "lr")}
_NONNEG_FLOAT = {("train", k) for k in ("weight_decay", "momentum", "checkpoint_minutes")}
_UNIT_FLOAT = {("train", k) for k in ("hflip", "vflip", "warmup_factor", "gamma")} | {
    ("model", k) for k in ("box_nms_thresh", "box_score_thresh")}
_BOOL = {("model", "pretrained"), ("model", "upscale")} | {("train", k) for k in ("amp", "cache_images",
                                                                                  "find_unused_parameters")}


def profile_defaults(profile: str, dataset_kind: str = "coco") -> dict:
    """`model` and `train` sections of a profile for a dataset kind (deep copies)."""
    if profile not in PROFILES:
        raise BenchError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    if dataset_kind not in DATASET_KINDS:
        raise BenchError(f"unknown dataset kind {dataset_kind!r} (known: {', '.join(DATASET_KINDS)})")
    out = copy.deepcopy(PROFILE_DEFAULTS[profile])
    for sec, vals in _KIND_DEFAULTS.get((profile, dataset_kind), {}).items():
        out[sec].update(copy.deepcopy(vals))
    return out


def dataset_kind(dataset) -> str:
    """Best guess of a loaded dataset's kind from its `source`/`name` (VOC changes the paper profile's size)."""
    text = f"{getattr(dataset, 'source', '')} {getattr(dataset, 'name', '')} {dataset.info.get('format', '')}".lower()
    if "shapes" in text:
        return "shapes"
    if "voc" in text:
        return "voc"
    if "yolo" in text:
        return "yolo"
    return "coco"


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
    """Profile defaults (+ the method's `profile_overrides`) + the method's `default_config` + user overrides,
    validated.

    `overrides` maps "section.key" (or {section: {key: value}}) to values; unknown keys are errors, never ignored.
    """
    if noise_level is not None and not (_is_number(noise_level) and noise_level >= 0):
        raise BenchError(f"noise level must be a non-negative number, got {noise_level!r}")
    base = profile_defaults(profile, dataset_kind)
    method_defaults = copy.deepcopy(method.default_config(profile, noise_level, dataset_kind) or {})
    profile_overrides = getattr(method, "profile_overrides", None)
    for sec, values in (profile_overrides(profile, noise_level, dataset_kind) if profile_overrides else {}).items():
        if sec not in ("model", "train"):
            raise BenchError(f"method {method.name!r} overrides unknown config section {sec!r}")
        for k, v in values.items():
            if k not in base[sec]:
                raise BenchError(f"method {method.name!r} sets unknown config key {sec}.{k}")
            base[sec][k] = copy.deepcopy(v)
    cfg = {
        "profile": {"name": profile, "dataset_kind": dataset_kind, "noise_level": noise_level},
        "model": base["model"],
        "train": base["train"],
        "method": method_defaults,
    }
    for (sec, key), value in _flatten_overrides(overrides).items():
        if sec == "profile":
            raise BenchError(f"profile.{key} cannot be overridden; choose --profile instead")
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
    return cfg


def is_device(value) -> bool:
    """`auto`, `cpu`, `cuda` or `cuda:N`: what `train.device` (and `bench predict --device`) may say."""
    return isinstance(value, str) and (value in ("auto", "cpu", "cuda")
                                       or (value.startswith("cuda:") and value[5:].isdigit()))


def scaled_lr(train_cfg: dict) -> float:
    """Linear-scaling rule: lr is given for `base_batch_size` images."""
    return float(train_cfg["lr"]) * train_cfg["batch_size"] / train_cfg["base_batch_size"]
