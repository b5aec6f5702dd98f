"""`bench run --external`: detections made elsewhere become ordinary cells of the results store (noise manifest,
predictions, metrics, DONE), are skipped when unchanged, redone when their file changes, and reach the results
table; bad input is a one-line error."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from benchmark import results
from benchmark.cli import cli as bench
from benchmark.datasets import load
from benchmark.errors import BenchError
from benchmark.evaluation import evaluate, load_detections
from benchmark.io import read_json, write_json
from benchmark.runner import store as st
from benchmark.runner.api import SweepOptions, dry_run, run_sweep
from noise import make_noisy

TINY = "shapes:train=16,val=8,size=64,seed=3"


def detections(test, jitter: float, seed: int = 0) -> list[dict]:
    """The test boxes, jittered by `jitter` x their size (0: perfect detections)."""
    rng = np.random.default_rng(seed)
    out = []
    for a in test.annotations:
        x, y, w, h = a["bbox"]
        dx, dy = rng.uniform(-jitter, jitter, 2) * (w, h)
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [x + dx, y + dy, w, h],
                    "score": 0.9})
    return out


def options(store, files, **kw) -> SweepOptions:
    base = dict(methods="mmdet_retina", noise="0.4", seeds="1", datasets=[TINY], store=store, external=files,
                report=False, progress=False)
    base.update(kw)
    return SweepOptions(**base)


@pytest.fixture(scope="module")
def splits():
    return load(TINY)


def test_external_detections_become_a_done_cell(tmp_path, splits):
    test = splits["test"]
    dets = tmp_path / "retina.bbox.json"
    write_json(dets, detections(test, 0.15))
    summary = run_sweep(options(tmp_path / "store", [str(dets)]), echo=lambda s: None)
    assert summary.counts()["done"] == 1, summary.failed
    (cell,) = summary.cells
    d = tmp_path / "store" / "cells" / cell.id
    assert st.cell_status(d) == st.DONE_S and not (d / st.TRAIN_DIR).exists()  # nothing was trained
    df = results.load(tmp_path / "store")
    (row,) = df.to_dict("records")
    assert row["method"] == "mmdet_retina" and row["profile"] == "external" and row["noise_level"] == 0.4
    expected = evaluate(test, load_detections(dets, test))["coco"]["AP"]
    assert row["AP"] == pytest.approx(expected) and 0 < row["AP"] < 1
    # the cell holds the noisy file that run should have trained on: the one `bench noise make` writes
    manifest = read_json(d / st.NOISE_DIR / "manifest.json")
    assert manifest["output"]["sha256"] == make_noisy(splits["train"], "uniform", 0.4, seed=0).sha256
    assert read_json(d / st.CONFIG)["external"]["file"] == "retina.bbox.json"
    from reports import build_report  # reports read the store: an external cell is one more method there

    page = build_report(tmp_path / "store", tmp_path / "report", progress=False)
    assert "mmdet_retina" in page.read_text()


def test_unchanged_file_is_skipped_changed_file_redoes_the_same_cell(tmp_path, splits):
    test = splits["test"]
    dets = tmp_path / "dets.json"
    write_json(dets, detections(test, 0.0))
    store = tmp_path / "store"
    first = run_sweep(options(store, [str(dets)]), echo=lambda s: None)
    assert results.load(store)["AP"].tolist() == [pytest.approx(1.0)]
    again = run_sweep(options(store, [str(dets)]), echo=lambda s: None)
    assert again.counts()["skipped"] == 1 and again.counts()["done"] == 0
    write_json(dets, detections(test, 0.3, seed=1))  # a corrected export of the same run
    # --overwrite never leaves the done cell as it is: its config once named the new file, its metrics the old one's
    kept = run_sweep(options(store, [str(dets)], overwrite="never"), echo=lambda s: None)
    assert kept.counts()["skipped"] == 1 and kept.counts()["done"] == 0
    cell_dir = store / "cells" / first.cells[0].id
    assert st.cell_status(cell_dir) == st.DONE_S and "redo" not in dry_run(options(store, [str(dets)],
                                                                                    overwrite="never"))
    assert results.load(store)["AP"].tolist() == [pytest.approx(1.0)]
    assert "redo" in dry_run(options(store, [str(dets)]))
    redo = run_sweep(options(store, [str(dets)]), echo=lambda s: None)
    assert redo.counts()["done"] == 1 and redo.cells[0].id == first.cells[0].id
    (ap,) = results.load(store)["AP"].tolist()
    assert ap < 0.9  # the new file's score, in the one cell of that run


def test_files_fill_levels_then_seeds(tmp_path, splits):
    test = splits["test"]
    files = []
    for k, jitter in enumerate((0.0, 0.1, 0.2, 0.3)):
        files.append(str(tmp_path / f"d{k}.json"))
        write_json(files[-1], detections(test, jitter, seed=k))
    store = tmp_path / "store"
    summary = run_sweep(options(store, files, noise="0.2,0.4", seeds="2"), echo=lambda s: None)
    assert summary.counts()["done"] == 4
    df = results.load(store)
    by = {(r["noise_level"], r["seed"]): r["AP"] for r in df.to_dict("records")}
    assert by[(0.2, 0)] == pytest.approx(1.0)  # file 0 -> (first level, first seed)
    assert by[(0.2, 0)] > by[(0.4, 1)]


@pytest.mark.parametrize("kw, message", [
    (dict(noise="0.2,0.4"), "1 detections file(s) for 2 cell(s)"),
    (dict(methods="faster_rcnn"), "is a registered method"),
    (dict(methods="a,b"), "exactly one --method"),
    (dict(methods="bad name"), "must be letters, digits"),
    (dict(datasets=[TINY, "shapes-mini"]), "exactly one --dataset"),
])
def test_bad_external_requests_are_clear_errors(tmp_path, splits, kw, message):
    dets = tmp_path / "d.json"
    write_json(dets, detections(splits["test"], 0.0))
    with pytest.raises(BenchError, match=re.escape(message)):
        run_sweep(options(tmp_path / "store", [str(dets)], **kw), echo=lambda s: None)


@pytest.mark.parametrize("read_options, message", [
    ({"classes": ["a", "b"], "category_ids": "dataset", "match_images": "id"}, "--category-ids is 'dataset'"),
    ({"category_ids": "index2", "match_images": "id"}, "unknown --category-ids 'index2'"),
    ({"category_ids": "index0", "match_images": "name"}, "unknown image matching 'name'"),
])
def test_contradictory_read_options_fail_the_plan_not_each_cell(tmp_path, splits, read_options, message):
    dets = tmp_path / "d.json"
    write_json(dets, detections(splits["test"], 0.0))
    store = tmp_path / "store"
    with pytest.raises(BenchError, match=re.escape(message)):  # raised while planning: the sweep never starts
        run_sweep(options(store, [str(dets)], external_options=read_options), echo=lambda s: None)
    assert not (store / "cells").exists() or not any((store / "cells").iterdir())


def test_detections_for_another_dataset_fail_the_cell_in_one_line(tmp_path, splits):
    dets = tmp_path / "d.json"
    write_json(dets, [{"image_id": 99999, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.5}])
    summary = run_sweep(options(tmp_path / "store", [str(dets)]), echo=lambda s: None)
    (failed,) = summary.failed
    assert "99999" in failed["error"] and "\n" not in failed["error"]


def test_bench_run_external_cli(tmp_path, splits):
    dets = tmp_path / "retina.bbox.json"
    write_json(dets, detections(splits["test"], 0.1))
    def args(path, store):
        return ["run", "--method", "mmdet_retina", "--noise", "0.4", "-d", TINY, "--external", str(path),
                "--out", str(store), "--no-report", "--no-progress"]

    res = CliRunner().invoke(bench, args(dets, tmp_path / "store"))
    assert res.exit_code == 0, res.output
    assert "1 done" in res.output and "mmdet_retina" in res.output
    missing = CliRunner().invoke(bench, args(tmp_path / "nope.json", tmp_path / "s2"))
    assert isinstance(missing.exception, BenchError) and "detections file not found" in str(missing.exception)


def test_external_corner_boxes_get_bench_evals_note(tmp_path, splits, capfd):
    """Corners [x1, y1, x2, y2] where COCO wants [x, y, w, h] score low without any error: the cell says so on
    stderr, as `bench eval` does; [x, y, w, h] boxes get no note."""
    good = detections(splits["test"], 0.0)
    corners = [{**d, "bbox": [d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3]]}
               for d in good]
    for name, dets in (("good.bbox.json", good), ("corners.bbox.json", corners)):
        write_json(tmp_path / name, dets)
    summary = run_sweep(options(tmp_path / "s1", [str(tmp_path / "good.bbox.json")]), echo=lambda s: None)
    assert summary.counts()["done"] == 1 and "corners" not in capfd.readouterr().err
    summary = run_sweep(options(tmp_path / "s2", [str(tmp_path / "corners.bbox.json")]), echo=lambda s: None)
    err = capfd.readouterr().err
    assert summary.counts()["done"] == 1
    assert "corners.bbox.json: note:" in err and "corners [x1, y1, x2, y2]" in err
