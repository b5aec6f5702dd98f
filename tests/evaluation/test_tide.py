"""TIDE-style error decomposition on hand-built cases, and its base AP against faster-coco-eval / the suite's VOC
evaluator (and tidecv itself where installed)."""

from __future__ import annotations

import numpy as np
import pytest
from coco_reference import faster_coco_eval_stats

from benchmark.evaluation.tide import ERROR_TYPES, TideConfig, class_ap, decompose, decompose_range, decomposition_rows

# COCO 101-point AP of a class whose PR curve is: precision 1 up to recall r1, then p2 up to recall 1
# (points 0..r1 -> 1, the rest -> p2)


def _gt(*boxes, cls=None, ignore=None, image=1):
    cls = cls or [1] * len(boxes)
    anns = []
    for k, (b, c) in enumerate(zip(boxes, cls)):
        a = {"id": k + 1, "image_id": image, "category_id": c, "bbox": list(b), "area": b[2] * b[3], "iscrowd": 0}
        if ignore and ignore[k]:
            a["ignore"] = 1
        anns.append(a)
    return {"images": [{"id": image}], "annotations": anns, "categories": [{"id": 1}, {"id": 2}]}


def _det(box, score, cls=1, image=1):
    return {"image_id": image, "category_id": cls, "bbox": list(box), "score": score}


def only(result, kind):
    """The error counts must name exactly this kind (and nothing else)."""
    return {k: v for k, v in result["count"].items() if v} == {kind: 1}


def test_perfect_detection_has_no_errors():
    r = decompose(_gt([0, 0, 10, 10]), [_det([0, 0, 10, 10], 0.9)])
    assert r["AP"] == 1.0 and not any(r["count"].values()) and not any(r["dAP"].values())


def test_pure_localisation_error():
    # IoU 0.4: a Loc error whose GT is free, so the GT is not a Miss; fixing it gives AP 1
    r = decompose(_gt([0, 0, 10, 10]), [_det([0, 0, 10, 4], 0.9)])
    assert only(r, "Loc")
    assert r["AP"] == 0.0 and r["dAP"]["Loc"] == 1.0
    assert r["dAP"]["Miss"] == 0.0 and r["dAP"]["Bkg"] == 0.0


def test_duplicate_ranked_above_a_true_positive():
    # GT A, B; detections: A (0.9, TP), A again (0.8, Dupe), B (0.7, TP) -> precision 1, 1/2, 2/3
    gt = _gt([0, 0, 10, 10], [50, 50, 10, 10])
    dets = [_det([0, 0, 10, 10], 0.9), _det([0, 0, 10, 9.5], 0.8), _det([50, 50, 10, 10], 0.7)]
    r = decompose(gt, dets)
    assert only(r, "Dupe")
    base = (51 * 1.0 + 50 * (2 / 3)) / 101  # recall <= 0.5 at precision 1, above it 2/3
    assert r["AP"] == pytest.approx(base)
    assert r["dAP"]["Dupe"] == pytest.approx(1.0 - base)
    assert r["special"]["FalsePos"] == pytest.approx(1.0 - base)


def test_background_false_positive():
    gt = _gt([0, 0, 10, 10])
    r = decompose(gt, [_det([50, 50, 10, 10], 0.95), _det([0, 0, 10, 10], 0.9)])
    assert only(r, "Bkg")
    assert r["AP"] == pytest.approx(0.5) and r["dAP"]["Bkg"] == pytest.approx(0.5)


def test_detection_on_an_image_without_gt_is_background():
    gt = _gt([0, 0, 10, 10])
    gt["images"].append({"id": 2})
    r = decompose(gt, [_det([0, 0, 10, 10], 0.9, image=2), _det([0, 0, 10, 10], 0.8)])
    assert only(r, "Bkg")


def test_missed_object():
    r = decompose(_gt([0, 0, 10, 10], [50, 50, 10, 10]), [_det([0, 0, 10, 10], 0.9)])
    assert only(r, "Miss")
    assert r["AP"] == pytest.approx(51 / 101)  # recall 0.5 at precision 1
    assert r["dAP"]["Miss"] == pytest.approx(50 / 101)
    assert r["special"]["FalseNeg"] == pytest.approx(50 / 101)


def test_classification_error_is_relabelled_by_its_fix():
    r = decompose(_gt([0, 0, 10, 10], cls=[1]), [_det([0, 0, 10, 10], 0.9, cls=2)])
    assert only(r, "Cls") and r["AP"] == 0.0 and r["dAP"]["Cls"] == 1.0


def test_both_wrong_class_and_poor_box():
    r = decompose(_gt([0, 0, 10, 10], cls=[1]), [_det([0, 0, 10, 3], 0.9, cls=2)])  # IoU 0.3, other class
    assert r["count"]["Both"] == 1 and r["count"]["Miss"] == 1


def test_loc_error_on_a_matched_gt_is_deleted_by_the_fix():
    gt = _gt([0, 0, 10, 10], [50, 50, 10, 10])
    dets = [_det([0, 0, 10, 10], 0.9), _det([0, 0, 10, 4], 0.8), _det([50, 50, 10, 10], 0.7)]
    r = decompose(gt, dets)
    assert only(r, "Loc")
    assert r["dAP"]["Loc"] == pytest.approx(1.0 - r["AP"])  # removing the FP gives AP 1


def test_only_the_best_scoring_error_per_gt_is_fixed():
    # two Loc errors on the same free GT: the fix makes the 0.9 one a TP and deletes the 0.8 one
    gt = _gt([0, 0, 10, 10])
    r = decompose(gt, [_det([0, 0, 10, 4], 0.9), _det([0, 0, 10, 3], 0.8)])
    assert r["count"]["Loc"] == 2 and r["dAP"]["Loc"] == 1.0


def test_ignored_gt_absorbs_its_detection():
    gt = _gt([0, 0, 10, 10], [50, 50, 10, 10], ignore=[False, True])
    r = decompose(gt, [_det([50, 50, 10, 10], 0.95), _det([0, 0, 10, 10], 0.9)])
    assert r["AP"] == 1.0 and not any(r["count"].values()) and r["n_gt"] == 1


def test_crowd_region_ignores_detections_inside_it():
    gt = _gt([0, 0, 10, 10])
    gt["annotations"].append({"id": 9, "image_id": 1, "category_id": 1, "bbox": [40, 40, 40, 40], "area": 1600,
                              "iscrowd": 1})
    dets = [_det([45, 45, 10, 10], 0.95), _det([60, 60, 10, 10], 0.94), _det([0, 0, 10, 10], 0.9)]
    r = decompose(gt, dets)
    assert r["AP"] == 1.0 and r["n_fp"] == 0


def test_size_buckets_ignore_other_sizes():
    gt = _gt([0, 0, 10, 10], [0, 40, 50, 50])  # small (100) and medium (2500)
    dets = [_det([0, 40, 50, 50], 0.9), _det([0, 0, 10, 4], 0.8)]
    small, medium = decompose(gt, dets, size="small"), decompose(gt, dets, size="medium")
    assert small["n_gt"] == 1 and only(small, "Loc") and small["AP"] == 0.0
    assert medium["n_gt"] == 1 and medium["AP"] == 1.0 and not any(medium["count"].values())
    assert np.isnan(decompose(gt, dets, size="large")["AP"])


def test_voc_matching_has_no_fallback():
    # the 0.9 detection takes GT A; the 0.8 one's best GT is A too (taken) -> FP in VOC even though B overlaps it
    gt = _gt([0, 0, 10, 10], [5, 0, 10, 10])
    dets = [_det([0, 0, 10, 10], 0.9), _det([2, 0, 10, 10], 0.8)]
    coco = decompose(gt, dets, TideConfig(style="coco"))
    voc = decompose(gt, dets, TideConfig(style="voc"))
    assert coco["n_tp"] == 2 and voc["n_tp"] == 1
    assert voc["count"]["Dupe"] == 1 and voc["count"]["Miss"] == 1


def test_class_ap_styles():
    # TP, FP, TP with 2 GT
    assert class_ap(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]), 2, "voc") == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert class_ap(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]), 2, "coco") == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert class_ap(np.zeros(0), np.zeros(0, bool), 3) == 0.0


def test_range_averages_thresholds():
    gt = _gt([0, 0, 10, 10])
    r = decompose_range(gt, [_det([0, 0, 10, 7], 0.9)])  # IoU 0.7: TP for t <= 0.7 (5 of 10 thresholds)
    assert r["AP"] == pytest.approx(0.5)
    assert r["dAP"]["Loc"] == pytest.approx(0.5)


def test_decomposition_rows_long_table():
    gt = _gt([0, 0, 10, 10])
    rows = decomposition_rows(gt, [_det([0, 0, 10, 4], 0.9)], iou_range=True)
    assert set(zip(rows["style"], rows["metric"])) == {("coco", "AP50"), ("coco", "AP"), ("voc", "AP50")}
    assert {f"dAP_{k}" for k in ERROR_TYPES} <= set(rows.columns)


# ---- base AP against the reference evaluators ----------------------------------------------------------------

def _random_case(seed: int, crowd: bool = True):
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": 200, "height": 200, "file_name": f"{i}.jpg"} for i in range(40)]
    anns, dets, aid = [], [], 1
    for im in images:
        for _ in range(rng.integers(0, 7)):
            x, y = rng.uniform(0, 150, 2)
            w, h = rng.uniform(4, 120, 2)
            c = int(rng.integers(1, 4))
            flag = int(crowd and rng.random() < 0.05)
            anns.append({"id": aid, "image_id": im["id"], "category_id": c, "bbox": [x, y, w, h], "area": w * h,
                         "iscrowd": flag})
            aid += 1
            for _ in range(rng.integers(0, 3)):
                j = rng.normal(0, 0.15, 4) * [w, h, w, h]
                dets.append({"image_id": im["id"], "category_id": c if rng.random() < 0.85 else int(rng.integers(1, 4)),
                             "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])],
                             "score": float(rng.random())})
        for _ in range(rng.integers(0, 3)):
            x, y = rng.uniform(0, 150, 2)
            w, h = rng.uniform(4, 60, 2)
            dets.append({"image_id": im["id"], "category_id": int(rng.integers(1, 4)), "bbox": [x, y, w, h],
                         "score": float(rng.random())})
    gt = {"images": images, "annotations": anns, "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]}
    return gt, dets


def test_base_ap_equals_faster_coco_eval():
    gt, dets = _random_case(0)
    ap, ap50, ap75, aps, apm, apl = faster_coco_eval_stats(gt, dets)[:6]
    assert decompose(gt, dets)["AP"] == pytest.approx(ap50, abs=1e-9)
    assert decompose(gt, dets, TideConfig(pos_threshold=0.75))["AP"] == pytest.approx(ap75, abs=1e-9)
    assert decompose_range(gt, dets)["AP"] == pytest.approx(ap, abs=1e-9)
    assert decompose_range(gt, dets, size="small")["AP"] == pytest.approx(aps, abs=1e-9)
    assert decompose_range(gt, dets, size="medium")["AP"] == pytest.approx(apm, abs=1e-9)
    assert decompose_range(gt, dets, size="large")["AP"] == pytest.approx(apl, abs=1e-9)


def test_voc_base_ap_equals_suite_voc_evaluator():
    from benchmark.datasets import DetectionDataset
    from benchmark.evaluation import evaluate_voc

    gt, dets = _random_case(1, crowd=False)
    rng = np.random.default_rng(5)
    for a in gt["annotations"]:
        a["difficult"] = int(rng.random() < 0.1)
    ds = DetectionDataset.from_coco(gt)
    want = evaluate_voc(ds, dets)["AP50"]
    got = decompose(ds.to_coco(), dets, TideConfig(style="voc"))["AP"]
    assert got == pytest.approx(want, abs=1e-6)


def test_against_tidecv_when_installed():
    tidecv = pytest.importorskip("tidecv", reason="tidecv not installed (optional cross-check; pip install tidecv)")
    from tidecv import TIDE, Data

    gt, dets = _random_case(2, crowd=False)
    # tidecv averages over every class with data (ours: classes with GT) -> keep every class present in GT
    gdata, pdata = Data("gt"), Data("pred")
    for im in gt["images"]:  # images without GT too, so their detections count as background errors
        gdata.add_image(im["id"], im["file_name"])
    for a in gt["annotations"]:
        gdata.add_ground_truth(a["image_id"], a["category_id"], a["bbox"])
    for d in dets:
        pdata.add_detection(d["image_id"], d["category_id"], d["score"], d["bbox"])
    tide = TIDE(pos_threshold=0.5, background_threshold=0.1, mode=TIDE.BOX)
    tide.evaluate(gdata, pdata, name="run")
    errors = tide.get_all_errors()
    ours = decompose(gt, dets)
    # counts agree exactly; AP can differ by ~1e-4 where a recall lands on a grid point, because tidecv samples
    # recall at i/100 while COCOeval (and we) use np.linspace(0, 1, 101)
    assert tide.runs["run"].ap / 100 == pytest.approx(ours["AP"], abs=5e-4)
    for k in ERROR_TYPES:
        assert errors["main"]["run"][k] / 100 == pytest.approx(ours["dAP"][k], abs=5e-4), k
    for k in ("FalsePos", "FalseNeg"):
        assert errors["special"]["run"][k] / 100 == pytest.approx(ours["special"][k], abs=5e-4), k
    theirs = {cls.short_name: n for cls, n in tide.runs["run"].count_errors().items()}
    assert theirs == ours["count"]
    del tidecv
