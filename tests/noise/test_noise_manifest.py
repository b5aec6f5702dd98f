"""Noisy files and manifests: seed stability (golden sha256), byte identity, the clean set recoverable from noisy file
+ manifest, counts and statistics, files mmdet 3.x's CocoDataset loads, and the generated mmdet config."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from benchmark.datasets import load_coco
from benchmark.datasets.core import DetectionDataset
from benchmark.errors import BenchError
from benchmark.io import read_json, sha256_file
from noise import (
    compose,
    iter_noisy,
    make_noisy,
    make_noisy_levels,
    noise_stats,
    recover_clean,
    write_levels,
    write_noisy,
)
from noise.mmdet_config import mmdet_config

CATS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 5, "name": "bird"}]


def small(seed=11, n_images=12, per_image=4) -> DetectionDataset:
    """Integer-seeded, fully deterministic, with crowd boxes, a segmentation, COCO mask areas and an empty image."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "file_name": f"img{i}.jpg", "width": 320, "height": 240} for i in range(n_images)]
    anns = []
    for k in range(n_images * per_image):
        w, h = int(rng.integers(4, 150)), int(rng.integers(4, 120))
        x, y = int(rng.integers(0, 320 - w)), int(rng.integers(0, 240 - h))
        anns.append({"id": 100 + k, "image_id": 1 + k % (n_images - 1), "category_id": CATS[k % 3]["id"],
                     "bbox": [x + 0.5, y + 0.25, float(w), float(h)], "area": float(w * h) * 0.7,
                     "iscrowd": int(k % 13 == 0), "segmentation": [[x, y, x + w, y, x + w, y + h]]})
    return DetectionDataset.from_coco({"images": images, "annotations": anns, "categories": CATS,
                                       "info": {"description": "golden"}}, name="small")


# Seed stability: these change only if the protocol, the rounding or the file layout changes (then say so in the
# noise README). Last change: annotations keep the source's key order instead of sorted keys (same content).
GOLDEN = {
    ("numpy", 0.4): "249d09481f049d81e1c7d1fdce6bcfa31899afedf2282c10d044929f0425668d",
    ("oamil-legacy", 0.4): "1925981fed70ae707a74d1da365384bf9b9f45e22173e5f07bfac5f647c7cac0",
}


@pytest.mark.parametrize("mode,level", sorted(GOLDEN))
def test_golden_sha256_of_a_small_generated_file(tmp_path, mode, level):
    result = make_noisy(small(), "uniform", level, rng=mode)
    paths = write_noisy(result, tmp_path)
    assert sha256_file(paths["annotations"]) == result.manifest["output"]["sha256"] == GOLDEN[(mode, level)]


def test_same_inputs_give_byte_identical_files(tmp_path):
    ds = small()
    a = make_noisy(ds, "una", 0.3, seed=4)
    b = make_noisy(copy.deepcopy(ds), "una", 0.3, seed=4)
    c = make_noisy_levels(ds, "una", [0.1, 0.3], seed=4)[1]
    assert a.payload == b.payload == c.payload
    pa, pb = write_noisy(a, tmp_path / "a"), write_noisy(b, tmp_path / "b")
    assert pa["manifest"].read_bytes() == pb["manifest"].read_bytes()
    assert make_noisy(ds, "una", 0.3, seed=5).payload != a.payload
    given = make_noisy(ds, "una", 0.3, seed=4, source_sha256=ds.fingerprint())  # the runner passes it
    assert given.payload == a.payload and given.manifest == a.manifest


@pytest.mark.parametrize("model,rng", [("una", "numpy"), ("uniform", "oamil-legacy"), ("class_flip", "numpy"),
                                       ("bogus", "numpy")])
def test_each_level_of_a_sweep_is_the_level_made_alone_and_the_source_is_untouched(model, rng):
    """Levels share one output template (each sets its changes, rows it does not change get their clean values
    back): no level may see another's changes. Level 0 after 0.1 changes nothing, so every row must be put back."""
    ds = small()
    before = copy.deepcopy(ds.annotations)
    levels = [0.3, 0.1, 0.0, 0.4]
    swept = make_noisy_levels(ds, model, levels, seed=2, rng=rng)
    for level, r in zip(levels, swept):
        alone = make_noisy(small(), model, level, seed=2, rng=rng)
        assert r.payload == alone.payload and r.manifest == alone.manifest, level
        assert r.dataset.annotations == read_json_bytes(r.payload)["annotations"]
    assert ds.annotations == before


def test_write_levels_writes_each_level_in_order_as_write_noisy_does(tmp_path):
    """The sweep writer overlaps each write with making the next level: same files, in order, nothing lost."""
    ds = small()
    levels = [0.1, 0.2, 0.3, 0.4]
    seen = []
    for result, paths in write_levels(iter_noisy(ds, "uniform", levels, seed=3),
                                      lambda r: tmp_path / f"r{r.manifest['level']:g}"):
        assert paths["annotations"].read_bytes() == result.payload  # on disk when yielded
        seen.append(result.manifest["level"])
        alone = write_noisy(make_noisy(ds, "uniform", result.manifest["level"], seed=3), tmp_path / "alone")
        assert paths["annotations"].read_bytes() == alone["annotations"].read_bytes()
        assert paths["manifest"].read_bytes() == alone["manifest"].read_bytes()
    assert seen == levels


def test_write_levels_reports_a_failed_write(tmp_path):
    (tmp_path / "r0.2").write_text("a file where the level's folder should go")
    made = iter_noisy(small(), "uniform", [0.1, 0.2, 0.3])
    written = write_levels(made, lambda r: tmp_path / f"r{r.manifest['level']:g}")
    with pytest.raises(BenchError, match="r0.2"):
        list(written)
    assert (tmp_path / "r0.1" / "train.json").is_file()


def read_json_bytes(payload: bytes):
    import orjson

    return orjson.loads(payload)


def test_manifest_describes_the_file(tmp_path):
    ds = small()
    r = make_noisy(ds, compose([("uniform", None), ("missing", 0.2), ("class_flip", 0.1), ("bogus", 0.1)]), 0.3,
                   seed=1)
    paths = write_noisy(r, tmp_path)
    m = read_json(paths["manifest"])
    assert m == r.manifest
    assert m["source"] == {"name": "small", "sha256": ds.fingerprint(), "sha256_of": "annotations", "images": 12,
                           "annotations": 48}
    assert m["output"]["sha256"] == sha256_file(paths["annotations"])
    assert m["seed"] == 1 and m["rng"] == "numpy" and m["level"] == 0.3
    data = read_json(paths["annotations"])
    anns = data["annotations"]
    c = m["counts"]
    crowd = sum(a["iscrowd"] for a in ds.annotations)
    assert c["untouched_ignored"] == crowd
    assert c["removed"] == len(m["removed"]) == int(0.2 * (48 - crowd))
    assert c["added"] == len(m["added_ids"]) == sum(a["true_bbox"] is None for a in anns)
    assert len(anns) == 48 - c["removed"] + c["added"] == m["output"]["annotations"]
    assert c["perturbed"] == sum(a["true_bbox"] is not None and a["bbox"] != a["true_bbox"] for a in anns)
    assert c["class_changed"] == len(m["class_changes"]) > 0
    iou = m["realised_iou"]
    assert iou["all"]["n"] == iou["small"]["n"] + iou["medium"]["n"] + iou["large"]["n"] == 48 - crowd - c["removed"]
    assert all("segmentation" not in a for a in anns)  # a polygon would give the clean box away
    assert data["info"]["description"] == "golden" and data["info"]["noisybox"]["model"] == m["model"]
    for a in anns:  # areas follow the noisy boxes
        if a["true_bbox"] is not None and a["bbox"] != a["true_bbox"]:
            assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3], abs=1e-3)


@pytest.mark.parametrize("model,level,params", [
    ("uniform", 0.4, {}), ("una", 0.4, {}), ("missing", 0.5, {}), ("bogus", 0.3, {}),
    ("class_flip", 0.7, {"matrix": {"cat": {"dog": 1}}}),
])
def test_clean_set_is_recoverable_from_file_and_manifest(tmp_path, model, level, params):
    ds = small()
    r = make_noisy(ds, model, level, seed=3, **params)
    paths = write_noisy(r, tmp_path)
    noisy = DetectionDataset.from_coco(read_json(paths["annotations"]))
    back = recover_clean(noisy, read_json(paths["manifest"]))
    expected = [{k: v for k, v in a.items() if k != "segmentation"} for a in ds.annotations]
    assert back.annotations == expected
    assert back.info == ds.info and back.images == ds.images
    assert noise_stats(DetectionDataset.from_coco(read_json(paths["annotations"])))["bogus"] == \
        r.manifest["counts"]["added"]


def test_a_noisy_file_is_not_perturbed_again(tmp_path):
    # its noisy boxes would have become `true_bbox`: the clean set lost without a word
    paths = write_noisy(make_noisy(small(), "uniform", 0.4, seed=3), tmp_path)
    noisy = load_coco(paths["annotations"])
    with pytest.raises(BenchError, match=r"already noisy \(made by noise model 'uniform' at level 0.4\)"):
        make_noisy(noisy, "uniform", 0.2, seed=1)
    stray = small()
    stray.annotations[0]["true_bbox"] = [1, 2, 3, 4]
    with pytest.raises(BenchError, match="already noisy \\(its annotations carry `true_bbox`\\)"):
        make_noisy(stray, "shift", 0.2)


def test_noise_stats_match_the_manifest():
    r = make_noisy(small(n_images=40, per_image=10), "uniform", 0.3, seed=2)
    s = noise_stats(r.dataset)
    for size in ("all", "small", "medium", "large"):
        assert s["rows"][size]["n"] == r.manifest["realised_iou"][size]["n"]
        assert s["rows"][size]["mean_iou"] == pytest.approx(r.manifest["realised_iou"][size]["mean"], abs=2e-4)
    assert s["ignored"] == r.manifest["counts"]["untouched_ignored"]
    assert 0 < s["rows"]["all"]["p_iou_lt_0.75"] <= 1
    # a hand-built file flagging a box only as VOC `difficult`: ignored by the stats as by the noise
    noisy = r.dataset
    first = next(a for a in noisy.annotations if not a.get("iscrowd"))
    hand = [{k: v for k, v in a.items() if k != "ignore"} | ({"difficult": 1} if a is first else {})
            for a in noisy.annotations]
    s2 = noise_stats(DetectionDataset(noisy.images, hand, noisy.categories))
    assert s2["ignored"] == s["ignored"] + 1 and s2["rows"]["all"]["n"] == s["rows"]["all"]["n"] - 1


def _mmdet_like_check(path):
    """What mmdet 3.x's CocoDataset needs from a file: pycocotools' COCO index, unique annotation ids, image
    width / height / file_name, numeric area / iscrowd, 4-number bboxes of known categories."""
    from pycocotools.coco import COCO

    coco = COCO(str(path))
    ids = [a["id"] for a in coco.dataset["annotations"]]
    assert len(set(ids)) == len(ids)
    for img in coco.dataset["images"]:
        assert {"id", "file_name", "width", "height"} <= set(img)
    cat_ids = set(coco.getCatIds())
    for a in coco.dataset["annotations"]:
        assert len(a["bbox"]) == 4 and all(isinstance(v, (int, float)) for v in a["bbox"])
        assert isinstance(a["area"], (int, float)) and a["iscrowd"] in (0, 1) and a["category_id"] in cat_ids
    return coco


def test_noisy_files_load_in_pycocotools_as_mmdet_uses_them(tmp_path):
    r = make_noisy(small(), compose([("uniform", None), ("bogus", 0.2)]), 0.4)
    paths = write_noisy(r, tmp_path)
    coco = _mmdet_like_check(paths["annotations"])
    assert len(coco.getAnnIds()) == len(r.dataset.annotations)
    assert coco.loadAnns(r.manifest["added_ids"][:1])[0]["true_bbox"] is None


def test_noisy_files_load_in_mmdet_coco_dataset(tmp_path):
    mmdet_datasets = pytest.importorskip("mmdet.datasets", reason="mmdet 3.x is not installed (optional extra)")
    r = make_noisy(small(), "uniform", 0.4)
    paths = write_noisy(r, tmp_path)
    ds = mmdet_datasets.CocoDataset(ann_file=str(paths["annotations"]), data_root="", pipeline=[],
                                    metainfo={"classes": tuple(c["name"] for c in CATS)},
                                    filter_cfg=None, data_prefix={"img": str(tmp_path)})
    n = sum(len(ds.get_data_info(i)["instances"]) for i in range(len(ds)))
    assert n == sum(1 for a in r.dataset.annotations if a["true_bbox"] is not None and not a.get("ignore"))


def test_mmdet_config_snippet(tmp_path):
    ds = small()
    r = make_noisy(ds, "uniform", 0.2)
    paths = write_noisy(r, tmp_path / "n")
    text = mmdet_config(paths["annotations"], ["cat", "dog", "bird"], tmp_path / "imgs", tmp_path / "test.json",
                        tmp_path / "imgs", manifest=r.manifest)
    ns: dict = {}
    exec(compile(text, "mmdet_config.py", "exec"), ns)  # valid Python, as mmengine reads it
    assert ns["_base_"] == ["mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"]
    train = ns["train_dataloader"]["dataset"]
    assert train["type"] == "CocoDataset" and train["ann_file"] == str(paths["annotations"].resolve())
    assert train["metainfo"]["classes"] == ("cat", "dog", "bird")
    assert train["data_prefix"]["img"] == str((tmp_path / "imgs").resolve()) + "/"
    assert ns["val_dataloader"]["dataset"]["test_mode"] is True
    assert ns["val_evaluator"] == {"type": "CocoMetric", "ann_file": str((tmp_path / "test.json").resolve()),
                                   "metric": "bbox"}
    assert ns["model"] == {"roi_head": {"bbox_head": {"num_classes": 3}}}
    one_stage = {}
    exec(mmdet_config(paths["annotations"], ["a"], None, base="mmdet::retinanet/retinanet_r50_fpn_1x_coco.py"),
         one_stage)
    assert one_stage["model"] == {"bbox_head": {"num_classes": 1}} and one_stage["val_dataloader"] is None


def test_manifest_source_is_the_file_hash_for_a_loaded_file(tmp_path):
    """Straight from a COCO json the manifest records the file's sha256 (cheap, and what a user can check with
    sha256sum); a dataset derived in memory records the annotation fingerprint instead."""
    from benchmark.datasets import load_coco, save_coco

    path = save_coco(small(), tmp_path / "src" / "train.json")
    ds = load_coco(path)
    m = make_noisy(ds, "uniform", 0.2).manifest
    assert m["source"]["sha256"] == sha256_file(path) and m["source"]["sha256_of"] == "file"
    derived = ds.subset([im["id"] for im in ds.images[:6]])
    m2 = make_noisy(derived, "uniform", 0.2).manifest
    assert m2["source"]["sha256"] == derived.fingerprint() and m2["source"]["sha256_of"] == "annotations"
    assert make_noisy(ds, "uniform", 0.2).payload == make_noisy(ds.copy(), "uniform", 0.2).payload
