"""The dataset kind (which picks the recipe: image size, SSD-Det's bag, ...) is the one the format that read the data
declares, never a guess from the path: a COCO file under `voc2007_stuff/` is coco, a VOC folder named `coco_like/`
is voc. Cell ids of the datasets that already had one stay as they were (pinned below, computed before the format
registry existed)."""

from __future__ import annotations

from pathlib import Path

import formats_kit as fk
import orjson
import pytest

from benchmark.config import dataset_kind
from benchmark.datasets import load

# spec -> (kind, dataset name, cell id of ssd_det at 20 % uniform noise, of faster_rcnn at 40 %), cpu profile from
# scratch, seed 0: computed with the path-guessing `dataset_kind` before the format registry
PINNED = {
    "shapes-mini": ("shapes", "shapes-mini", "fcfd26375651ca41", "98d0f798106fb4dc"),
    "shapes:train=8,val=4,size=64,seed=11": ("shapes", "shapes:train=8,val=4,size=64,seed=11", "f8a4645e57adb0f2",
                                             "07946ba282343697"),
    "bccd": ("voc", "bccd", "c93a6631bfce212e", "a7f87ccc8a0beac8"),
    "voc2007": ("voc", "voc2007", "6743e47bf8b7f536", "61d96d035516c315"),
    "voc2012": ("voc", "voc2012", "6c0296c3744743ce", "fb627195f3ad8d20"),
    "voc0712": ("voc", "voc0712", "1e12c2131cad379b", "2a8eff7e3198d508"),
    "coco2017": ("coco", "coco2017", "0106de9a5a70ea99", "ee057e7a91b38b59"),
    "mycoco": ("coco", "mycoco", "8c336236737862b7", "82a1eb555bf66420"),
    "mycoco/train.json": ("coco", "mycoco", "8c336236737862b7", "82a1eb555bf66420"),
    "coco:mycoco": ("coco", "mycoco", "8c336236737862b7", "82a1eb555bf66420"),
    # COCO files `bench data convert` wrote from VOC / YOLO data: their info records the source format
    "bccd_as_coco": ("voc", "bccd_as_coco", "75c46f1de1c4db9c", "975a1691f20267f4"),
    "yolo_as_coco": ("yolo", "yolo_as_coco", "75eea7b4b994b3da", "f1f22a517b5b7f79"),
    "VOC2007": ("voc", "voc2007", "6743e47bf8b7f536", "61d96d035516c315"),
    "blood": ("voc", "blood", "897dce93cd1f1a8e", "17a5f8c96fe5c7c1"),
    "VOCdevkit": ("voc", "voc0712", "1e12c2131cad379b", "2a8eff7e3198d508"),
    "cells": ("yolo", "cells", "ca43ceae11a03dfc", "c4e134c1cfd7cac5"),
    "cells/data.yaml": ("yolo", "cells", "ca43ceae11a03dfc", "c4e134c1cfd7cac5"),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The datasets of PINNED (and the misleadingly named ones) under one folder; a prepared data root at data/."""
    d = tmp_path_factory.mktemp("kinds")
    fk.coco_folder(d / "mycoco")
    fk.coco_folder(d / "bccd_as_coco", info={"format": "voc"})
    fk.coco_folder(d / "yolo_as_coco", info={"format": "yolo"})
    fk.voc_root(d / "VOC2007")
    fk.voc_root(d / "blood")
    fk.voc_devkit(d / "VOCdevkit")
    fk.yolo_folder(d / "cells")
    fk.coco_folder(d / "voc2007_stuff")
    fk.voc_root(d / "coco_like")
    fk.yolo_folder(d / "shapes_yolo")
    root = d / "data"
    fk.voc_devkit(root / "VOCdevkit")
    ann = fk.coco_folder(root / "coco" / "annotations")
    (ann / "train.json").rename(ann / "instances_train2017.json")
    (ann / "val.json").rename(ann / "instances_val2017.json")
    parts = {"voc2007-trainval": "VOCdevkit/VOC2007", "voc2007-test": "VOCdevkit/VOC2007",
             "voc2012-trainval": "VOCdevkit/VOC2012", "coco2017-train": "coco", "coco2017-val": "coco"}
    (root / "prepared.json").write_bytes(orjson.dumps(
        {"schema": 1, "parts": {p: {"location": str(root / where)} for p, where in parts.items()}}))
    return d


def _spec(key: str, d: Path) -> str:
    if key == "coco:mycoco":
        return f"coco:{d / 'mycoco' / 'train.json'},{d / 'mycoco' / 'val.json'}"
    return str(d / key) if (d / key.split("/")[0]).exists() else key


@pytest.mark.parametrize("key", PINNED)
def test_existing_cell_ids_are_unchanged(key, data, monkeypatch, request):
    from benchmark.runner.cells import DatasetCache, resolve
    from benchmark.runner.grid import CellSpec
    from noise import NoiseSpec

    if key == "bccd":  # the conftest fixture skips, saying why, where BCCD is not found
        monkeypatch.setenv("NOISYBOX_BCCD", str(request.getfixturevalue("bccd_root")))
    monkeypatch.setenv("NOISYBOX_DATA", str(data / "data"))
    cache = DatasetCache(progress=False)
    spec = _spec(key, data)
    facts = cache.facts(spec)
    cells = [CellSpec(m, spec, NoiseSpec.parse("uniform", levels=[level]).at(level), 0, profile="cpu",
                      overrides={"model.pretrained": False}) for m, level in (("ssd_det", 0.2), ("faster_rcnn", 0.4))]
    ids = [resolve(c, cache, gpu=False).config["cell_id"] for c in cells]
    assert (facts["kind"], facts["name"], *ids) == PINNED[key]


@pytest.mark.parametrize("folder,kind", [("voc2007_stuff", "coco"), ("voc2007_stuff/train.json", "coco"),
                                         ("coco_like", "voc"), ("shapes_yolo", "yolo")])
def test_the_kind_comes_from_the_format_not_the_path(folder, kind, data):
    splits = load(data / folder)
    assert {k: dataset_kind(ds) for k, ds in splits.items()} == {"train": kind, "test": kind}


def test_noisy_and_recovered_sets_keep_the_kind():
    """The noise step keeps the recipe kind of the set it perturbs (shapes stays shapes, not the coco fallback)."""
    from benchmark.config import dataset_kind
    from benchmark.datasets import load
    from noise import make_noisy
    from noise.make import recover_clean

    train = load("shapes-mini")["train"]
    assert dataset_kind(train) == "shapes"
    noisy = make_noisy(train, "uniform", 0.4, seed=0)
    assert dataset_kind(noisy.dataset) == "shapes"
    assert dataset_kind(recover_clean(noisy.dataset, noisy.manifest)) == "shapes"
