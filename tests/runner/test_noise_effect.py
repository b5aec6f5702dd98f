"""benchmarks/noise_effect.py: its grid is `bench run`'s (same cell ids, run through the runner's API into one store
per dataset), its table is the store's results, and its step cost and refined-box IoU agree with hand computations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import test_runner_dummy  # noqa: F401  (registers the `dummy` method)
from click.testing import CliRunner
from script_kit import load_benchmark
from store_kit import write_cell
from test_runner_dummy import TINY

from benchmark import results
from benchmark.io import read_json
from benchmark.runner import store as st
from benchmark.runner.api import SweepOptions, planned_cells, run_sweep

TESTS = Path(__file__).resolve().parents[1]


ne = load_benchmark("noise_effect")


def _ids(specs, store: Path) -> set[str]:
    o = SweepOptions(methods=[], cells=list(specs), store=store)
    return {p.cell.id for p in planned_cells(o, st.Store(store))}


def _bench_run_ids(store: Path, **kw) -> set[str]:
    """The cell ids `bench run` plans for these options (the same call `bench run --dry-run` makes)."""
    o = SweepOptions(datasets=[TINY], store=store, progress=False, **kw)
    return {p.cell.id for p in planned_cells(o, st.Store(store))}


def test_grid_has_the_cell_ids_of_the_bench_run_commands(tmp_path):
    """The lead's two commands (noisy methods with baselines at 0.1..0.4; the other baselines at 0.4 without) and
    the script's grid with --extra plan the same cells, --set included, so the script finds `bench run`'s cells."""
    sets = ["train.iters_per_epoch=5"]
    specs, dropped = ne.build_grid([TINY], [("faster_rcnn,oa_mil,ssd_det", "0.1..0.4", True),
                                            ("retinanet,sd_locnet,retinanet_clean", "0.4", False)], "0,1,2", "cpu", sets)
    assert dropped == set()
    want = _bench_run_ids(tmp_path, methods="faster_rcnn,oa_mil,ssd_det", noise="0.1..0.4", seeds="0,1,2", sets=sets)
    want |= _bench_run_ids(tmp_path, methods="retinanet,sd_locnet,retinanet_clean", noise="0.4", seeds="0,1,2",
                           sets=sets, baselines=False)
    assert len(want) == 3 * (1 + 4 * 3) + 3 * 3  # oracle + 3 methods x 4 levels, + 2 methods at 0.4 and one oracle
    assert _ids(specs, tmp_path) == want


def test_level_zero_baseline_reuses_the_oracle(tmp_path):
    """faster_rcnn at noise 0 trains what the oracle trains: planned once (the oracle's cell)."""
    specs, dropped = ne.build_grid([TINY], [("faster_rcnn", "0,0.2", True)], "0,1", "cpu")
    assert dropped == {(TINY, 0), (TINY, 1)}
    assert sorted((s.method, s.noise.level) for s in specs if s.seed == 0) == [("clean", 0.0), ("faster_rcnn", 0.2)]
    # a --set scoped to faster_rcnn makes its level-0 run another training: then it is kept
    specs, dropped = ne.build_grid([TINY], [("faster_rcnn", "0,0.2", True)], "0,", "cpu",
                                   ["faster_rcnn:train.lr=0.001"])
    assert dropped == set() and ("faster_rcnn", 0.0) in {(s.method, s.noise.level) for s in specs}


@pytest.fixture
def dummy_workers(tmp_path, monkeypatch):
    log = tmp_path / "dummy-train.log"
    monkeypatch.setenv("NOISYBOX_DUMMY_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return log


def _trained(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_script_runs_its_grid_through_the_runner_and_tables_the_store(tmp_path, dummy_workers):
    out = tmp_path / "out"
    store = out / ne.store_name(TINY)
    # `bench run` fills part of the grid first: the script must find those cells done and train only the rest
    run_sweep(SweepOptions(methods="dummy", noise="0.1,0.2", seeds="0,", datasets=[TINY], baselines=False,
                           store=store, imports=["test_runner_dummy"], report=False, progress=False, jobs=1),
              echo=lambda s: None)
    assert _trained(dummy_workers) == 2
    args = ["--datasets", TINY, "--methods", "dummy", "--levels", "0.1,0.2", "--seeds", "0,1", "--no-baselines",
            "--extra", "dummy:0.3", "--jobs", "1", "--import", "test_runner_dummy", "--out", str(out),
            "--json", str(tmp_path / "ne.json")]
    res = CliRunner().invoke(ne.main, args)
    assert res.exit_code == 0, res.output
    assert _trained(dummy_workers) == 6  # the grid's 2 seeds x 3 levels: 2 by `bench run`, 4 by the script
    doc = read_json(tmp_path / "ne.json")
    assert doc["missing"] == [] and doc["failures"] == [] and doc["stores"] == {TINY: str(store)}
    df = results.load(store)
    assert len(df) == 6 and len(doc["rows"]) == 6
    for s in doc["summary"]:  # every table value is the store's
        cells = df[df["noise_level"] == s["level"]]
        assert s["seeds"] == [0, 1]
        assert s["AP"] == pytest.approx(cells["AP"].mean())
        assert s["AP75_std"] == pytest.approx(cells["AP75"].std(ddof=1))
        assert s["train_s"] == pytest.approx(cells["time_train_s"].mean())
    lines = res.output.splitlines()
    for s in doc["summary"]:
        row = next(line for line in lines if line.startswith(TINY) and f" {s['level']:g} " in line)
        assert f"{100 * s['AP']:5.1f} ± {100 * s['AP_std']:4.1f}" in row

    # --table-only trains nothing and prints the same table; a seed not run is listed as missing
    table = [line for line in lines if line.startswith(TINY)]
    res = CliRunner().invoke(ne.main, [*args, "--table-only"])
    assert res.exit_code == 0, res.output
    assert [line for line in res.output.splitlines() if line.startswith(TINY)] == table
    res = CliRunner().invoke(ne.main, [*args[:7], "0,1,2", *args[8:], "--table-only"])
    assert res.exit_code == 0, res.output
    assert _trained(dummy_workers) == 6
    assert "missing: 3 cell(s) of the grid are not done" in res.output
    assert sum("seed=2" in line and "[missing]" in line for line in res.output.splitlines()) == 3


def _ann(aid: int, noisy: list[float], clean: list[float]) -> dict:
    return {"id": aid, "image_id": 1, "category_id": 1, "bbox": noisy, "true_bbox": clean, "area": 1.0, "iscrowd": 0}


def test_step_cost_refined_iou_and_diagnostics_by_hand(tmp_path):
    store = tmp_path / "store"
    coco = {"AP": 0.4, "AP50": 0.7, "AP75": 0.3}
    # clean [0,0,10,20] vs noisy [0,0,10,10]: IoU 100/200 = 0.5; refined [0,0,10,15]: 150/200 = 0.75
    # clean [10,0,20,20] vs noisy [0,0,20,20]: IoU 200/600 = 1/3; refined = clean: 1
    noisy = [_ann(1, [0, 0, 10, 10], [0, 0, 10, 20]), _ann(2, [0, 0, 20, 20], [10, 0, 20, 20])]
    refined = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 15]},
               {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 0, 20, 20]}]
    cells = [
        write_cell(store, "faster_rcnn", 0.4, 0, coco, train={"iterations": 100, "train_seconds": 50.0},
                   timing={"train_s": 55.0}, noisy=noisy),  # 0.5 s / iteration
        write_cell(store, "faster_rcnn", 0.4, 1, {**coco, "AP": 0.2}, train={"iterations": 100, "train_seconds": 70.0},
                   timing={"train_s": 75.0}, noisy=noisy),  # 0.7
        write_cell(store, "clean", 0.0, 0, coco, train={"iterations": 200, "train_seconds": 160.0}),  # 0.8
        write_cell(store, "oa_mil", 0.4, 0, coco, train={"iterations": 100, "train_seconds": 90.0,
                                                          "oamil_mean_best_score": 0.3, "oamil_mean_phi": 0.01},
                   noisy=noisy, refined=refined),  # 0.9
    ]
    rows, missing = ne.collect(store, [(c, c, "?") for c in cells] + [("0123456789abcdef", "never run", "missing")],
                               reuse={cells[2]})
    assert missing == [{"cell": "0123456789abcdef", "label": "never run", "status": "missing", "store": str(store)}]
    summary = {(s["method"], s["level"]): s for s in ne.summarise(rows)}
    fr, oa = summary[("faster_rcnn", 0.4)], summary[("oa_mil", 0.4)]
    assert fr["AP"] == pytest.approx(0.3) and fr["AP_std"] == pytest.approx(0.1414, abs=1e-4)  # 0.4, 0.2
    assert fr["train_s"] == pytest.approx(65.0)
    # faster_rcnn's step: the mean of its rows' (0.6) and the oracle's (0.8); the oracle's runs standing for
    # faster_rcnn at noise 0 are not counted twice
    assert summary[("faster_rcnn", 0.0)]["step_s"] == pytest.approx(0.8)
    assert summary[("faster_rcnn", 0.0)]["AP"] == summary[("clean", None)]["AP"]
    assert oa["step_vs_faster_rcnn"] == pytest.approx(0.9 / 0.7)
    assert fr["step_vs_faster_rcnn"] == pytest.approx(0.6 / 0.7)
    assert oa["noisy_iou"] == pytest.approx((0.5 + 1 / 3) / 2, abs=1e-4)
    assert oa["refined_iou"] == pytest.approx((0.75 + 1) / 2, abs=1e-4)
    assert (oa["oamil_mean_best_score"], oa["oamil_mean_phi"]) == (0.3, 0.01)
    assert fr["refined_iou"] != fr["refined_iou"]  # no refined boxes: NaN, shown blank
    table = ne.format_table(ne.summarise(rows))
    assert "0.417 -> 0.875  best-instance score 0.30 (φ 0.010)" in table
    assert " 1.29x" in table and " 0.86x" in table
    assert ne.effect_lines(ne.summarise(rows))[0] == "toy: faster_rcnn at noise 0.4 keeps 75% of the oracle's AP and " \
                                                     "100% of its AP75"
