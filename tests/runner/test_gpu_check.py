"""benchmarks/gpu_check.py: the targets' ratios and the argument lists (fast), and a 2-iteration CPU run (slow)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from script_kit import load_benchmark

from benchmark.io import read_json

gc = load_benchmark("gpu_check")


def _row(method, step, amp=False, dataset="shapes"):
    return {"dataset": dataset, "method": method, "amp": amp, "median_step_s": step}


def test_ratios_compare_each_target_with_its_reference_at_the_same_amp_and_dataset():
    rows = gc.ratios([_row("torchvision", 0.20), _row("faster_rcnn", 0.21), _row("ssd_det", 0.70),
                      _row("oa_mil", 0.26), _row("torchvision", 0.10, amp=True), _row("faster_rcnn", 0.12, amp=True),
                      _row("ssd_det", 0.30, amp=True), _row("faster_rcnn", 0.5, dataset="bccd")])
    by = {(r["dataset"], r["method"], r["amp"]): r for r in rows}
    fr = by[("shapes", "faster_rcnn", False)]
    assert (fr["ratio"], fr["ratio_to"], fr["target"], fr["ok"]) == (1.05, "torchvision", 1.1, True)  # 0.21 / 0.20
    ssd = by[("shapes", "ssd_det", False)]
    assert (ssd["ratio"], ssd["ratio_to"], ssd["target"], ssd["ok"]) == (3.333, "faster_rcnn", 3.0, False)
    assert by[("shapes", "faster_rcnn", True)]["ratio"] == 1.2 and by[("shapes", "faster_rcnn", True)]["ok"] is False
    assert by[("shapes", "ssd_det", True)]["ratio"] == 2.5 and by[("shapes", "ssd_det", True)]["ok"] is True
    oa = by[("shapes", "oa_mil", False)]
    assert (oa["ratio"], oa["ratio_to"], oa["target"], oa["ok"]) == (1.3, "torchvision", None, None)  # shown, no bound
    alone = by[("bccd", "faster_rcnn", False)]  # no torchvision row on that dataset: no ratio, not a failure
    assert alone["ratio"] is None and alone["ok"] is None
    assert by[("shapes", "torchvision", False)]["ratio"] is None


def test_argument_lists_are_checked():
    assert gc.parse_amp("off,on") == [False, True] and gc.parse_amp("on") == [True]
    assert gc.parse_list("ssd_det, faster_rcnn,ssd_det", gc.METHODS, "method") == ["ssd_det", "faster_rcnn"]
    with pytest.raises(click.BadParameter, match="unknown method retinanet"):
        gc.parse_list("faster_rcnn,retinanet", gc.METHODS, "method")
    with pytest.raises(click.BadParameter, match="unknown amp maybe"):
        gc.parse_amp("maybe")
    res = CliRunner().invoke(gc.main, ["--methods", "yolo"])
    assert res.exit_code == 2 and "unknown method yolo" in res.output


@pytest.mark.slow
@pytest.mark.timeout(2400)  # five R50-FPN variants at 1333x800 on a shared CPU: minutes per step under load
def test_two_iterations_on_cpu_write_the_table_and_json(tmp_path):
    out = tmp_path / "g.json"
    res = CliRunner().invoke(gc.main, ["--iters", "2", "--dataset", "shapes:train=4,val=2,size=128,seed=0",
                                       "--batch", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = read_json(out)
    assert data["device"] == "cpu" and data["iters"] == 2 and data["warmup"] == 0
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"faster_rcnn", "oa_mil", "ssd_det", "clean", "torchvision"}
    for r in rows.values():
        assert r["amp"] is False and r["iters"] == 2 and r["images_per_s"] > 0 and r["peak_gib"] is None
        assert (r["min_size"], r["max_size"], r["rois"]) == (800, 1333, 512)  # the paper recipe's sizes
    assert rows["faster_rcnn"]["ratio_to"] == "torchvision" and rows["ssd_det"]["ratio_to"] == "faster_rcnn"
    assert rows["faster_rcnn"]["target"] == 1.1 and rows["faster_rcnn"]["ok"] is None  # GPU targets, CPU figures
    assert "img/s" in res.output and "not comparable with the targets" in res.output
