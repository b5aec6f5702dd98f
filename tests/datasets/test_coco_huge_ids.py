"""COCO ids beyond 64 bits: JSON parsers read them as floats, so the error must say "outside the 64-bit integer
range", not "must be an integer, got 1.8446744073709552e+19"; ids that fit (up to 2**64 - 1) still load."""

import json
import re

import orjson
import pytest

from benchmark.cli import main
from benchmark.datasets.coco import load_coco
from benchmark.errors import BenchError

HUGE = 2 ** 64  # the smallest integer orjson reads as a float
NEG = -2 ** 63 - 1


def _write(tmp_path, image_id=1, category_id=1, ann_ids=(1,)):
    coco = {"images": [{"id": image_id, "file_name": "a.jpg", "width": 10, "height": 10}],
            "annotations": [{"id": a, "image_id": image_id, "category_id": category_id, "bbox": [1, 1, 2, 2]}
                            for a in ann_ids],
            "categories": [{"id": category_id, "name": "x"}]}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(coco))  # the stdlib writes integers of any size
    return path


def test_what_the_parser_gives():
    assert orjson.loads(str(HUGE).encode()) == float(HUGE) and type(orjson.loads(str(HUGE).encode())) is float
    assert orjson.loads(str(HUGE - 1).encode()) == HUGE - 1  # u64 max stays an int


@pytest.mark.parametrize("where, kwargs", [
    ("annotations[0]", {"ann_ids": (HUGE,)}),
    ("annotations[1]", {"ann_ids": (1, HUGE, 3)}),
    ("annotations[0]", {"ann_ids": (NEG,)}),
    ("images[0]", {"image_id": HUGE}),
    ("categories[0]", {"category_id": HUGE}),
])
def test_ids_beyond_64_bits_say_so(tmp_path, where, kwargs):
    path = _write(tmp_path, **kwargs)
    with pytest.raises(BenchError, match=re.escape(where) + r": id \S+ is outside the 64-bit integer range") as exc:
        load_coco(path)
    assert "must be an integer, got" not in str(exc.value) and str(path) in str(exc.value)


def test_ids_that_fit_load_and_a_real_float_keeps_its_message(tmp_path):
    ds = load_coco(_write(tmp_path, image_id=HUGE - 1, ann_ids=(HUGE - 1, 2 ** 63, 5)))
    assert [a["id"] for a in ds.annotations] == [HUGE - 1, 2 ** 63, 5] and ds.images[0]["id"] == HUGE - 1
    path = tmp_path / "f.json"
    path.write_text('{"images": [], "annotations": [{"id": 1.5, "image_id": 1, "category_id": 1, '
                    '"bbox": [1, 1, 2, 2]}], "categories": []}')
    with pytest.raises(BenchError, match=r"annotations\[0\]: id must be an integer, got 1.5"):
        load_coco(path)


def test_bench_data_check_is_one_line_exit_2(tmp_path, capsys):
    path = _write(tmp_path, ann_ids=(HUGE,))
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", str(path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "annotations[0]: id 1.8446744073709552e+19 is outside the 64-bit integer " \
                                         "range" in err and "\n" not in err
