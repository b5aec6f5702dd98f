"""Tiny datasets of every format, written by hand (not by the suite's writers), under folder names a user would
give them, and under names that say another format: the dataset-kind tests read them."""

from __future__ import annotations

from pathlib import Path

import orjson
from datasets_kit import write_image

CLASSES = ["cell", "dot"]


def _coco(first_image: int, n: int, info: dict | None = None) -> dict:
    images = [{"id": first_image + i, "file_name": f"{first_image + i}.png", "width": 40, "height": 30}
              for i in range(n)]
    anns = [{"id": 100 + im["id"], "image_id": im["id"], "category_id": 1 + im["id"] % 2,
             "bbox": [2.0 + im["id"] % 5, 3.0, 10.0, 8.0]} for im in images]
    out = {"images": images, "annotations": anns, "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]}
    return {"info": info, **out} if info else out


def coco_folder(root: Path, info: dict | None = None) -> Path:
    """`root/train.json` + `root/val.json` (3 + 2 images; image files are not needed by the COCO reader)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.json").write_bytes(orjson.dumps(_coco(1, 3, info)))
    (root / "val.json").write_bytes(orjson.dumps(_coco(11, 2, info)))
    return root


def _voc_xml(stem: str, objects: list[tuple[str, list[int]]]) -> str:
    objs = "".join(f"<object><name>{c}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for c, b in objects)
    return (f"<annotation><filename>{stem}.jpg</filename><size><width>40</width><height>30</height><depth>3</depth>"
            f"</size>{objs}</annotation>")


def voc_root(root: Path, splits: dict[str, list[str]] | None = None) -> Path:
    """A VOC year folder: Annotations/, JPEGImages/, ImageSets/Main/{trainval,test}.txt."""
    splits = splits or {"trainval": ["000001", "000002", "000003"], "test": ["000004", "000005"]}
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for split, stems in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
        for k, stem in enumerate(stems):
            (root / "Annotations" / f"{stem}.xml").write_text(
                _voc_xml(stem, [(CLASSES[k % 2], [3 + k, 4, 20, 18]), (CLASSES[(k + 1) % 2], [10, 10, 30, 25])]))
            write_image(root / "JPEGImages" / f"{stem}.jpg", 40, 30, seed=k)
    return root


def voc_devkit(root: Path) -> Path:
    """A `VOCdevkit/` with 2007 (trainval + test) and 2012 (train, val, trainval): the 07+12 union."""
    voc_root(root / "VOC2007")
    voc_root(root / "VOC2012", {"train": ["2012_000001", "2012_000002"], "val": ["2012_000003"],
                                "trainval": ["2012_000001", "2012_000002", "2012_000003"]})
    return root


def yolo_folder(root: Path) -> Path:
    """`images/{train,val}/` + `labels/{train,val}/` and a data.yaml naming the classes."""
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            write_image(root / "images" / split / f"{split}{i}.png", 40, 30, seed=i)
            label = root / "labels" / split / f"{split}{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(f"{i % 2} 0.5 0.5 0.25 0.3\n{(i + 1) % 2} 0.3 0.4 0.2 0.2\n")
    (root / "data.yaml").write_text("names: [cell, dot]\n")
    return root
