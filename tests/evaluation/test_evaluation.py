"""Evaluation numbers: COCO AP against pycocotools, VOC AP50 against a hand-worked case and a literal reference."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

from benchmark.datasets.core import DetectionDataset
from benchmark.evaluation import STAT_NAMES, evaluate, evaluate_coco, evaluate_voc

CATS = (1, 3, 7, 11, 90)  # non-contiguous ids; 90 never has ground truth


def random_problem(seed: int, n_images: int = 250, difficult: bool = False):
    """Many images of varied size, crowd (or VOC-difficult) boxes, jittered + duplicate + random detections,
    detections of a class without ground truth, images without ground truth."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    gt_cats = CATS[:-1]
    for i in range(n_images):
        W, H = (int(v) for v in rng.integers(64, 640, 2))
        iid = 5000 + 3 * i  # not 1..N
        images.append({"id": iid, "file_name": f"{i:06d}.jpg", "width": W, "height": H})
        for _ in range(0 if i % 9 == 0 else int(rng.integers(1, 14))):
            w, h = rng.uniform(2, W / 1.5), rng.uniform(2, H / 1.5)  # small, medium and large
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            c = int(rng.choice(gt_cats))
            flagged = int(rng.random() < 0.06)
            ann = {"id": len(anns) + 1, "image_id": iid, "category_id": c, "bbox": [x, y, w, h], "area": w * h}
            if difficult:
                ann.update(iscrowd=0, difficult=flagged)
            else:
                ann.update(iscrowd=flagged)
            anns.append(ann)
            for _ in range(int(rng.integers(0, 4))):  # 0..3 detections per object: misses and duplicates
                jit = rng.uniform(-0.25, 0.25, 2) * [w, h]
                scale = rng.uniform(0.75, 1.3, 2)
                cat = c if rng.random() < 0.9 else int(rng.choice(CATS))
                dets.append({"image_id": iid, "category_id": cat, "score": float(rng.random()),
                             "bbox": [x + jit[0], y + jit[1], w * scale[0], h * scale[1]]})
        for _ in range(int(rng.integers(0, 8))):  # unmatched background detections, any class
            w, h = rng.uniform(1, W / 2), rng.uniform(1, H / 2)
            dets.append({"image_id": iid, "category_id": int(rng.choice(CATS)), "score": float(rng.random()),
                         "bbox": [rng.uniform(0, W - w), rng.uniform(0, H - h), w, h]})
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": f"class{c}"} for c in CATS]}
    return coco, dets


def pycocotools_eval(coco: dict, dets: list):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(coco)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _pycoco_per_class(ev) -> list:
    out = []
    for k in range(len(ev.params.catIds)):
        p = ev.eval["precision"][:, :, k, 0, -1]
        out.append(float(p[p > -1].mean()) if (p > -1).any() else None)
    return out


def _assert_same_as_pycocotools(ours: dict, ev) -> None:
    ref = dict(zip(STAT_NAMES, ev.stats))
    for name in STAT_NAMES:
        expected = None if ref[name] == -1 else ref[name]
        if expected is None:
            assert ours[name] is None, name
        else:
            assert ours[name] == pytest.approx(expected, abs=1e-4), name
    ref_per_class = _pycoco_per_class(ev)
    for got, exp in zip(ours["per_class"].values(), ref_per_class):
        assert (got is None) == (exp is None)
        if exp is not None:
            assert got == pytest.approx(exp, abs=1e-4)


# ---- COCO ----------------------------------------------------------------------------------------------------
def test_coco_matches_pycocotools_on_nontrivial_case():
    coco, dets = random_problem(seed=3)
    assert sum(a["iscrowd"] for a in coco["annotations"]) > 20
    ours = evaluate_coco(DetectionDataset.from_coco(coco), dets)
    ev = pycocotools_eval(coco, dets)
    _assert_same_as_pycocotools(ours, ev)
    assert 0.05 < ours["AP"] < 0.9 and ours["AP50"] > ours["AP75"]  # a case where matching actually matters
    assert all(ours[k] is not None for k in ("APs", "APm", "APl"))
    assert ours["per_class"]["class90"] is None  # no ground truth: undefined, not 0
    assert list(ours["per_class"]) == [f"class{c}" for c in CATS]


def test_coco_per_class_and_stats_are_fractions_and_inputs_untouched():
    coco, dets = random_problem(seed=4, n_images=60)
    gt = DetectionDataset.from_coco(coco)
    before_gt, before_dets = copy.deepcopy(gt.annotations), copy.deepcopy(dets)
    out = evaluate_coco(gt, dets)
    assert gt.annotations == before_gt and dets == before_dets
    for k in STAT_NAMES:
        assert 0.0 <= out[k] <= 1.0
    defined = [v for v in out["per_class"].values() if v is not None]
    assert out["AP"] == pytest.approx(np.mean(defined), abs=1e-9)  # AP is the mean of the per-class APs


def test_coco_difficult_boxes_are_ignored_like_crowd_regions():
    coco, dets = random_problem(seed=5, difficult=True)
    n_difficult = sum(a["difficult"] for a in coco["annotations"])
    assert n_difficult > 20
    ours = evaluate_coco(DetectionDataset.from_coco(coco), dets)
    # documented rule: difficult (ignore=1, iscrowd=0) is scored exactly as a COCO crowd region
    as_crowd = copy.deepcopy(coco)
    for a in as_crowd["annotations"]:
        a["iscrowd"] = a.pop("difficult")
    _assert_same_as_pycocotools(ours, pycocotools_eval(as_crowd, dets))
    # and it matters: counting them as ordinary boxes gives different numbers
    counted = copy.deepcopy(coco)
    for a in counted["annotations"]:
        a.pop("difficult")
    assert evaluate_coco(DetectionDataset.from_coco(counted), dets)["AP"] != pytest.approx(ours["AP"], abs=1e-4)


def test_coco_empty_detections_give_zeros():
    coco, _ = random_problem(seed=6, n_images=20)
    out = evaluate_coco(DetectionDataset.from_coco(coco), [])
    assert all(out[k] == 0.0 for k in STAT_NAMES)
    assert out["per_class"]["class1"] == 0.0 and out["per_class"]["class90"] is None


def test_coco_ground_truth_without_boxes_gives_undefined_not_crash():
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}], "annotations": [],
            "categories": [{"id": 1, "name": "x"}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]
    out = evaluate_coco(DetectionDataset.from_coco(coco), dets)
    assert out["AP"] is None and out["per_class"] == {"x": None}


def test_evaluate_runs_both_metrics():
    coco, dets = random_problem(seed=7, n_images=30)
    gt = DetectionDataset.from_coco(coco)
    out = evaluate(gt, dets)
    assert out["coco"] == evaluate_coco(gt, dets)
    assert out["voc"] == evaluate_voc(gt, dets)


# ---- VOC -----------------------------------------------------------------------------------------------------
def hand_case():
    """Class a: counted A1 (img 1), difficult A2 (img 1), counted A3 (img 2).
    Class b: counted B1, B2 side by side (img 2). Class c: no ground truth. Image 3: no ground truth."""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in (1, 2, 3)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},  # A1
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 0, 10, 10], "difficult": 1},  # A2
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]},  # A3
        {"id": 4, "image_id": 2, "category_id": 2, "bbox": [50, 50, 20, 20]},  # B1
        {"id": 5, "image_id": 2, "category_id": 2, "bbox": [60, 50, 20, 20]},  # B2
    ]
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}]
    d = lambda img, cat, box, s: {"image_id": img, "category_id": cat, "bbox": box, "score": s}  # noqa: E731
    dets = [
        d(1, 1, [0, 0, 10, 10], 0.9),  # a: A1, IoU 1 -> TP
        d(1, 1, [1, 0, 10, 10], 0.8),  # a: duplicate on A1 (IoU 90/110) -> FP
        d(1, 1, [20, 0, 10, 10], 0.7),  # a: on difficult A2 -> ignored
        d(2, 1, [30, 30, 10, 10], 0.6),  # a: nothing there -> FP
        d(3, 1, [0, 0, 10, 10], 0.55),  # a: image without ground truth -> FP
        d(2, 1, [0, 0, 10, 12], 0.5),  # a: A3 (IoU 100/120) -> TP
        d(2, 2, [50, 50, 20, 20], 0.9),  # b: B1, IoU 1 -> TP
        d(2, 2, [54, 50, 20, 20], 0.8),  # b: best B1 (0.667, taken), B2 0.538 free -> FP: no fallback
        d(2, 2, [60, 50, 20, 20], 0.3),  # b: B2, IoU 1 -> TP
        d(1, 3, [0, 0, 5, 5], 0.99),  # c: class without ground truth -> excluded from mAP
    ]
    return DetectionDataset.from_coco({"images": images, "annotations": anns, "categories": cats}), dets


def test_voc_ap50_hand_computed():
    gt, dets = hand_case()
    out = evaluate_voc(gt, dets)
    # class a, ranked: TP FP (ignored) FP FP TP; 2 counted boxes
    #   cum TP 1 1 1 1 1 2 / cum FP 0 1 1 2 3 3
    #   recall    .5 .5 .5 .5  .5  1
    #   precision 1  .5 .5 1/3 .25 .4  -> envelope 1 up to recall .5, then .4
    #   AP = .5 * 1 + .5 * .4 = .7
    # class b, ranked: TP FP TP; 2 counted boxes
    #   recall .5 .5 1, precision 1 .5 2/3 -> AP = .5 * 1 + .5 * 2/3 = 5/6
    #   (with a fallback to B2 it would be TP TP FP -> AP 1.0)
    assert out["per_class"]["a"] == pytest.approx(0.7, abs=1e-6)
    assert out["per_class"]["b"] == pytest.approx(5 / 6, abs=1e-6)
    assert out["per_class"]["c"] is None
    assert out["AP50"] == pytest.approx((0.7 + 5 / 6) / 2, abs=1e-6)


def test_voc_difficult_box_hit_is_neither_tp_nor_fp():
    gt, dets = hand_case()
    without = [d for d in dets if d["score"] != 0.7]  # drop the detection on the difficult box
    assert evaluate_voc(gt, without)["per_class"]["a"] == pytest.approx(evaluate_voc(gt, dets)["per_class"]["a"])
    # counting the difficult box instead makes that detection a TP and changes AP
    counted = gt.replace_annotations([{**a, "ignore": 0, "difficult": 0} for a in gt.annotations])
    assert evaluate_voc(counted, dets)["per_class"]["a"] != pytest.approx(0.7, abs=1e-3)


def test_voc_other_threshold_and_empty_detections():
    gt, dets = hand_case()
    assert set(evaluate_voc(gt, dets, iou_thr=0.75)) == {"AP75", "per_class"}
    empty = evaluate_voc(gt, [])
    assert empty["AP50"] == 0.0 and empty["per_class"] == {"a": 0.0, "b": 0.0, "c": None}


def reference_eval_map(coco: dict, dets: list, iou_thr: float = 0.5) -> dict:
    """A literal, loop-by-loop reading of docs/evaluation.md's VOC AP50 rule (independent of the vectorised code)."""
    def iou(a, b):
        ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
        iw = max(min(ax2, bx2) - max(a[0], b[0]), 0.0)
        ih = max(min(ay2, by2) - max(a[1], b[1]), 0.0)
        inter = iw * ih
        return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-6)

    out = {}
    for cat in coco["categories"]:
        cid, scored = cat["id"], []
        n_counted = sum(1 for a in coco["annotations"] if a["category_id"] == cid and not a.get("difficult"))
        for img in coco["images"]:
            g = [a for a in coco["annotations"] if a["image_id"] == img["id"] and a["category_id"] == cid]
            g = [a for a in g if not a.get("difficult")] + [a for a in g if a.get("difficult")]
            ds = sorted([d for d in dets if d["image_id"] == img["id"] and d["category_id"] == cid],
                        key=lambda d: -d["score"])
            taken = set()
            for d in ds:
                best, best_j = -1.0, None
                for j, a in enumerate(g):
                    v = iou(d["bbox"], a["bbox"])
                    if v > best:
                        best, best_j = v, j
                if best_j is not None and best >= iou_thr:
                    if g[best_j].get("difficult"):
                        continue
                    scored.append((d["score"], best_j not in taken))
                    taken.add(best_j)
                else:
                    scored.append((d["score"], False))
        if n_counted == 0:
            out[cat["name"]] = None
            continue
        scored.sort(key=lambda t: -t[0])
        tp = fp = 0
        points = []
        for _, hit in scored:
            tp, fp = tp + hit, fp + (not hit)
            points.append((tp / n_counted, tp / (tp + fp)))
        ap, prev_r = 0.0, 0.0
        for i, (r, _) in enumerate(points):
            if r > prev_r:
                ap += (r - prev_r) * max(p for _, p in points[i:])
                prev_r = r
        out[cat["name"]] = ap
    return out


def test_voc_matches_literal_reference_on_random_case():
    coco, dets = random_problem(seed=8, n_images=120, difficult=True)
    ours = evaluate_voc(DetectionDataset.from_coco(coco), dets)
    ref = reference_eval_map(coco, dets)
    assert ref["class90"] is None and ours["per_class"]["class90"] is None
    for name, ap in ref.items():
        if ap is not None:
            assert ours["per_class"][name] == pytest.approx(ap, abs=1e-5), name
    assert ours["AP50"] == pytest.approx(np.mean([v for v in ref.values() if v is not None]), abs=1e-5)


def test_voc_treats_coco_crowd_as_ignored():
    coco, dets = random_problem(seed=9, n_images=80)
    as_difficult = copy.deepcopy(coco)
    for a in as_difficult["annotations"]:
        a["difficult"] = a.pop("iscrowd")
    a = evaluate_voc(DetectionDataset.from_coco(coco), dets)
    b = evaluate_voc(DetectionDataset.from_coco(as_difficult), dets)
    assert a == b
