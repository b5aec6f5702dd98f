"""The loader's validated columns handed to the noise step (`load_coco(keep_columns=True)`) must give exactly what
reading the annotation dicts gives: the same arrays, the same noisy bytes; and they must never be used for lists
they do not describe."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from datasets_kit import coco_dict, make_coco

from benchmark.datasets import load_coco
from noise import make_noisy
from noise.boxset import _read_columns, extract


def _messy_multi_image() -> dict:
    """Three images; clipped, dropped (outside, zero, inverted, unknown image / category), crowd, difficult,
    `ignore`, missing and given areas, integer and float coordinates, spread over images out of order."""
    data = coco_dict()  # images 10 (60x40), 11 (50x50), 12 (30x20); categories 3, 7
    rows = [(12, 3, [1, 2, 3, 4]), (10, 7, [-5, 30, 20, 20]), (11, 3, [0, 0, 50.0000001, 50]),
            (10, 3, [70, 50, 10, 10]), (11, 7, [5, 4, 0, 10]), (12, 7, [5, 4, 10, -3]), (99, 3, [1, 1, 2, 2]),
            (10, 9, [1, 1, 2, 2]), (12, 7, [1.5, 2.5, 3.25, 4]), (11, 3, [20, 25, 40, 40]),
            (10, 3, [2, 2, 5, 5])]
    anns = [{"id": 100 + k, "image_id": im, "category_id": c, "bbox": b} for k, (im, c, b) in enumerate(rows)]
    for k, a in enumerate(anns):
        if k % 3 == 0:
            a["area"] = 7.5 * (k + 1)
    anns[0]["iscrowd"], anns[8]["difficult"], anns[10]["ignore"] = 1, 1, 1
    data["annotations"] += anns
    return data


@pytest.fixture()
def messy(tmp_path):
    return make_coco(tmp_path, _messy_multi_image())


def test_loaded_columns_equal_the_columns_read_from_the_dicts(messy):
    ds = load_coco(messy, keep_columns=True)
    cols = ds.loaded_columns
    assert cols is not None and cols.describe(ds.annotations, ds.images)
    assert ds.info["skipped"] and ds.info["fixed"]  # the fixture really drops and clips boxes
    xywh, image, category, ignored, area, _ = _read_columns(ds, ds.annotations, None)
    np.testing.assert_array_equal(cols.xywh, xywh)
    np.testing.assert_array_equal(cols.image_row, image)
    np.testing.assert_array_equal(cols.category_id, category)
    np.testing.assert_array_equal(cols.ignored, ignored)
    np.testing.assert_array_equal(cols.area, area)
    assert ignored.sum() == 4  # the coco_dict crowd box, and the crowd, difficult and ignore rows added here
    np.testing.assert_array_equal(cols.image_wh, [[im["width"], im["height"]] for im in ds.images])


@pytest.mark.parametrize("model, rng, params", [
    ("uniform", "numpy", {}), ("uniform", "oamil-legacy", {}), ("gaussian", "numpy", {}),
    ("missing", "numpy", {}), ("bogus", "numpy", {}), ("class_flip", "numpy", {}),
])
def test_noise_from_loaded_columns_is_byte_identical(messy, model, rng, params):
    with_cols = load_coco(messy, keep_columns=True)
    plain = load_coco(messy)
    assert with_cols.loaded_columns is not None and plain.loaded_columns is None
    a = make_noisy(with_cols, model, 0.3, seed=4, rng=rng, **params)
    b = make_noisy(plain, model, 0.3, seed=4, rng=rng, **params)
    assert a.payload == b.payload and a.manifest == b.manifest


def test_stale_columns_are_not_used(messy):
    ds = load_coco(messy, keep_columns=True)
    edited = [dict(a) for a in ds.annotations]
    edited[0]["bbox"] = [3.0, 3.0, 4.0, 4.0]
    stale = dataclasses.replace(ds, annotations=edited)  # replace keeps the field: the guard must catch it
    assert stale.loaded_columns is ds.loaded_columns
    np.testing.assert_array_equal(extract(stale).source_xywh[0], [3.0, 3.0, 4.0, 4.0])
    assert not np.array_equal(ds.loaded_columns.xywh[0], [3.0, 3.0, 4.0, 4.0])
    fewer = dataclasses.replace(ds, annotations=ds.annotations[:-1])
    assert len(extract(fewer).source_xywh) == len(ds.annotations) - 1


def test_derived_datasets_drop_the_columns(messy):
    ds = load_coco(messy, keep_columns=True)
    sub = ds.subset([im["id"] for im in ds.images[:2]])
    assert sub.loaded_columns is None


def test_no_columns_when_the_loader_could_not_read_them_as_numbers(tmp_path):
    data = coco_dict()
    for im in data["images"]:
        im["id"] += 2 ** 63  # valid COCO ids beyond int64: the column check cannot vectorise them
    for a in data["annotations"]:
        a["image_id"] += 2 ** 63
    ds = load_coco(make_coco(tmp_path, data), keep_columns=True)
    assert ds.loaded_columns is None and len(ds.annotations) == 4
    bs = extract(ds)
    np.testing.assert_array_equal(bs.image, [0, 0, 1, 1])
