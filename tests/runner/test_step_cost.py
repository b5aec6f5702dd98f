"""benchmarks/step_cost.py: every engine-trained method is timed by default, a variant is built with the engine's
hooks at the last epoch, its step updates the weights, and the JSON has one row per variant with faster_rcnn's
ratio exactly 1.0."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from script_kit import load_benchmark

from benchmark.testing import CONTRACT_DATASET, TINY_OVERRIDES

TINY_SETS = [f"{k}={json.dumps(v)}" for k, v in TINY_OVERRIDES.items()]


sc = load_benchmark("step_cost")


def test_default_variants_are_every_engine_trained_method_with_faster_rcnn_first():
    names = sc.default_variants()
    assert names[0] == "faster_rcnn"
    assert set(names) >= {"faster_rcnn", "clean", "oa_mil", "ssd_det", "kl_loss", "retinanet", "retinanet_clean",
                          "free_anchor", "co_teaching", "sd_locnet", "disco"}
    assert not set(names) & {"mmdet", "ssd_det+retrain"}
    assert sc.resolve_variant("ssd_det paper")[0] == "ssd_det"


def test_build_run_sets_the_last_epoch_and_the_step_updates_weights():
    from benchmark.datasets import load
    from noise import make_noisy

    train = make_noisy(load(CONTRACT_DATASET)["train"], "uniform", 0.4, seed=0).dataset
    run = sc.build_run("oa_mil", train, "coco", 0.4, "cpu", dict(TINY_OVERRIDES))
    head = run["model"].roi_heads
    assert (run["epoch"], head.epoch, head.num_epochs) == (run["cfg"]["train"]["epochs"] - 1,) * 2 + (
        run["cfg"]["train"]["epochs"],)
    assert head.oais_active  # OA-MIL's box correction is part of the timed step
    before = [p.detach().clone() for p in run["params"]]
    dt = sc.train_step(run, 0)
    assert dt > 0 and len(run["objects"]) == 1
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, run["params"]))


def test_cli_writes_one_row_per_variant_with_faster_rcnn_at_exactly_one(tmp_path):
    out = tmp_path / "step_cost.json"
    sets = [a for kv in TINY_SETS for a in ("--set", kv)]
    threads = torch.get_num_threads()
    try:
        res = CliRunner().invoke(sc.main, ["--dataset", CONTRACT_DATASET, "--steps", "2", "--warmup", "0",
                                           "--variants", "faster_rcnn,retinanet", "--out", str(out), *sets])
    finally:
        torch.set_num_threads(threads)  # the script sets the process's threads; later tests keep theirs
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert [r["variant"] for r in data["rows"]] == ["faster_rcnn", "retinanet"]
    rows = {r["variant"]: r for r in data["rows"]}
    assert rows["faster_rcnn"]["ratio_vs_faster_rcnn"] == 1.0
    assert rows["retinanet"]["detector"] == "one_stage" and rows["retinanet"]["rois_per_img"] is None
    expected = round(rows["retinanet"]["median_s"] / rows["faster_rcnn"]["median_s"], 2)
    assert rows["retinanet"]["ratio_vs_faster_rcnn"] == pytest.approx(expected, rel=0.01, abs=0.011)  # rounded medians
    assert rows["faster_rcnn"]["relative_cost_hint"] == 1.0
    assert data["threads"] == 1 and data["steps"] == 2 and data["dataset"] == CONTRACT_DATASET
    assert data["overrides"]["train.batch_size"] == TINY_OVERRIDES["train.batch_size"]
    assert all((r["epoch"], r["epochs"]) == (1, 2) for r in data["rows"])  # hooks at the last of the 2 epochs
    assert "faster_rcnn" in res.output and "retinanet" in res.output


def test_cli_rejects_an_unknown_variant_in_one_line(tmp_path):
    res = CliRunner().invoke(sc.main, ["--variants", "faster_rcnn,nope", "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "unknown variant 'nope'" in res.output
    assert not (tmp_path / "x.json").exists()
