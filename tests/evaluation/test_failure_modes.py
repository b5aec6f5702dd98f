"""The failure-mode classifier on hand-built geometry: every mode, every priority tie-break, every inclusive
threshold, the same-class drift variant, and the vectorised pass against a box-by-box reading of the rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.evaluation.failure_modes import (
    MODES,
    UNASSIGNED,
    FailureModeConfig,
    classify,
    classify_detections,
    classify_training,
    mode_rates,
    sensitivity,
)

CFG = FailureModeConfig()


def one(d, gts, owner=0, labels=None, cfg=CFG, variant=False):
    """Mode of a single box D (xyxy) attached to gts[owner], all in one image."""
    res = classify([d], [owner], [0], gts, [0] * len(gts), labels, cfg)
    return (res.mode_same_class if variant else res.mode)[0]


# ---- each mode ---------------------------------------------------------------------------------------------

def test_good_including_the_exact_threshold():
    g = [[0, 0, 10, 10]]
    assert one([0, 0, 10, 10], g) == "good"
    assert one([0, 0, 10, 5], g) == "good"  # IoU exactly 0.5: inclusive
    assert one([0, 0, 10, 5], g, cfg=FailureModeConfig(bad_iou=0.51)) != "good"


def test_group_two_covered_objects_and_a_large_box():
    gts = [[0, 0, 10, 10], [10, 0, 20, 10]]
    assert one([0, 0, 21, 10], gts) == "group"  # IoU 0.476, both IoG 1, area 2.1x


def test_group_need_not_cover_the_own_object():
    gts = [[0, 0, 10, 10], [12, 0, 22, 10], [24, 0, 34, 10]]
    assert one([12, 0, 40, 10], gts, owner=0) == "group"


def test_group_needs_the_area_ratio_else_part():
    # two small objects inside D, but D is smaller than 1.5x its own (large) object: not group; D lies inside G
    gts = [[0, 0, 20, 20], [0, 0, 4, 4], [5, 5, 9, 9]]
    assert one([0, 0, 10, 10], gts, owner=0) == "part"


def test_drift_to_a_neighbour_with_higher_iou():
    gts = [[0, 0, 10, 10], [8, 0, 18, 10]]
    assert one([7, 0, 17, 10], gts) == "drift"  # IoU own 0.18, neighbour 0.82


def test_drift_needs_strictly_higher_iou():
    gts = [[0, 0, 10, 10], [10, 0, 20, 10]]
    d = [4, 0, 16, 10]  # IoU 0.375 with both objects: a tie is not drift
    assert one(d, gts) == "shift"
    assert one([4.5, 0, 16.5, 10], gts) == "drift"


def test_drift_needs_the_minimum_iou():
    gts = [[0, 0, 10, 10], [10, 0, 20, 10]]
    assert one([9, 0, 12, 10], gts) == "shift"  # neighbour IoU 0.18 > own 0.08, but < 0.3
    assert one([9, 0, 12, 10], gts, cfg=FailureModeConfig(drift_iou=0.15)) == "drift"


def test_same_class_drift_variant():
    gts = [[0, 0, 10, 10], [8, 0, 18, 10]]
    d = [7, 0, 17, 10]
    assert one(d, gts, labels=[1, 2]) == "drift"
    assert one(d, gts, labels=[1, 2], variant=True) == "shift"
    assert one(d, gts, labels=[1, 1], variant=True) == "drift"


def test_part_small_box_inside_its_object():
    assert one([2, 2, 10, 10], [[0, 0, 20, 20]]) == "part"  # IoD 1, area 0.16x


def test_part_area_ratio_is_inclusive():
    g = [[0, 0, 20, 20]]
    d = [0, 0, 20, 10]  # area exactly 0.5x, IoU 0.5
    assert one(d, g, cfg=FailureModeConfig(bad_iou=0.6)) == "part"
    assert one(d, g, cfg=FailureModeConfig(bad_iou=0.6, part_area_ratio=0.49)) == "shift"


def test_oversize_large_box_around_a_lone_object():
    assert one([-5, -5, 15, 15], [[0, 0, 10, 10]]) == "oversize"  # IoG 1, area 4x


def test_oversize_needs_twice_the_area():
    assert one([2, 0, 21, 10], [[0, 0, 10, 10]]) == "shift"  # IoG 0.8 but area 1.9x


def test_oversize_partially_touching_another_object_is_still_oversize():
    gts = [[0, 0, 10, 10], [14, 0, 30, 10]]  # D covers 1/16 of the second object
    assert one([-5, -5, 15, 15], gts) == "oversize"


def test_oversize_requires_no_other_covered_object():
    gts = [[0, 0, 10, 10], [11, 0, 13, 2]]
    # with the default group rule this is a group; if group needs 3 objects it is neither group nor oversize
    assert one([-5, -5, 15, 15], gts) == "group"
    assert one([-5, -5, 15, 15], gts, cfg=FailureModeConfig(group_min_objects=3)) == "shift"


def test_shift_is_the_rest():
    assert one([6, 0, 16, 10], [[0, 0, 10, 10]]) == "shift"


# ---- priority tie-breaks ---------------------------------------------------------------------------------------

def test_group_wins_over_drift():
    gts = [[0, 0, 10, 10], [10, 0, 30, 10]]
    d = [2, 0, 30, 10]  # neighbour IoU 0.71 > own 0.27 (drift), and both covered with area 2.8x (group)
    assert one(d, gts) == "group"
    assert one(d, gts, cfg=FailureModeConfig(group_cover=0.9)) == "drift"


def test_drift_wins_over_part():
    gts = [[0, 0, 20, 20], [2, 2, 10, 11]]  # a part of G annotated as its own object
    assert one([2, 2, 10, 10], gts) == "drift"
    assert one([2, 2, 10, 10], gts, labels=[1, 2], variant=True) == "part"


def test_part_wins_over_oversize_when_both_thresholds_allow():
    # a degenerate config where a box can satisfy both: the documented order decides
    cfg = FailureModeConfig(part_iod=0.0, part_area_ratio=10.0)
    assert one([-5, -5, 15, 15], [[0, 0, 10, 10]], cfg=cfg) == "part"


def test_zero_area_boxes_do_not_crash():
    res = classify([[5, 5, 5, 5], [0, 0, 10, 10]], [0, 1], [0, 0], [[0, 0, 10, 10], [3, 3, 3, 3]], [0, 0])
    # a zero-area box overlaps nothing (shift); a box owned by a zero-area object drifts to the real one
    assert list(res.mode) == ["shift", "drift"]
    assert np.all(np.isfinite(res.iou))


def test_owner_must_be_in_the_same_image():
    with pytest.raises(ValueError, match="another image"):
        classify([[0, 0, 1, 1]], [0], [1], [[0, 0, 1, 1]], [0])


# ---- vectorised vs box-by-box ------------------------------------------------------------------------------------

def _reference(d, i, gts, labels, cfg, same_class):
    def ov(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        ad = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
        ab = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
        u = ad + ab - inter
        return (inter / u if u > 0 else 0.0), (inter / ab if ab > 0 else 0.0), (inter / ad if ad > 0 else 0.0), ad, ab

    iou, iog, iod, ad, ag = ov(d, gts[i])
    if iou >= cfg.bad_iou:
        return "good"
    covered = [j for j in range(len(gts)) if ov(d, gts[j])[1] >= cfg.group_cover]
    if len(covered) >= cfg.group_min_objects and ad >= cfg.group_area_ratio * ag:
        return "group"
    for j in range(len(gts)):
        if j != i and (not same_class or labels[j] == labels[i]):
            o = ov(d, gts[j])[0]
            if o > iou and o >= cfg.drift_iou:
                return "drift"
    if iod >= cfg.part_iod and ad <= cfg.part_area_ratio * ag:
        return "part"
    if iog >= cfg.oversize_iog and ad >= cfg.oversize_area_ratio * ag and not [j for j in covered if j != i]:
        return "oversize"
    return "shift"


@pytest.mark.parametrize("cfg", [FailureModeConfig(), FailureModeConfig(bad_iou=0.3, group_cover=0.6)])
def test_vectorised_matches_box_by_box(cfg):
    rng = np.random.default_rng(1)
    gts, g_img, g_lab = [], [], []
    for img in range(25):
        for _ in range(rng.integers(1, 7)):
            x, y = rng.uniform(0, 60, 2)
            w, h = rng.uniform(4, 30, 2)
            gts.append([x, y, x + w, y + h])
            g_img.append(img)
            g_lab.append(int(rng.integers(0, 2)))
    gts = np.array(gts)
    boxes, owner, img = [], [], []
    for _ in range(600):
        i = int(rng.integers(len(gts)))
        x1, y1, x2, y2 = gts[i]
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2 + w * rng.uniform(-0.8, 0.8), (y1 + y2) / 2 + h * rng.uniform(-0.8, 0.8)
        w, h = w * np.exp(rng.uniform(-1.2, 1.2)), h * np.exp(rng.uniform(-1.2, 1.2))
        boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        owner.append(i)
        img.append(g_img[i])
    res = classify(boxes, owner, img, gts, g_img, g_lab, cfg)
    by_img = {}
    for k, im in enumerate(g_img):
        by_img.setdefault(im, []).append(k)
    for k in range(len(boxes)):
        rows = by_img[img[k]]
        local = rows.index(owner[k])
        want = _reference(boxes[k], local, gts[rows], [g_lab[r] for r in rows], cfg, False)
        want_same = _reference(boxes[k], local, gts[rows], [g_lab[r] for r in rows], cfg, True)
        assert res.mode[k] == want and res.mode_same_class[k] == want_same, k
    assert {"good", "group", "drift", "part", "oversize", "shift"} <= set(res.mode)  # the sample exercises all


# ---- application to cells ----------------------------------------------------------------------------------------

def _train_coco():
    return {"images": [{"id": 1, "width": 100, "height": 100}], "categories": [{"id": 1, "name": "a"}],
            "annotations": [
                {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "true_bbox": [0, 0, 10, 10]},
                {"id": 11, "image_id": 1, "category_id": 1, "bbox": [30, 0, 10, 10], "true_bbox": [20, 0, 10, 10]},
                {"id": 12, "image_id": 1, "category_id": 1, "bbox": [60, 60, 5, 5], "true_bbox": None},  # added
            ]}


def test_training_boxes_attach_by_annotation_id():
    coco = _train_coco()
    noisy = classify_training(coco, None)  # the noisy input itself
    assert list(noisy["ann_id"]) == [10, 11] and list(noisy["mode"]) == ["good", "shift"]
    refined = [{"id": 11, "image_id": 1, "category_id": 1, "bbox": [20, 0, 10, 10]},
               {"id": 10, "image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 4]}]
    f = classify_training(coco, refined)
    assert dict(zip(f["ann_id"], f["mode"])) == {10: "part", 11: "good"}
    assert f.attrs == {"ignored": 0, "added_by_noise": 1, "without_refined_box": 0}
    assert set(f["size"]) == {"small"}
    f = classify_training(coco, refined[:1])
    assert list(f["ann_id"]) == [11] and f.attrs["without_refined_box"] == 1


@pytest.mark.parametrize("flag", ["iscrowd", "ignore", "difficult"])
def test_ignored_training_boxes_are_neither_classified_nor_objects(flag):
    """A noisy box over its object and a neighbouring crowd box: with the crowd box as an object it would be a
    group box, and the (never perturbed, always good) crowd box would halve the bad share."""
    coco = {"images": [{"id": 1, "width": 100, "height": 100}], "categories": [{"id": 1, "name": "a"}],
            "annotations": [
                {"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 21, 10], "true_bbox": [0, 0, 10, 10]},
                {"id": 11, "image_id": 1, "category_id": 1, "bbox": [10, 0, 10, 10], "true_bbox": [10, 0, 10, 10],
                 flag: 1},
            ]}
    f = classify_training(coco, None)
    assert list(f["ann_id"]) == [10] and list(f["mode"]) == ["oversize"]  # IoU 0.48, IoG 1, 2.1x, nothing else
    assert f.attrs == {"ignored": 1, "added_by_noise": 0, "without_refined_box": 0}
    assert mode_rates(f).set_index("mode").loc["good", "pct_all"] == 0.0
    coco["annotations"][1][flag] = 0
    assert list(classify_training(coco, None)["mode"]) == ["group", "good"]  # the rule the flag switches off
    # a method need not refine ignored boxes: their absence is no missing refined box
    coco["annotations"][1][flag] = 1
    f = classify_training(coco, [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}])
    assert list(f["mode"]) == ["good"] and f.attrs["without_refined_box"] == 0


def test_detections_ignore_crowd_ground_truth():
    gt = {"images": [{"id": 1}], "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [8, 0, 10, 10], "area": 100, "iscrowd": 1},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [40, 40, 20, 20], "area": 400, "iscrowd": 1,
         "ignore": 1},
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": [70, 70, 10, 10], "area": 100},
    ]}
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [7, 0, 10, 10], "score": 0.9},  # would drift to the crowd box
        {"image_id": 1, "category_id": 1, "bbox": [41, 41, 20, 20], "score": 0.9},  # on a crowd region
        {"image_id": 1, "category_id": 1, "bbox": [70, 70, 10, 10], "score": 0.9},
    ]
    f = classify_detections(gt, dets)
    assert list(f["mode"]) == ["shift", UNASSIGNED, "good"]
    assert list(f["owner_row"]) == [0, -1, 3]  # rows of the full annotation list
    assert mode_rates(f)["total"].iloc[0] == 2
    for a in gt["annotations"]:
        a.pop("iscrowd", None), a.pop("ignore", None)
    assert list(classify_detections(gt, dets)["mode"]) == ["drift", "good", "good"]


def test_detections_attach_to_best_same_class_gt():
    gt = {"images": [{"id": 1}, {"id": 2}], "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [8, 0, 10, 10], "area": 100},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [40, 40, 50, 50], "area": 2500},
    ]}
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [7, 0, 10, 10], "score": 0.9},  # own class: GT 1; drift to GT 2
        {"image_id": 1, "category_id": 1, "bbox": [41, 41, 50, 50], "score": 0.8},  # good on GT 3 (large)
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.2},  # below min_score: dropped
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},  # no GT of its class: unassigned
    ]
    f = classify_detections(gt, dets)
    assert list(f["mode"]) == ["drift", "good", UNASSIGNED]
    assert list(f["mode_same_class"]) == ["shift", "good", UNASSIGNED]
    assert list(f["owner_row"]) == [0, 2, -1]
    assert list(f["size"][:2]) == ["small", "medium"]
    rates = mode_rates(f)
    assert rates["total"].iloc[0] == 2  # unassigned excluded
    assert rates.set_index("mode").loc["drift", "pct_bad"] == 100.0


def test_mode_rates_denominators():
    f = pd.DataFrame({"mode": ["good"] * 6 + ["group", "drift", "drift", "shift"], "k": ["a"] * 5 + ["b"] * 5})
    r = mode_rates(f).set_index("mode")
    assert r.loc["good", "pct_all"] == 60.0 and r.loc["drift", "pct_all"] == 20.0
    assert r.loc["drift", "pct_bad"] == 50.0 and np.isnan(r.loc["good", "pct_bad"])
    assert r["pct_bad"].sum() == pytest.approx(100.0)
    by = mode_rates(f, by=["k"])
    assert by[(by["k"] == "b") & (by["mode"] == "good")]["pct_all"].item() == 20.0
    assert list(mode_rates(f)["mode"]) == list(MODES)


def test_sensitivity_grid_reclassifies():
    coco = _train_coco()
    sens = sensitivity(lambda c: classify_training(coco, None, c), grid={"bad_iou": (0.1, 0.9)})
    good = sens[sens["mode"] == "good"].set_index("bad_iou")["count"]
    # noisy box 10 has IoU 0.68, box 11 IoU 0: both thresholds see box 11 bad; only 0.9 makes box 10 bad
    assert good[0.1] == 1 and good[0.9] == 0
