"""The built-in synthetic `shapes` dataset: determinism, exact boxes, the properties noise studies need, caching."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.datasets import SHAPES_CLASSES, ShapesConfig, ensure_shapes, load
from benchmark.datasets.shapes import _shape_mask, generate_split, parse_shapes_spec, render
from benchmark.errors import BenchError
from benchmark.io import dumps_json

REPO = Path(__file__).resolve().parents[2]


def ann_sha(coco: dict) -> str:
    return hashlib.sha256(dumps_json({k: coco[k] for k in ("images", "annotations", "categories")})).hexdigest()


def test_same_seed_same_data_different_seed_differs(tmp_path):
    a = generate_split(12, seed=5, size=128, out_dir=tmp_path / "a", split="train", progress=False)
    b = generate_split(12, seed=5, size=128, out_dir=tmp_path / "b", split="train", progress=False)
    c = generate_split(12, seed=6, size=128, out_dir=tmp_path / "c", split="train", progress=False)
    assert ann_sha(a) == ann_sha(b) != ann_sha(c)
    for name in ("train/000001.png", "train/000012.png"):  # pixels too
        assert (tmp_path / "a" / "images" / name).read_bytes() == (tmp_path / "b" / "images" / name).read_bytes()
        assert (tmp_path / "a" / "images" / name).read_bytes() != (tmp_path / "c" / "images" / name).read_bytes()


@pytest.mark.parametrize("cls", range(len(SHAPES_CLASSES)))
def test_boxes_are_the_exact_extent_of_the_drawn_shape(cls):
    rng = np.random.default_rng(cls)
    for _ in range(200):
        w, h = (int(v) for v in rng.integers(4, 65, 2))
        x0, y0 = int(rng.integers(0, 128 - w + 1)), int(rng.integers(0, 128 - h + 1))
        mask = np.asarray(_shape_mask(cls, (x0, y0, x0 + w, y0 + h), 128, rng)) > 0
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x0 + w, y0 + h)


def _touching(a, b) -> bool:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    span_x = min(ax2, bx2) > max(a[0], b[0])
    span_y = min(ay2, by2) > max(a[1], b[1])
    return (span_y and (ax2 == b[0] or bx2 == a[0])) or (span_x and (ay2 == b[1] or by2 == a[1]))


def _overlap(a, b) -> float:
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(iw, 0) * max(ih, 0)


def test_properties_touching_overlap_balance_sizes():
    objs_per_image, boxes, touching_imgs, overlap_imgs, max_cover = [], [], 0, 0, 0.0
    n = 150
    for i in range(n):
        arr, objects = render(np.random.default_rng([11, i]), 128)
        assert arr.shape == (128, 128, 3) and arr.dtype == np.uint8
        objs_per_image.append(len(objects))
        bs = [b for _, b in objects]
        boxes += objects
        pairs = [(p, q) for k, p in enumerate(bs) for q in bs[k + 1:]]
        touching_imgs += any(_touching(p, q) for p, q in pairs)
        overlap_imgs += any(_overlap(p, q) > 0 for p, q in pairs)
        for k, p in enumerate(bs):  # a later object covers at most 35 % of an earlier box (pairwise)
            for q in bs[k + 1:]:
                max_cover = max(max_cover, _overlap(p, q) / (p[2] * p[3]))
        for _, (x, y, w, h) in objects:
            assert x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128 and 4 <= min(w, h) and max(w, h) <= 64
    assert 1 <= min(objs_per_image) and max(objs_per_image) <= 8 and 4.0 < np.mean(objs_per_image) < 6.0
    assert touching_imgs / n > 0.3, touching_imgs  # neighbours sharing a box edge
    assert overlap_imgs / n > 0.3, overlap_imgs  # partial occlusion
    assert 0.1 < max_cover <= 0.35 + 1e-9
    share = Counter(c for c, _ in boxes)
    assert set(share) == set(range(4))
    assert all(0.18 < share[c] / len(boxes) < 0.32 for c in share), share
    sides = np.sqrt([w * h for _, (_, _, w, h) in boxes])
    assert np.percentile(sides, 10) < 12 and np.percentile(sides, 90) > 35  # small and medium objects


def test_shapes_mini_from_the_catalog():
    splits = load("shapes-mini")
    tr, te = splits["train"], splits["test"]
    assert (len(tr), len(te)) == (64, 32)
    assert [c["name"] for c in tr.categories] == list(SHAPES_CLASSES) and tr.categories == te.categories
    assert tr.fingerprint() != te.fingerprint()
    for ds in (tr, te):
        im = ds.images[0]
        with Image.open(ds.image_path(im)) as pil:
            assert pil.size == (128, 128) and pil.mode == "RGB"
    assert tr.info["skipped"] == {} and tr.info["fixed"] == {}


def test_cache_is_reused_and_keyed_by_parameters(tmp_path):
    cfg = ShapesConfig(train=6, val=3, size=64)
    path = ensure_shapes(cfg, root=tmp_path, progress=False)
    stamp = (path / "train.json").stat().st_mtime_ns
    assert ensure_shapes(cfg, root=tmp_path, progress=False) == path
    assert (path / "train.json").stat().st_mtime_ns == stamp  # not regenerated
    other = ensure_shapes(ShapesConfig(train=6, val=3, size=64, train_seed=9), root=tmp_path, progress=False)
    assert other != path
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    cfg3 = ShapesConfig(train=2, val=1, size=64)
    stale, fresh = tmp_path / f".{cfg3.key()}.tmp-1-dead", tmp_path / f".{cfg3.key()}.tmp-2-busy"
    stale.mkdir(), fresh.mkdir()
    os.utime(stale, (0, 0))  # left by a process killed long ago
    ensure_shapes(cfg3, root=tmp_path, progress=False)
    assert not stale.exists() and fresh.exists()  # a recent one may be another process at work


def test_two_processes_generating_at_once(tmp_path):
    code = ("import sys; from benchmark.datasets.shapes import ShapesConfig, ensure_shapes; "
            "print(ensure_shapes(ShapesConfig(train=30, val=10, size=64), root=sys.argv[1], progress=False))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0]
    entries = list(tmp_path.iterdir())
    assert [e.name for e in entries] == [ShapesConfig(train=30, val=10, size=64).key()]
    assert len(list((entries[0] / "images" / "train").iterdir())) == 30


def test_shapes_spec_parsing_and_other_sizes():
    assert parse_shapes_spec("shapes:train=10,val=5,size=64,seed=7") == ShapesConfig(10, 5, 64, 7, 8)
    assert parse_shapes_spec("shapes:test=4,train_seed=3") == ShapesConfig(val=4, train_seed=3)
    with pytest.raises(BenchError, match="bad shapes option 'colour=red'"):
        parse_shapes_spec("shapes:colour=red")
    with pytest.raises(BenchError, match="size must be between"):
        parse_shapes_spec("shapes:size=8")
    splits = load("shapes:train=4,val=2,size=64")
    assert len(splits["train"]) == 4 and splits["test"].images[0]["width"] == 64


def test_generation_bar_follows_progress(tmp_path, monkeypatch, capfd):
    """`bench train --quiet` (load(..., progress=False)) drew the generating-shapes bar all the same."""
    from benchmark.datasets import load

    monkeypatch.setenv("NOISYBOX_CACHE", str(tmp_path / "a"))
    load("shapes:train=4,val=2,size=32,seed=11", progress=False)
    assert "generating shapes" not in capfd.readouterr().err
    monkeypatch.setenv("NOISYBOX_CACHE", str(tmp_path / "b"))
    load("shapes:train=4,val=2,size=32,seed=11")
    assert "generating shapes" in capfd.readouterr().err
