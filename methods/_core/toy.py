"""A tiny on-disk detection dataset for tests of the core and of method adapters (seconds to build and train on).

Each image is a flat background with 1-3 filled rectangles (class 1) or ellipses (class 2); with
`noise > 0` every annotation also carries the clean box in `true_bbox` and a shifted box in `bbox`, the form
`noise/` produces, so tests can check which boxes a method trains on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmark.datasets.core import DetectionDataset


def make_toy_dataset(root: str | Path, num_images: int = 8, size: tuple[int, int] = (64, 48), seed: int = 0,
                     noise: float = 0.0, category_ids: tuple[int, int] = (3, 7)) -> DetectionDataset:
    """Write `num_images` PNGs of `size` = (w, h) under `root` and return their dataset.

    Category ids are deliberately non-contiguous (default 3 and 7) so label mapping bugs show up."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    images, anns = [], []
    for i in range(num_images):
        img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 80, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            bw, bh = (float(v) for v in rng.uniform(0.2, 0.45, 2) * (w, h))
            x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
            kind = int(rng.integers(0, 2))
            colour = tuple(int(c) for c in rng.integers(150, 256, 3))
            shape = [round(x), round(y), round(x + bw) - 1, round(y + bh) - 1]
            (draw.rectangle if kind == 0 else draw.ellipse)(shape, fill=colour)
            clean = [float(round(x)), float(round(y)), float(round(x + bw) - round(x)), float(round(y + bh) - round(y))]
            ann = {"id": 1000 + len(anns), "image_id": 100 + i, "category_id": category_ids[kind], "bbox": clean,
                   "area": clean[2] * clean[3], "iscrowd": 0, "ignore": 0}
            if noise > 0:
                dx, dy = rng.uniform(-noise, noise, 2) * clean[2:]
                nx, ny = min(max(clean[0] + dx, 0.0), w - 2.0), min(max(clean[1] + dy, 0.0), h - 2.0)
                ann["true_bbox"] = clean
                ann["bbox"] = [nx, ny, min(clean[2], w - nx), min(clean[3], h - ny)]
                ann["area"] = ann["bbox"][2] * ann["bbox"][3]
            anns.append(ann)
        name = f"img_{i:03d}.png"
        img.save(root / name)
        images.append({"id": 100 + i, "file_name": name, "width": w, "height": h})
    cats = [{"id": category_ids[0], "name": "rectangle"}, {"id": category_ids[1], "name": "ellipse"}]
    return DetectionDataset(images, anns, cats, image_root=root, name="toy", source=str(root))
