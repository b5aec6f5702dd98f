"""Data pipeline: targets, label mapping, ignore handling, seeded flips and the resumable training stream."""

import pytest
import torch

from benchmark.errors import BenchError
from methods._core.data import DetectionImages, TrainOrder, load_image
from methods._core.toy import make_toy_dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), num_images=6, size=(64, 48), noise=0.3)


def test_targets_follow_annotations(toy):
    data = DetectionImages(toy)
    labels = toy.contiguous_labels()
    assert labels == {3: 1, 7: 2}
    for i, img in enumerate(toy.images):
        im, t = data[i]
        anns = [a for a in toy.annotations if a["image_id"] == img["id"]]
        assert im.shape == (3, 48, 64) and im.dtype == torch.float32 and 0 <= im.min() and im.max() <= 1
        assert t["ann_ids"].tolist() == [a["id"] for a in anns]
        assert t["labels"].tolist() == [labels[a["category_id"]] for a in anns]
        x, y, w, h = anns[0]["bbox"]
        assert t["boxes"][0].tolist() == pytest.approx([x, y, x + w, y + h])
        assert t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
        assert int(t["image_id"]) == img["id"]
        assert t["orig_size"].tolist() == [48, 64] and t["flip"].tolist() == [False, False]


def test_ignored_crowd_and_degenerate_boxes_are_not_targets(toy):
    anns = [dict(a) for a in toy.annotations]
    first_img = toy.images[0]["id"]
    mine = [a for a in anns if a["image_id"] == first_img]
    mine[0]["ignore"] = 1
    extra = {"id": 99999, "image_id": first_img, "category_id": 3, "bbox": [70.0, 10.0, 5.0, 5.0], "iscrowd": 1,
             "ignore": 1}
    outside = {"id": 99998, "image_id": first_img, "category_id": 3, "bbox": [80.0, 10.0, 5.0, 5.0]}
    data = DetectionImages(toy.replace_annotations(anns + [extra, outside]))
    _, t = data[0]
    assert mine[0]["id"] not in t["ann_ids"].tolist()
    assert 99999 not in t["ann_ids"].tolist() and 99998 not in t["ann_ids"].tolist()
    assert data.skipped == {"ignored": 2, "degenerate": 1}


def test_unknown_category_is_a_clear_error(toy):
    anns = [dict(a) for a in toy.annotations]
    anns[0]["category_id"] = 42
    with pytest.raises(BenchError, match="category_id 42"):
        DetectionImages(toy.replace_annotations(anns))


def test_flip_moves_pixels_and_boxes_together(toy):
    data = DetectionImages(toy)
    plain, t0 = data[0]
    flipped, t1 = data[(0, True, True)]
    assert torch.equal(flipped, plain.flip([-1, -2]))
    assert t1["flip"].tolist() == [True, True]
    x1, y1, x2, y2 = t0["boxes"][0].tolist()
    assert t1["boxes"][0].tolist() == pytest.approx([64 - x2, 48 - y2, 64 - x1, 48 - y1])
    # the box covers the same (bright) object in both images
    fx1, fy1, fx2, fy2 = (int(round(v)) for v in t1["boxes"][0].tolist())
    ox1, oy1, ox2, oy2 = (int(round(v)) for v in t0["boxes"][0].tolist())
    assert flipped[:, fy1:fy2, fx1:fx2].mean().item() == pytest.approx(plain[:, oy1:oy2, ox1:ox2].mean().item(), abs=1e-6)


def test_image_size_mismatch_is_reported(toy, tmp_path):
    img = dict(toy.images[0], width=65)
    with pytest.raises(BenchError, match="annotated as 65x48"):
        load_image(toy, img)
    with pytest.raises(BenchError, match="not found"):
        load_image(toy, dict(img, file_name="missing.png"))


def test_train_order_is_seeded_and_covers_every_image():
    a = TrainOrder(10, 4, data_seed=3, hflip=0.5, vflip=0.5)
    b = TrainOrder(10, 4, data_seed=3, hflip=0.5, vflip=0.5)
    c = TrainOrder(10, 4, data_seed=4, hflip=0.5, vflip=0.5)
    batches = [a.batch(i) for i in range(5)]
    assert batches == [b.batch(i) for i in range(5)]
    assert batches != [c.batch(i) for i in range(5)]
    stream = [s for bt in batches for s in bt]
    assert sorted(i for i, _, _ in stream[:10]) == list(range(10))  # first pass is a permutation
    assert sorted(i for i, _, _ in stream[10:20]) == list(range(10))
    flips = [f for _, h, v in stream for f in (h, v)]
    assert 0 < sum(flips) < len(flips)
    # iteration 3 alone (as after a resume) gives the same data as in the full stream
    assert TrainOrder(10, 4, data_seed=3, hflip=0.5, vflip=0.5).batch(3) == batches[3]
    assert all(not h and not v for _, h, v in TrainOrder(10, 4, 3).batch(0))


def test_ranks_split_the_global_batch():
    full = TrainOrder(9, 4, data_seed=0).batch(2)
    r0 = TrainOrder(9, 4, data_seed=0, rank=0, world_size=2).batch(2)
    r1 = TrainOrder(9, 4, data_seed=0, rank=1, world_size=2).batch(2)
    assert sorted(r0 + r1) == sorted(full) and len(r0) == len(r1) == 2
    with pytest.raises(BenchError, match="divisible"):
        TrainOrder(9, 3, data_seed=0, world_size=2)
