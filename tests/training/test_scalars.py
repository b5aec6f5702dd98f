"""Training curves: `scalars.csv` rows per logged iteration, exact on resume, and the optional trackers."""

import math

import pytest
from engine_kit import stopping_at_call

from benchmark.config import resolve_config
from benchmark.engine import fit
from benchmark.errors import BenchError
from benchmark.scalars import read_scalars
from methods import get_method
from methods._core.toy import make_toy_dataset

TINY = {"train.epochs": 2, "train.iters_per_epoch": 3, "train.batch_size": 2, "train.steps": [1],
        "train.warmup_iters": 1, "train.log_every": 1, "model.widths": [8, 8, 16, 16], "model.pretrained": False,
        "model.fpn_channels": 16, "model.representation_size": 32, "model.box_batch_size_per_image": 16}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), num_images=6, size=(64, 48), noise=0.2)


def cfg_for(name, **extra):
    return resolve_config(get_method(name), "cpu", "coco", 0.4, {**TINY, **extra})


def without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_every_logged_iteration_is_a_row_whose_epoch_means_are_the_history(toy, tmp_path):
    result = fit(get_method("oa_mil"), toy, cfg_for("oa_mil"), tmp_path / "run", diagnostics=toy, progress=False)
    rows = read_scalars(tmp_path / "run" / "scalars.csv")
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["epoch"] for r in rows] == pytest.approx([1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2], abs=1e-4)
    for key in ("loss", "loss_classifier", "loss_box_reg", "loss_objectness", "lr", "oamil_mean_best_score"):
        assert all(math.isfinite(r[key]) for r in rows), key
    for epoch, hist in enumerate(result.metrics["history"]):  # the csv is the per-iteration view of the same losses
        mean = sum(r["loss"] for r in rows[3 * epoch:3 * epoch + 3]) / 3
        assert mean == pytest.approx(hist["loss"], abs=1e-4)
    assert rows[-1]["seconds"] >= rows[0]["seconds"] > 0


def test_a_resumed_run_writes_the_rows_of_an_uninterrupted_one(toy, tmp_path):
    cfg = cfg_for("faster_rcnn", **{"train.checkpoint_minutes": 1e-9})
    method = get_method("faster_rcnn")
    fit(method, toy, cfg, tmp_path / "full", progress=False)

    with pytest.raises(KeyboardInterrupt):
        fit(stopping_at_call(method, 5), toy, cfg, tmp_path / "split", progress=False)
    csv_path = tmp_path / "split" / "scalars.csv"
    with open(csv_path, "a") as fh:  # a row written after the last checkpoint, and one cut short by the kill
        fh.write("5,1.6667,0.001,9.9," + ",".join(["7.0"] * 5) + "\n6,2.0")
    fit(method, toy, cfg, tmp_path / "split", progress=False)
    full, resumed = read_scalars(tmp_path / "full" / "scalars.csv"), read_scalars(csv_path)
    assert len(full) == 6 and without_seconds(resumed) == without_seconds(full)


def test_tensorboard_gets_the_same_scalars(toy, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fit(get_method("faster_rcnn"), toy, cfg_for("faster_rcnn", **{"train.loggers": ["csv", "tensorboard"]}),
        tmp_path / "run", progress=False)
    rows = read_scalars(tmp_path / "run" / "scalars.csv")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    got = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in got] == [1, 2, 3, 4, 5, 6]
    assert [v for _, v in got] == pytest.approx([r["loss"] for r in rows], rel=1e-4)


def test_wandb_offline_makes_one_run_per_cell_grouped_by_store(toy, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_RUN_GROUP", raising=False)
    workdir = tmp_path / "mystore" / "cells" / "abc123" / "train"
    fit(get_method("faster_rcnn"), toy, cfg_for("faster_rcnn", **{"train.loggers": ["csv", "wandb"]}), workdir,
        progress=False)
    runs = list((workdir / "wandb").glob("offline-run-*-abc123"))
    assert len(runs) == 1
    record = (runs[0] / "run-abc123.wandb").read_bytes()  # protobuf records: their strings are stored as is
    assert b"mystore" in record and b"train/loss_classifier" in record and b"train/lr" in record


@pytest.mark.parametrize("value, message", [(["csv", "mlflow"], "unknown logger 'mlflow'"),
                                            (["tensorboard"], "must include csv"), ("csv", "must be a list")])
def test_bad_loggers_are_one_line_errors(value, message):
    with pytest.raises(BenchError, match=message):
        cfg_for("faster_rcnn", **{"train.loggers": value})


def test_loggers_do_not_change_the_experiment():
    from benchmark.config import without_runtime_keys

    a = cfg_for("faster_rcnn")
    b = cfg_for("faster_rcnn", **{"train.loggers": ["csv", "tensorboard"]})
    assert a != b and without_runtime_keys(a) == without_runtime_keys(b)
