"""Property: perfect detections score 1.0 wherever a metric is defined, and None (printed `–`, NaN in the results
table) where it is not, for COCO AP (faster-coco-eval) and VOC AP50 (mmdet `eval_map` rule).

"Perfect": one detection per counted (not ignored) ground-truth box, exactly on it. Boxes are whole pixels, and no
two boxes of one class in one image are equal: VOC's rule has no fallback, so a second detection of a duplicated
box would be a false positive there (mmdet's behaviour, pinned in test_evaluation.py), not a perfect score.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from property_strategies import SETTINGS, datasets

from benchmark.evaluation import evaluate
from benchmark.evaluation.coco import class_names

COCO_AREAS = {"APs": (0, 32**2), "APm": (32**2, 96**2), "APl": (96**2, 1e10)}  # COCO's area ranges, both ends in


def _perfect(ds, scores) -> list[dict]:
    counted = [a for a in ds.annotations if not a["ignore"]]
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": s}
            for a, s in zip(counted, scores)]


@SETTINGS
@given(datasets(integer=True, unique_boxes=True, max_boxes=8), st.lists(st.floats(0.01, 1.0), min_size=40,
                                                                       max_size=40))
def test_perfect_detections_score_one_where_defined_and_none_elsewhere(ds, scores):
    scores = (scores * 10)[: len(ds.annotations)]
    out = evaluate(ds, _perfect(ds, scores))
    counted = [a for a in ds.annotations if not a["ignore"]]
    names = dict(zip(sorted(c["id"] for c in ds.categories), class_names(ds)))
    has_counted = {names[a["category_id"]] for a in counted}

    coco, voc = out["coco"], out["voc"]
    for name in names.values():
        want = 1.0 if name in has_counted else None
        assert coco["per_class"][name] == want, (name, coco["per_class"])
        assert voc["per_class"][name] == want, (name, voc["per_class"])
    want = 1.0 if counted else None
    assert voc["AP50"] == want and coco["AP"] == want and coco["AP50"] == want and coco["AR100"] == want
    for key, (lo, hi) in COCO_AREAS.items():
        in_range = any(lo <= a["area"] <= hi for a in counted)
        assert coco[key] == (1.0 if in_range else None), (key, coco[key])


@SETTINGS
@given(datasets(integer=True, unique_boxes=True, max_boxes=8))
def test_no_detections_score_zero_where_defined(ds):
    out = evaluate(ds, [])
    counted = [a for a in ds.annotations if not a["ignore"]]
    want = 0.0 if counted else None
    assert out["voc"]["AP50"] == want and out["coco"]["AP"] == want


DET_VALUES = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=4)
              | st.lists(st.floats() | st.integers(-5, 5) | st.none(), max_size=5)
              | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@SETTINGS
@given(datasets(integer=True, unique_boxes=True, max_boxes=4), st.data())
def test_malformed_detections_raise_only_bench_errors(ds, data):
    """A detections list with one field of one detection replaced by any value (or removed), or the whole list
    replaced: scored, or refused with one line."""
    from benchmark.errors import BenchError

    dets = _perfect(ds, [0.5] * len(ds.annotations)) or [{"image_id": ds.images[0]["id"],
                                                            "category_id": ds.categories[0]["id"],
                                                            "bbox": [0, 0, 2, 2], "score": 0.5}]
    how = data.draw(st.sampled_from(["set", "set", "delete", "whole", "item"]), label="mutation")
    if how == "whole":
        dets = data.draw(DET_VALUES, label="detections")
    else:
        i = data.draw(st.integers(0, len(dets) - 1), label="index")
        if how == "item":
            dets[i] = data.draw(DET_VALUES, label="detection")
        else:
            key = data.draw(st.sampled_from(["image_id", "category_id", "bbox", "score"]), label="key")
            if how == "delete":
                del dets[i][key]
            else:
                dets[i][key] = data.draw(DET_VALUES, label="value")
    try:
        evaluate(ds, dets)
    except BenchError as exc:
        assert "\n" not in str(exc)
