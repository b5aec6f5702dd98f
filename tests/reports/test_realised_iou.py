"""The report's realised IoU is `bench noise stats`' number, zero-area boxes included: both go through
`benchmark.boxes`, whose rule gives a zero-area box the noise left alone IoU 1 (the report used to give it 0)."""

from __future__ import annotations

import numpy as np
import orjson

from benchmark.datasets.core import DetectionDataset
from benchmark.evaluation.failure_modes import classify_training
from noise import make_noisy, noise_stats
from reports.analysis import realised_ious

CATEGORIES = [{"id": 1, "name": "a"}]


def _ann(k: int, bbox, true_bbox, **extra) -> dict:
    return {"id": k, "image_id": 1, "category_id": 1, "bbox": bbox, "true_bbox": true_bbox, "iscrowd": 0, **extra}


def test_realised_iou_of_a_hand_built_noisy_file():
    anns = [
        _ann(1, [0, 0, 2, 2], [1, 1, 2, 2]),  # intersection 1, union 7: 1/7
        _ann(2, [5, 5, 0, 4], [5, 5, 0, 4]),  # zero-width box left as it was: 1
        _ann(3, [9, 9, 0, 0], [9, 9, 0, 0]),  # a point left as it was: 1
        _ann(4, [6, 5, 0, 4], [5, 5, 0, 4]),  # zero-width box moved by 1 px: 0
        _ann(5, [0, 0, 40, 40], [0, 0, 40, 40]),  # unchanged: 1 (the only medium box: 1600 >= 32^2)
        _ann(6, [0, 0, 9, 9], [3, 3, 9, 9], iscrowd=1),  # crowd: left out of both
        _ann(7, [20, 20, 5, 5], None),  # added by the noise: no clean box, left out of both
    ]
    coco = {"images": [{"id": 1, "file_name": "1.png", "width": 100, "height": 100}], "annotations": anns,
            "categories": CATEGORIES}
    want = [1 / 7, 1.0, 1.0, 0.0, 1.0]
    assert realised_ious(coco).tolist() == want
    rows = noise_stats(DetectionDataset.from_coco(coco))["rows"]
    assert rows["all"] == {"n": 5, "mean_iou": round(sum(want) / 5, 4), "median_iou": 1.0, "p_iou_lt_0.5": 0.4,
                           "p_iou_lt_0.75": 0.4, "unchanged": 3}
    assert (rows["small"]["n"], rows["small"]["unchanged"], rows["medium"]["n"]) == (4, 2, 1)


def test_report_and_noise_stats_agree_on_a_noisy_set_with_degenerate_boxes():
    rng = np.random.default_rng(5)
    images = [{"id": i + 1, "file_name": f"{i}.png", "width": 200, "height": 150} for i in range(4)]
    anns = []
    for k in range(40):
        x, y = rng.uniform(5, 100, 2)
        w, h = [(30.0, 20.0), (0.0, 20.0), (30.0, 0.0), (0.0, 0.0), (45.0, 40.0)][k % 5]
        anns.append({"id": k + 1, "image_id": 1 + k % 4, "category_id": 1, "bbox": [x, y, w, h], "area": w * h,
                     "iscrowd": 0})
    ds = DetectionDataset.from_coco({"images": images, "annotations": anns, "categories": CATEGORIES})
    made = make_noisy(ds, "gaussian", 0.3, seed=2)
    noisy = orjson.loads(made.payload)
    degenerate = {a["id"] for a in noisy["annotations"] if a["true_bbox"][2] * a["true_bbox"][3] == 0}
    assert len(degenerate) == 24 and all(a["bbox"] == a["true_bbox"] for a in noisy["annotations"]
                                         if a["id"] in degenerate)  # the noise never moves them

    ious = realised_ious(noisy)
    stats = noise_stats(made.dataset)["rows"]["all"]
    assert len(ious) == stats["n"] == 40
    assert round(float(ious.mean()), 4) == stats["mean_iou"] < 0.9
    assert round(float(np.median(ious)), 4) == stats["median_iou"]
    assert int((ious == 1.0).sum()) == stats["unchanged"] >= 24
    assert made.manifest["realised_iou"]["all"]["n"] == 40 - 24  # the manifest: only boxes a model may move
    modes = classify_training(noisy, None).set_index("ann_id")["mode"]
    assert (modes.loc[sorted(degenerate)] == "good").all()  # the failure modes agree: an unchanged box is good
