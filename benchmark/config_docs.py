"""One line of meaning per `model.*` / `train.*` key, and the config-key reference built from the live defaults.

The reference (docs site, `bench config keys`) is generated from `benchmark.config`, so a default or a range can
never disagree with the code; a key without a line here fails the test suite, so a new key cannot go undocumented.
"""

from __future__ import annotations

import json

from benchmark import config as C

MEANING: dict[tuple[str, str], str] = {
    ("model", "backbone"): "backbone network: `tiny` (4-stage conv, CPU) or a torchvision ResNet",
    ("model", "widths"): "channel widths of the `tiny` backbone's four stages",
    ("model", "pretrained"): "start the backbone from ImageNet (or `model.weights`) weights; false trains from scratch",
    ("model", "weights"): "path of a backbone state_dict to start from (offline machines)",
    ("model", "trainable_layers"): "backbone stages trained (0-5, from the top); the rest are frozen",
    ("model", "fpn_channels"): "channels of every FPN level",
    ("model", "anchor_sizes"): "anchor sizes in pixels, one list per FPN level (+ the pooled level)",
    ("model", "aspect_ratios"): "anchor aspect ratios (height / width), the same at every level",
    ("model", "roi_featmaps"): "FPN maps the RoI heads pool from",
    ("model", "representation_size"): "width of the box head's two fully connected layers",
    ("model", "min_size"): "the shorter image side is resized to this (pixels)",
    ("model", "max_size"): "cap on the longer image side after resizing (pixels)",
    ("model", "upscale"): "resize images smaller than min_size up (false keeps them native)",
    ("model", "rpn_pre_nms_top_n_train"): "RPN proposals kept per level before NMS, training",
    ("model", "rpn_post_nms_top_n_train"): "RPN proposals kept after NMS, training",
    ("model", "rpn_pre_nms_top_n_test"): "RPN proposals kept per level before NMS, inference",
    ("model", "rpn_post_nms_top_n_test"): "RPN proposals kept after NMS, inference",
    ("model", "box_batch_size_per_image"): "RoIs sampled per image for the box head's losses",
    ("model", "box_nms_thresh"): "IoU threshold of the per-class NMS on detections",
    ("model", "box_score_thresh"): "detections scored below this are dropped",
    ("model", "box_detections_per_img"): "most detections kept per image",
    ("train", "epochs"): "training epochs (method phases and lr steps are in epochs)",
    ("train", "iters_per_epoch"): "fixed iterations per epoch (null: one pass over the images)",
    ("train", "batch_size"): "images per iteration, over all processes",
    ("train", "base_batch_size"): "the batch train.lr is given for (linear scaling to train.batch_size)",
    ("train", "optimizer"): "sgd or adamw",
    ("train", "lr"): "learning rate at train.base_batch_size images",
    ("train", "momentum"): "SGD momentum",
    ("train", "weight_decay"): "weight decay",
    ("train", "scheduler"): "lr schedule after warm-up: step, cosine or constant",
    ("train", "steps"): "epochs after which the step schedule multiplies the lr by train.gamma",
    ("train", "gamma"): "lr factor at each step",
    ("train", "warmup_iters"): "linear warm-up iterations",
    ("train", "warmup_factor"): "lr factor at the first warm-up iteration",
    ("train", "grad_clip"): "gradient-norm clip (null or 0: none)",
    ("train", "hflip"): "probability of a horizontal flip",
    ("train", "vflip"): "probability of a vertical flip",
    ("train", "seed"): "model and sampler seed",
    ("train", "data_seed"): "image order and flip seed",
    ("train", "amp"): "CUDA mixed precision (ignored on CPU); a runtime key",
    ("train", "device"): "auto, cpu, cuda or cuda:N; a runtime key",
    ("train", "workers"): "data-loader worker processes; a runtime key",
    ("train", "cache_images"): "keep decoded images in memory; a runtime key",
    ("train", "log_every"): "iterations between train.log lines and scalars.csv rows; a runtime key",
    ("train", "loggers"): "where scalars go: csv (always) plus tensorboard, wandb; a runtime key",
    ("train", "find_unused_parameters"): "DDP's find_unused_parameters (methods with conditional heads)",
    ("train", "checkpoint_every"): "epochs between rolling checkpoints; a runtime key",
    ("train", "checkpoint_minutes"): "minutes between mid-epoch checkpoints (0: epoch ends only); a runtime key",
}


def value_range(section: str, key: str) -> str:
    """The range `benchmark.config.validate` enforces, in words."""
    sk = (section, key)
    if sk in C._CHOICES:
        return " | ".join(C._CHOICES[sk])
    for rule, words in ((C._POSITIVE_INT, "integer > 0"), (C._NONNEG_INT, "integer >= 0"),
                        (C._POSITIVE_FLOAT, "number > 0"), (C._NONNEG_FLOAT, "number >= 0"),
                        (C._UNIT_FLOAT, "number in [0, 1]"), (C._BOOL, "true | false")):
        if sk in rule:
            return words
    return ""


def _show(value) -> str:
    return "`" + json.dumps(value) + "`"


def key_rows(kinds=("shapes", "coco", "voc")) -> list[dict]:
    """One row per model/train key: its default in every profile and dataset kind, range and meaning."""
    defaults = {(p, k): C.profile_defaults(p, k) for p in C.PROFILES for k in kinds}
    keys = sorted({(s, key) for d in defaults.values() for s in ("model", "train") for key in d[s]})
    rows = []
    for section, key in keys:
        per = {f"{p}/{k}": d[section].get(key) for (p, k), d in defaults.items()}
        rows.append({"key": f"{section}.{key}", "defaults": per, "range": value_range(section, key),
                     "meaning": MEANING.get((section, key), "")})
    return rows


def markdown() -> str:
    """The config-key reference page."""
    rows = key_rows()
    columns = list(rows[0]["defaults"])
    out = ["# Config keys", "",
           "Every `model.*` and `train.*` key, generated from the code: the default of each profile on each dataset "
           "kind, the range `bench` checks, and what it means. Set any of them with `--set KEY=VALUE` (or "
           "`--config FILE`); runtime keys change how a run executes, not what it computes, so they are left out "
           "of cell ids. Method keys (`method.*`) are listed per method below.", "",
           "| key | " + " | ".join(columns) + " | range | meaning |",
           "|---|" + "---|" * len(columns) + "---|---|"]
    for r in rows:
        cells = [_show(r["defaults"][c]) for c in columns]
        out.append(f"| `{r['key']}` | " + " | ".join(cells) + f" | {r['range']} | {r['meaning']} |")
    return "\n".join(out) + "\n"
