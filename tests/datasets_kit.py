"""Small datasets written by tests: a COCO file with images (one without boxes, non-contiguous ids, a crowd box)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
from PIL import Image


def write_image(path: Path, w: int, h: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)


def coco_dict() -> dict:
    """Three images (one without boxes), non-contiguous category ids, a crowd box, float boxes."""
    return {
        "info": {"description": "fixture"},
        "images": [{"id": 10, "file_name": "a.png", "width": 60, "height": 40},
                   {"id": 11, "file_name": "sub/b.jpg", "width": 50, "height": 50},
                   {"id": 12, "file_name": "c.png", "width": 30, "height": 20}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 3, "bbox": [5.25, 4.5, 20.5, 10.0]},
            {"id": 2, "image_id": 10, "category_id": 7, "bbox": [30, 10, 25, 25], "area": 500.0},
            {"id": 5, "image_id": 11, "category_id": 7, "bbox": [0, 0, 50, 50], "iscrowd": 1},
            {"id": 6, "image_id": 11, "category_id": 3, "bbox": [10.0, 12.0, 8.0, 9.5]},
        ],
    }


def make_coco(tmp: Path, data: dict | None = None, name: str = "train.json") -> Path:
    data = coco_dict() if data is None else data
    for i, im in enumerate(data["images"]):
        write_image(tmp / "images" / im["file_name"], im["width"], im["height"], seed=i)
    p = tmp / name
    p.write_bytes(orjson.dumps(data))
    return p
