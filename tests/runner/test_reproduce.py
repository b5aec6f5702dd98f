"""`bench reproduce TABLE`: the tables file against the leaderboard's paper rows, the cells, the GPU-hours cost model,
the dry run, the sweep handed to the runner, and `bench leaderboard add` putting reproduced rows beside reported ones."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.errors import BenchError
from benchmark.io import write_json
from benchmark.reproduce import (
    cell_specs,
    dry_run_text,
    estimate,
    get_table,
    images_per_epoch,
    load_speed,
    load_tables,
    reported,
    select_methods,
)
from benchmark.runner import store as st
from leaderboard.rows import ENTRIES, load_rows
from methods import METHODS
from noise.spec import NoiseSpec

SPEC = "shapes:train=4,val=2,size=64,seed=0"


def test_every_cell_of_every_table_has_its_paper_row():
    tables, cost = load_tables()
    assert set(tables) == {"voc07-oamil", "voc07-ssddet", "coco-oamil", "coco-ssddet"}
    for t in tables.values():
        paper = reported(t)
        for method, levels in t.methods.items():
            assert method in METHODS  # runnable today
            for lv in levels:
                assert (method, lv) in paper, (t.name, method, lv)
        assert not set(t.methods) & set(t.not_runnable)
        assert set(cost["method_cost"]) >= set(t.methods)
    # the papers' numbers (SSD-Det Tables 1 and 2, OA-MIL README FAQ)
    voc, coco = reported(tables["voc07-ssddet"]), reported(tables["coco-ssddet"])
    assert voc[("ssd_det", 0.4)] == 66.9 and voc[("oa_mil", 0.1)] == 77.4 and voc[("faster_rcnn", 0.0)] == 77.2
    assert coco[("ssd_det", 0.4)] == 27.6 and coco[("ssd_det+retrain", 0.2)] == 34.4
    assert coco[("faster_rcnn", 0.0)] == 37.9 and reported(tables["coco-oamil"])[("oa_mil", 0.0)] == 38.1
    assert tables["coco-ssddet"].test_split == "val2017" and tables["voc07-oamil"].metric == "VOC_AP50"


def test_cells_are_the_tables_rows_with_the_published_noise():
    t, _ = get_table("voc07-ssddet")
    specs = cell_specs(t, t.methods, [0])
    assert [(s.method, s.noise.level) for s in specs] == (
        [("faster_rcnn", lv) for lv in (0.0, 0.1, 0.2, 0.3, 0.4)]
        + [(m, lv) for m in ("oa_mil", "ssd_det") for lv in (0.1, 0.2, 0.3, 0.4)])  # no added baselines
    assert all(s.profile == "paper" and s.dataset == "voc2007" for s in specs)
    noisy = [s for s in specs if s.noise.level > 0]
    assert all((s.noise.rng, s.noise.seed, s.noise.model) == ("oamil-legacy", 45, "uniform") for s in noisy)
    (clean,) = [s for s in specs if s.noise.level == 0]
    assert clean.noise.model == "none"
    two = cell_specs(t, select_methods(t, "ssd_det"), [0, 1])
    assert len(two) == 8 and {s.seed for s in two} == {0, 1}
    with pytest.raises(BenchError, match="retinanet not in table voc07-ssddet"):
        select_methods(t, "ssd_det,retinanet")
    with pytest.raises(BenchError, match="unknown table 'voc07'.*voc07-oamil"):
        get_table("voc07")


def test_bad_tables_file_is_one_line(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("tables:\n  x: {dataset: voc2007}\ncost_model: {}\n")
    with pytest.raises(BenchError, match="table 'x' lacks paper, kind"):
        load_tables(bad)
    bad.write_text("tables: [1\n")
    with pytest.raises(BenchError, match="cannot read the tables file"):
        load_tables(bad)


def test_gpu_hours_follow_the_documented_cost_model(tmp_path):
    t, cost = get_table("voc07-ssddet")
    specs = cell_specs(t, select_methods(t, "faster_rcnn,ssd_det"), [0])
    by = {(c.method, c.level): c for c in estimate(t, specs, cost)}
    # by hand: 5011 images x 12 epochs / (9.52 img/s x 1.5 VOC speed-up / method cost) + 4952 x 0.038 s inference
    fr = (5011 * 12 / (9.52 * 1.5) + 4952 * 0.038) / 3600
    assert by[("faster_rcnn", 0.4)].gpu_hours == pytest.approx(fr) and fr == pytest.approx(1.222, abs=1e-3)
    assert by[("ssd_det", 0.4)].gpu_hours == pytest.approx((5011 * 12 / (9.52 * 1.5 / 3) + 4952 * 0.038) / 3600)
    assert images_per_epoch({"iters_per_epoch": None, "batch_size": 16}, 5011) == 5011
    assert images_per_epoch({"iters_per_epoch": 100, "batch_size": 4}, 5011) == 400
    # measured figures (benchmarks/gpu_check.py JSON; BCCD stands for VOC) replace the anchor where given
    from benchmark.reproduce import _config

    amp = bool(_config("ssd_det", "voc", 0.4)["train"]["amp"])
    path = write_json(tmp_path / "g.json", {"rows": [
        {"dataset": "bccd", "method": "ssd_det", "amp": amp, "images_per_s": 20.0},
        {"dataset": "bccd", "method": "faster_rcnn", "amp": amp, "images_per_s": None}]})
    speed = load_speed(path)
    by = {(c.method, c.level): c for c in estimate(t, specs, cost, speed)}
    assert by[("ssd_det", 0.4)].gpu_hours == pytest.approx((5011 * 12 / 20.0 + 4952 * 0.038) / 3600)
    assert by[("ssd_det", 0.4)].basis.startswith("measured (ssd_det on bccd")
    assert "anchor" in by[("faster_rcnn", 0.4)].basis  # no figure for it: the anchor
    # SSD-Det + re-train is SSD-Det, then a Faster R-CNN: seconds per image add up
    coco, coco_cost = get_table("coco-ssddet")
    amp = bool(_config("ssd_det+retrain", "coco", 0.4)["train"]["amp"])
    speed = load_speed(write_json(tmp_path / "c.json", {"rows": [
        {"dataset": "shapes", "method": m, "amp": amp, "images_per_s": v}
        for m, v in (("ssd_det", 4.0), ("faster_rcnn", 12.0))]}))
    (retrain,) = estimate(coco, [s for s in cell_specs(coco, select_methods(coco, "ssd_det+retrain"), [0])
                                 if s.noise.level == 0.4], coco_cost, speed)
    assert retrain.images_per_s == pytest.approx(3.0) and "ssd_det+faster_rcnn on shapes" in retrain.basis
    with pytest.raises(BenchError, match="not a gpu_check.py result"):
        load_speed(write_json(tmp_path / "x.json", {"a": 1}))


def test_dry_run_lists_cells_reported_numbers_cost_and_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    res = CliRunner().invoke(cli, ["reproduce", "voc07-ssddet", "--dry-run"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "ssd_det      0.4    0     66.9" in out and "faster_rcnn  clean  0     77.2" in out
    assert "13 cells, about 26 GPU-hours" in out and "detectron2 MODEL_ZOO" in out
    assert "not runnable yet" in out and "retinanet: no one-stage detector" in out
    assert "[ ] dataset voc2007" in out and "bench data prepare voc2007" in out
    assert "[ ] weights resnet50 ImageNet: missing" in out and "bench weights fetch resnet50" in out
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    t, cost = get_table("voc07-ssddet")
    text = dry_run_text(t, cell_specs(t, select_methods(t, "oa_mil"), [0]), cost, dataset=str(tmp_path))
    assert f"[x] weights resnet50 ImageNet: present at {ckpt}" in text and f"[x] dataset {tmp_path}" in text
    assert "4 cells" in text
    text = dry_run_text(t, cell_specs(t, select_methods(t, "oa_mil"), [0]), cost, weights=tmp_path / "w.pth")
    assert f"[ ] weights {tmp_path / 'w.pth'}: missing" in text


def test_run_hands_the_cells_to_the_runner(tmp_path, monkeypatch):
    from benchmark.runner import api
    from benchmark.runner.sweep import Summary

    res = CliRunner().invoke(cli, ["reproduce", "voc07-oamil"])  # no data: one line, nothing runs
    assert res.exit_code != 0 and "bench data prepare voc2007" in str(res.exception or res.output)
    seen = {}

    def fake_run_sweep(options, echo=print):
        seen["options"] = options
        return Summary(options.store, [], done=[{}])

    monkeypatch.setattr(api, "run_sweep", fake_run_sweep)
    res = CliRunner().invoke(cli, ["reproduce", "coco-oamil", "--dataset", str(tmp_path), "--out",
                                   str(tmp_path / "store"), "--methods", "oa_mil", "--seeds", "2", "--jobs", "3",
                                   "--offline"])
    assert res.exit_code == 0, res.output
    o = seen["options"]
    t, _ = get_table("coco-oamil")
    assert api.grid(o) == cell_specs(t, {"oa_mil": [0.0, 0.2, 0.4]}, [0, 1], str(tmp_path))
    assert (o.profile, o.noise_rng, o.baselines, o.jobs, o.store, o.offline) == (
        "paper", "oamil-legacy", False, 3, tmp_path / "store", True)
    assert "--dataset-name coco2017 --test-split val2017" in res.output


# ---- `bench leaderboard add` on a reproduce store -----------------------------------------------------------------
def _store_cell(store, spec, name, ap):
    """A done cell as the runner writes it: the config `resolve` makes for `spec` (on a tiny stand-in dataset,
    renamed to the table's dataset), metrics with `ap` as COCO AP and VOC AP50."""
    from benchmark.runner.cells import cell_id, resolve

    cfg = resolve(spec, _store_cell.cache, gpu=True).config
    cfg["dataset"]["name"] = name
    cfg.pop("cell_id")
    cfg["cell_id"] = cell_id(cfg)
    d = store / "cells" / cfg["cell_id"]
    write_json(d / st.CONFIG, cfg)
    write_json(d / st.PREDICTIONS, [])
    write_json(d / st.METRICS, {"coco": {"AP": ap, "AP50": ap + 0.2}, "voc": {"AP50": ap}, "train": {"device": "x"}})
    st.mark_done(d)
    return d


def _entries(tmp_path, dataset):
    root = tmp_path / "entries"
    shutil.copytree(ENTRIES / dataset, root / dataset)
    return root


def test_leaderboard_add_puts_reproduced_rows_beside_the_papers(tmp_path):
    from benchmark.runner.cells import DatasetCache

    _store_cell.cache = DatasetCache(progress=False)
    t, _ = get_table("voc07-ssddet")
    store, entries = tmp_path / "store", _entries(tmp_path, "voc2007")
    cells = [s.__class__(**{**s.__dict__, "dataset": SPEC})
             for s in cell_specs(t, select_methods(t, "faster_rcnn,oa_mil"), [0])]
    ap = {(s.method, s.noise.level): 0.5 + s.noise.level / 10 for s in cells}
    for s in cells:
        _store_cell(store, s, "voc2007", ap[(s.method, s.noise.level)])
    res = CliRunner().invoke(cli, ["leaderboard", "add", str(store), "--entries", str(entries)])  # no options
    assert res.exit_code == 0, res.output
    assert "warning" not in res.stderr and res.stdout.count("wrote ") == len(cells)
    rows = {(r["method"], r["noise"]["level"]): r for _, r in load_rows(entries)}
    for (method, level), value in ap.items():
        row = rows[(method, level)]
        assert row["reported"] is not None and row["reproduced"]["metrics"]["VOC_AP50"]["mean"] == pytest.approx(
            value * 100)
        assert row["noise"]["rng"] == ("none" if level == 0 else "oamil-legacy")
    assert not any("[" in m for m, _ in rows)  # every reproduced row found its paper row
    res = CliRunner().invoke(cli, ["leaderboard", "render", "--entries", str(entries), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "README.md").read_text()
    assert "63.8 / 54.0 (n=1), Δ -9.8 ⚠" in md  # OA-MIL at 40 %: reported / reproduced side by side

    # a default-rng sweep of the same method is another experiment: written apart, never into the paper's row
    numpy = cell_specs(t, select_methods(t, "oa_mil"), [0])[-1].__class__(
        method="oa_mil", dataset=SPEC, noise=NoiseSpec.parse("uniform", level=0.4), seed=0, profile="paper")
    _store_cell(store, numpy, "voc2007", 0.1)
    res = CliRunner().invoke(cli, ["leaderboard", "add", str(store), "--entries", str(entries)])
    assert res.exit_code == 0, res.output
    assert "drew its noise with rng numpy, the row there with oamil-legacy" in res.stderr
    rows = {(r["method"], r["noise"]["level"]): r for _, r in load_rows(entries)}
    assert rows[("oa_mil", 0.4)]["reproduced"]["metrics"]["VOC_AP50"]["mean"] == pytest.approx(54.0)
    apart = rows[("oa_mil [noise rng numpy]", 0.4)]
    assert apart["noise"]["rng"] == "numpy" and apart["reported"] is None
    assert apart["method_name"] == "OA-MIL [noise rng numpy]"
    assert apart["reproduced"]["metrics"]["VOC_AP50"]["mean"] == pytest.approx(10.0)


def test_coco_rows_default_to_the_papers_val2017_split(tmp_path):
    from benchmark.runner.cells import DatasetCache

    _store_cell.cache = DatasetCache(progress=False)
    t, _ = get_table("coco-ssddet")
    store, entries = tmp_path / "store", _entries(tmp_path, "coco2017")
    (spec,) = [s for s in cell_specs(t, select_methods(t, "ssd_det"), [0]) if s.noise.level == 0.4]
    _store_cell(store, spec.__class__(**{**spec.__dict__, "dataset": SPEC}), "coco2017", 0.25)
    res = CliRunner().invoke(cli, ["leaderboard", "add", str(store), "--entries", str(entries)])
    assert res.exit_code == 0, res.output
    (path,) = [line.split(" ", 1)[1] for line in res.stdout.splitlines()]
    assert path.endswith("coco2017/uniform-0.4/ssd_det--R50-FPN.json")
    row = {r["method"]: r for p, r in load_rows(entries) if str(p) == path}["ssd_det"]
    assert row["test_split"] == "val2017" and row["reported"]["metrics"]["AP"] == 27.6
    assert row["reproduced"]["metrics"]["AP"]["mean"] == pytest.approx(25.0)
