"""A hand-built results store for report and inspector tests: 3 methods x 2 noise levels x seeds on a tiny COCO
dataset with image files, known AP means and stds, noisy training files, refined boxes and predictions."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.io import write_json
from benchmark.runner.store import mark_done
from reports import ReportConfig

CATEGORIES = [{"id": 1, "name": "disc"}, {"id": 2, "name": "square"}]
# AP per (method, level) for seeds 0, 1, 2: known means and sample stds
AP = {
    ("faster_rcnn", 0.1): [0.40, 0.42, 0.44],  # mean 42.0, std 2.0
    ("faster_rcnn", 0.3): [0.20, 0.22, 0.27],  # mean 23.0, std 3.6056
    ("oa_mil", 0.1): [0.45, 0.45, 0.48],  # mean 46.0, std 1.7321
    ("oa_mil", 0.3): [0.30, 0.34, 0.32],  # mean 32.0, std 2.0
    ("clean", 0.1): [0.50, 0.52, 0.54],  # oracle: mean 52.0 over all six cells
    ("clean", 0.3): [0.50, 0.52, 0.54],
}


def _images(root: Path, n: int, start: int, rng) -> list[dict]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        arr = (rng.random((96, 128, 3)) * 60 + 80).astype(np.uint8)
        name = f"img{start + i:03d}.png"
        Image.fromarray(arr).save(root / name)
        out.append({"id": start + i, "file_name": name, "width": 128, "height": 96})
    return out


def _objects(images, rng, first_id=1) -> list[dict]:
    anns, aid = [], first_id
    for im in images:
        # two touching objects (drift / group material) and one isolated one
        for x, y, w, h in ((10, 20, 30, 30), (41, 22, 28, 28), (80, 50, 36, 30)):
            j = rng.uniform(-2, 2, 4)
            box = [float(x + j[0]), float(y + j[1]), float(w + j[2]), float(h + j[3])]
            anns.append({"id": aid, "image_id": im["id"], "category_id": 1 + aid % 2, "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
            aid += 1
    return anns


def _noisy(anns, level, rng) -> list[dict]:
    out = []
    for a in anns:
        x, y, w, h = a["bbox"]
        dx, dy, sw, sh = rng.uniform(-level, level, 4)
        out.append(dict(a, bbox=[x + w * dx, y + h * dy, w * (1 + sw), h * (1 + sh)], true_bbox=list(a["bbox"])))
    return out


def _predictions(test_anns, rng, quality: float) -> list[dict]:
    dets = []
    for a in test_anns:
        x, y, w, h = a["bbox"]
        j = rng.normal(0, 1 - quality, 4) * 0.3
        dets.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.uniform(0.5, 1)),
                     "bbox": [x + w * j[0], y + h * j[1], w * (1 + j[2]), h * (1 + j[3])]})
        dets.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.uniform(0.3, 0.6)),
                     "bbox": [x + w * 0.6, y, w, h]})  # poorly localised duplicate
    for im_id in sorted({a["image_id"] for a in test_anns}):
        dets.append({"image_id": im_id, "category_id": 2, "score": 0.35, "bbox": [2.0, 70.0, 12.0, 12.0]})  # background
    return dets


def _config(method: str, level: float, seed: int) -> dict:
    """A cell config as the runner writes it, named by its real cell id (the store's check hashes it)."""
    from benchmark.runner.cells import cell_id

    config = {"schema": 1, "method": method, "method_config": {}, "profile": "cpu",
              "dataset": {"name": "toy", "kind": "coco"},
              "noise": {"model": "oamil", "level": level, "params": {}, "seed": 0, "rng": "numpy"}, "seed": seed}
    config["cell_id"] = cell_id(config)
    return config


def cid(method: str, level: float, seed: int) -> str:
    """The cell id `make_store` gives (method, level, seed)."""
    return _config(method, level, seed)["cell_id"]


def make_store(tmp_path: Path, with_images: bool = True, seeds: int = 3) -> Path:
    """A results store with 3 methods x 2 noise levels x `seeds` seeds on a tiny COCO dataset with image files."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    train_imgs = _images(data / "images", 4, 0, rng)
    test_imgs = _images(data / "images", 3, 100, rng)
    train_anns = _objects(train_imgs, rng)
    test_anns = _objects(test_imgs, rng, first_id=1000)
    write_json(data / "train.json", {"images": train_imgs, "annotations": train_anns, "categories": CATEGORIES})
    write_json(data / "test.json", {"images": test_imgs, "annotations": test_anns, "categories": CATEGORIES})
    if not with_images:
        shutil.rmtree(data / "images")
    spec = f"coco:{data / 'train.json'},{data / 'test.json'}"
    store = tmp_path / "store"
    for (method, level), aps in AP.items():
        noisy = _noisy(train_anns, level, np.random.default_rng(int(level * 100)))
        for seed, ap in enumerate(aps[:seeds]):
            config = _config(method, level, seed)
            cell = store / "cells" / config["cell_id"]
            config["locator"] = {"dataset_spec": spec}
            write_json(cell / "config.json", config)
            write_json(cell / "env.json", {"python": "3.11", "packages": {"torch": "2.x"}, "git_commit": "abc123",
                                           "device": "cpu"})
            write_json(cell / "noise" / "train.json", {"images": train_imgs, "annotations": noisy,
                                                       "categories": CATEGORIES})
            write_json(cell / "noise" / "manifest.json", {"model": "oamil", "level": level, "seed": 0,
                                                          "changed": len(noisy), "records": [1, 2, 3]})
            write_json(cell / "metrics.json", {
                "coco": {"AP": ap, "AP50": ap + 0.3, "AP75": ap - 0.1, "APs": ap - 0.2, "APm": ap, "APl": ap + 0.1,
                         "AR100": ap + 0.2},
                "voc": {"AP50": ap + 0.32}})
            prng = np.random.default_rng(seed)
            write_json(cell / "predictions.json", _predictions(test_anns, prng, quality=1 - level))
            if method == "oa_mil":  # refined: half-way back to the clean box
                refined = [{"id": a["id"], "image_id": a["image_id"], "category_id": a["category_id"],
                            "bbox": list((np.array(a["bbox"]) + np.array(a["true_bbox"])) / 2)} for a in noisy]
                refined[0]["bbox"] = [5.0, 15.0, 70.0, 40.0]  # a group box over the two touching objects
                write_json(cell / "refined_boxes.json", refined)
            mark_done(cell)
    # an unfinished cell must be ignored
    write_json(store / "cells" / "unfinished" / "config.json", {"method": "faster_rcnn"})
    return store


# a cheaper report for the tests that check plumbing rather than content
FAST = ReportConfig(gallery_per_mode=2, tide_styles=("coco",), tide_sizes=("all",), sensitivity=(("bad_iou", (0.5,)),))


def write_cell(store: Path, method: str, level: float, seed: int, coco: dict, *, dataset: str = "toy",
               kind: str = "coco", profile: str = "cpu", train: dict | None = None, timing: dict | None = None,
               noisy: list[dict] | None = None, refined: list[dict] | None = None,
               method_config: dict | None = None) -> str:
    """One done cell with the given COCO metrics (fractions), training metrics and timings, and (optionally) its
    noisy training annotations (`bbox` noisy, `true_bbox` clean) and refined boxes; returns its cell id. For tests
    that compute from a store what they also compute by hand (the leaderboard, the noise-effect table)."""
    from benchmark.runner.cells import cell_id

    noise = {"model": "none", "level": 0.0, "params": {}, "seed": 0, "rng": "numpy"} if level == 0 else \
        {"model": "uniform", "level": level, "params": {}, "seed": 0, "rng": "numpy"}
    config = {"schema": 1, "method": method, "method_config": method_config or {}, "profile": profile,
              "dataset": {"name": dataset, "kind": kind}, "noise": noise, "seed": seed}
    config["cell_id"] = cid = cell_id(config)
    config["locator"] = {"dataset_spec": dataset}
    cell = Path(store) / "cells" / cid
    write_json(cell / "config.json", config)
    write_json(cell / "env.json", {"device": "cpu"})
    write_json(cell / "metrics.json", {"coco": coco, "voc": {}, "train": train or {}, "timing": timing or {}})
    write_json(cell / "predictions.json", [])
    if noisy is not None:
        images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100}
                  for i in sorted({a["image_id"] for a in noisy})]
        write_json(cell / "noise" / "train.json", {"images": images, "annotations": noisy, "categories": CATEGORIES})
    if refined is not None:
        write_json(cell / "refined_boxes.json", refined)
    mark_done(cell)
    return cid
