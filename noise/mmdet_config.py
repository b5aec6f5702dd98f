"""An mmdet 3.x config that trains any mmdet detector on a noisy file from `bench noise make --emit mmdet-config`.

The noisy files are plain COCO json that mmdet 3.x's `CocoDataset` loads as they are (unique annotation ids, `area`,
`iscrowd`, image `width` / `height` / `file_name`); the extra `true_bbox` field is ignored by mmdet and read by
SSD-Det-style loaders. The config inherits a detector (`_base_`, Faster R-CNN R50-FPN 1x by default) and only
replaces the data: classes in the file's category order (mmdet numbers labels in that order), the noisy train file,
the clean test file for validation / test and COCO bbox evaluation. Paths are absolute, so the config runs from any
working directory. mmdet is not needed to write it.
"""

from __future__ import annotations

from pathlib import Path

from benchmark import __version__

DEFAULT_BASE = "mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"
TRAIN_IMAGES_VAR = "train_img_prefix"  # the config's training image folder (`bench noise show` reads it back)


def _head_override(base: str) -> str:
    low = base.lower()
    if "cascade" in low or "htc" in low:
        return ("# Cascade heads are a list of bbox heads: set num_classes=num_classes in each, e.g. by copying\n"
                "# model.roi_head.bbox_head from the base config.\n")
    if "rcnn" in low or "r-cnn" in low:
        return "model = dict(roi_head=dict(bbox_head=dict(num_classes=num_classes)))\n"
    return "model = dict(bbox_head=dict(num_classes=num_classes))\n"


def _dir(path: Path | None) -> str:
    return "" if path is None else str(Path(path).resolve()) + "/"


def mmdet_config(train_file: str | Path, classes: list[str], train_images: Path | None,
                 test_file: str | Path | None = None, test_images: Path | None = None,
                 base: str = DEFAULT_BASE, manifest: dict | None = None) -> str:
    """The config's text. `classes`: category names in the file's category order."""
    m = manifest or {}
    about = (f"model={m.get('model')} level={m.get('level')} seed={m.get('seed')} rng={m.get('rng')}"
             if m else "")
    lines = [
        f"# mmdet 3.x config written by `bench noise make --emit mmdet-config` (noisybox-bench {__version__}).",
        f"# Noisy training boxes: {about}" if about else "# Noisy training boxes.",
        "# Train: python tools/train.py THIS_FILE   (change _base_ to train another detector; the data stays).",
        "# The training file keeps the clean box in `true_bbox`: mmdet ignores it, SSD-Det-style loaders read it.",
        f"_base_ = [{base!r}]",
        "",
        f"classes = {tuple(classes)!r}",
        f"num_classes = {len(classes)}",
        "metainfo = dict(classes=classes)",
        f"train_ann_file = {str(Path(train_file).resolve())!r}",
        f"{TRAIN_IMAGES_VAR} = {_dir(train_images)!r}",
        "train_dataloader = dict(dataset=dict(",
        "    type='CocoDataset', data_root='', metainfo=metainfo, ann_file=train_ann_file,",
        f"    data_prefix=dict(img={TRAIN_IMAGES_VAR})))",
    ]
    if test_file is not None:
        lines += [
            f"test_ann_file = {str(Path(test_file).resolve())!r}",
            f"test_img_prefix = {_dir(test_images)!r}",
            "val_dataloader = dict(dataset=dict(",
            "    type='CocoDataset', data_root='', metainfo=metainfo, ann_file=test_ann_file,",
            "    data_prefix=dict(img=test_img_prefix), test_mode=True))",
            "test_dataloader = val_dataloader",
            "val_evaluator = dict(type='CocoMetric', ann_file=test_ann_file, metric='bbox')",
            "test_evaluator = val_evaluator",
        ]
    else:
        lines += ["# No clean test split was written: validation is off.",
                  "val_dataloader = None", "val_cfg = None", "val_evaluator = None",
                  "test_dataloader = None", "test_cfg = None", "test_evaluator = None"]
    lines += ["", "# The class count of the detector's head (two-stage: roi_head.bbox_head; one-stage: bbox_head):",
              _head_override(base).rstrip("\n")]
    return "\n".join(lines) + "\n"
