"""`benchmark.boxes`, the suite's one numpy box geometry: values computed by hand, the degenerate-box rule, and the
COCO size buckets and area ranges against faster-coco-eval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.boxes import (
    COCO_AREA_RANGES,
    MEDIUM_MAX_AREA,
    SMALL_MAX_AREA,
    area,
    overlaps,
    paired_iou,
    pairwise_iod,
    pairwise_iou,
    relative_error,
    size_bucket,
    size_groups,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def test_conversions_by_hand():
    assert xywh_to_xyxy([1, 2, 3, 4]).tolist() == [[1.0, 2.0, 4.0, 6.0]]
    assert xyxy_to_xywh([[1, 2, 4, 6], [0, 0, 0, 5]]).tolist() == [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 5.0]]
    assert xywh_to_xyxy([]).shape == (0, 4) and xyxy_to_xywh([]).shape == (0, 4)


def test_area_by_hand_degenerate_boxes_have_zero_area():
    # 2 x 3 box; zero width; zero height; inverted in x; inverted in both (w * h would say +4)
    boxes = [[0, 0, 2, 3], [1, 1, 1, 5], [1, 1, 5, 1], [3, 0, 1, 2], [3, 3, 1, 1]]
    assert area(boxes).tolist() == [6.0, 0.0, 0.0, 0.0, 0.0]


def test_iou_iog_iod_by_hand():
    # [0,0,2,2] and [1,1,3,3]: intersection 1, areas 4 and 4, union 7
    iou, iog, iod = overlaps(np.array([0.0, 0, 2, 2]), np.array([1.0, 1, 3, 3]))
    assert (float(iou), float(iog), float(iod)) == pytest.approx((1 / 7, 1 / 4, 1 / 4))
    # D = [0,0,1,1] inside G = [0,0,4,2]: I = 1, D = 1, G = 8 -> IoU 1/8, IoG 1/8, IoD 1
    iou, iog, iod = overlaps(np.array([0.0, 0, 1, 1]), np.array([0.0, 0, 4, 2]))
    assert (float(iou), float(iog), float(iod)) == pytest.approx((1 / 8, 1 / 8, 1.0))
    # touching edges: no overlap
    assert paired_iou([[0, 0, 1, 1]], [[1, 0, 2, 1]]).tolist() == [0.0]


def test_pairwise_matrix_by_hand():
    a = [[0, 0, 2, 2], [10, 10, 11, 11]]
    b = [[1, 1, 3, 3], [0, 0, 2, 2], [0, 0, 1, 1]]
    got = pairwise_iou(a, b)
    assert got.shape == (2, 3)
    assert got.ravel().tolist() == pytest.approx([1 / 7, 1.0, 1 / 4, 0.0, 0.0, 0.0])
    assert pairwise_iod([[0, 0, 1, 1]], [[0, 0, 4, 2]]).tolist() == [[1.0]]
    assert pairwise_iou(np.zeros((0, 4)), b).shape == (0, 3)


@pytest.mark.parametrize(("a", "b", "want"), [
    ([1, 1, 1, 5], [1, 1, 1, 5], 1.0),  # the same zero-width box: identical boxes overlap fully
    ([2, 3, 2, 3], [2, 3, 2, 3], 1.0),  # the same point
    ([3, 3, 1, 1], [3, 3, 1, 1], 1.0),  # the same inverted box
    ([1, 1, 1, 5], [1, 2, 1, 4], 0.0),  # two different zero-area boxes (one on the other): union 0 -> 0
    ([1, 1, 1, 5], [0, 0, 4, 4], 0.0),  # zero-area box inside a real one: intersection 0
    ([0, 0, 0, 0], [5, 5, 5, 5], 0.0),
    ([0, 0, math.nan, 2], [0, 0, math.nan, 2], 0.0),  # NaN is never "identical" and never gives NaN
])
def test_the_degenerate_box_rule(a, b, want):
    ratios = overlaps(np.array(a, float), np.array(b, float))
    assert [float(r) for r in ratios] == [want, want, want]
    assert paired_iou([a], [b]).tolist() == [want]
    assert pairwise_iou([a], [b]).tolist() == [[want]]


def test_against_faster_coco_eval_iou_and_crowd_iou_and_where_the_rules_differ():
    """Positive-area boxes: the same IoU and crowd IoU (IoD) as COCOeval's `maskApi.bbIou`. Two identical zero-area
    boxes: COCOeval says 0, this module 1 (the documented difference)."""
    from faster_coco_eval.core import mask

    rng = np.random.default_rng(0)
    d = np.column_stack([rng.uniform(0, 50, (40, 2)), rng.uniform(1, 30, (40, 2))])  # xywh
    g = np.column_stack([rng.uniform(0, 50, (30, 2)), rng.uniform(1, 30, (30, 2))])
    dx, gx = xywh_to_xyxy(d), xywh_to_xyxy(g)
    np.testing.assert_allclose(pairwise_iou(dx, gx), mask.iou(d, g, [0] * len(g)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pairwise_iod(dx, gx), mask.iou(d, g, [1] * len(g)), rtol=0, atol=1e-12)
    line = np.array([[1.0, 1.0, 0.0, 4.0]])
    assert mask.iou(line, line, [0]).tolist() == [[0.0]]
    assert pairwise_iou(xywh_to_xyxy(line), xywh_to_xyxy(line)).tolist() == [[1.0]]


def test_relative_error_by_hand():
    """Reference [0, 0, 10, 20] (centre 5, 10). A box [1, -2, 13, 18]: centre (7, 8), 12 x 20 -> x +2/10, y -2/20,
    w log(12/10), h 0. A degenerate box (or reference) has no log ratio: invalid, errors 0."""
    err, valid = relative_error([[1, -2, 13, 18], [0, 0, 0, 5], [3, 3, 4, 4]], [[0, 0, 10, 20], [0, 0, 1, 1],
                                                                            [0, 0, 0, 0]])
    assert valid.tolist() == [True, False, False]
    np.testing.assert_allclose(err[0], [0.2, -0.1, math.log(1.2), 0.0], atol=1e-12)
    assert err[1:].tolist() == [[0.0] * 4] * 2
    # the same box: no error; a box twice as large about the same centre: log 2 on both sizes only
    err, _ = relative_error([[0, 0, 10, 20], [-5, -10, 15, 30]], [[0, 0, 10, 20]] * 2)
    np.testing.assert_allclose(err, [[0, 0, 0, 0], [0, 0, math.log(2), math.log(2)]], atol=1e-12)


def test_size_buckets_pin_cocos_boundaries():
    """COCO: small < 32^2 <= medium < 96^2 <= large."""
    areas = [0.0, np.nextafter(1024.0, 0), 1024.0, np.nextafter(9216.0, 0), 9216.0, 1e6, math.nan]
    assert SMALL_MAX_AREA == 1024.0 and MEDIUM_MAX_AREA == 9216.0
    assert size_bucket(areas).tolist() == ["small", "small", "medium", "medium", "large", "large", None]
    groups = size_groups(areas)
    assert groups["all"].tolist() == [True] * 7
    for name in ("small", "medium", "large"):
        assert groups[name].tolist() == [b == name for b in size_bucket(areas).tolist()]


def test_coco_area_ranges_are_faster_coco_evals_and_closed_at_both_ends():
    """The AP ranges are COCOeval's `areaRng`, closed: a box of area exactly 32^2 counts in APs and APm, one of 96^2
    in APm and APl (faster-coco-eval and TIDE agree)."""
    from coco_reference import faster_coco_eval_stats
    from faster_coco_eval.core.cocoeval import Params

    from benchmark.evaluation.tide import decompose_range

    params = Params(iouType="bbox")
    assert {k: list(v) for k, v in COCO_AREA_RANGES.items()} == dict(zip(params.areaRngLbl, params.areaRng))

    boxes = [[0.0, 0.0, 32.0, 32.0], [100.0, 100.0, 96.0, 96.0]]  # areas 1024 and 9216
    gt = {"images": [{"id": 1, "width": 300, "height": 300}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": b[2] * b[3],
                           "iscrowd": 0} for k, b in enumerate(boxes)]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": b, "score": 0.9 - 0.1 * k} for k, b in enumerate(boxes)]
    aps, apm, apl = faster_coco_eval_stats(gt, dets)[3:6]
    assert (aps, apm, apl) == (1.0, 1.0, 1.0)  # half-open ranges would leave APs or APl with no box (-1)
    for size in ("small", "medium", "large"):
        assert decompose_range(gt, dets, size=size)["AP"] == 1.0
    assert size_bucket([1024.0, 9216.0]).tolist() == ["medium", "large"]  # one label per box: the upper range
