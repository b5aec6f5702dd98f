"""benchmark.results: the tidy table of done cells, and its CSV / Parquet copies (fixture cells, no training)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from benchmark import results
from benchmark.errors import BenchError
from benchmark.io import write_json
from benchmark.runner import store as st
from benchmark.runner.cells import cell_id


def make_cell(store, method="m", level=0.2, seed=0, ap=0.5, done=True, voc=0.7, extra_train=None, dataset="shapes",
              train_sha="a", model=None, device="cpu"):
    config = {"schema": 1, "code_version": "0.1.0", "method": method, "profile": "cpu", "seed": seed,
              "method_config": {"train": {"seed": seed, "data_seed": seed, "device": device},
                                "model": model or {"box_batch_size_per_image": 64}},
              "dataset": {"name": dataset, "kind": "shapes", "train_sha256": train_sha, "test_sha256": "b"},
              "noise": {"model": "none" if level == 0 else "uniform", "level": level, "params": {}, "seed": 0,
                        "rng": "numpy"}}
    config["cell_id"] = cell_id(config)
    d = store / "cells" / config["cell_id"]
    write_json(d / st.CONFIG, config)
    write_json(d / st.PREDICTIONS, [])
    coco = {"AP": ap, "AP50": ap + 0.2, "AP75": ap - 0.1, "APs": None, "APm": 0.3, "APl": 0.4, "AR1": 0.1,
            "AR10": 0.2, "AR100": 0.6, "ARs": None, "ARm": 0.5, "ARl": 0.5, "per_class": {"a": 0.1}}
    write_json(d / st.METRICS, {"coco": coco, "voc": {"AP50": voc, "per_class": {}},
                                "train": {"final_loss": 0.25, "history": [1, 2], "device": "cpu",
                                          **(extra_train or {})},
                                "timing": {"train_s": 12.5, "eval_s": 0.5}})
    if done:
        st.mark_done(d)
    return d


def test_load_one_row_per_done_cell_with_documented_columns(tmp_path):
    a = make_cell(tmp_path, "ssd_det", 0.2, 1, ap=0.41)
    b = make_cell(tmp_path, "faster_rcnn", 0.2, 0, ap=0.30, extra_train={"bag_iou": 0.7})
    c = make_cell(tmp_path, "clean", 0.0, 0, ap=0.62)
    make_cell(tmp_path, "ssd_det", 0.4, 0, done=False)  # still running / half-written: not a result
    df = results.load(tmp_path)
    assert list(df["cell"]) == [c.name, b.name, a.name]  # sorted by dataset, method, noise model, level, seed
    assert list(df.columns[:len(results.IDENTITY_COLUMNS)]) == list(results.IDENTITY_COLUMNS)
    for col in (*results.COCO_METRICS, "VOC_AP50", "train_final_loss", "time_train_s", "time_eval_s", "cell_dir"):
        assert col in df.columns, col
    assert "train_history" not in df.columns and "train_device" not in df.columns  # only numbers are columns
    row = df.set_index("cell").loc[a.name]
    assert row["method"] == "ssd_det" and row["noise_level"] == 0.2 and row["seed"] == 1
    assert row["AP"] == pytest.approx(0.41) and row["AP50"] == pytest.approx(0.61) and row["VOC_AP50"] == 0.7
    assert math.isnan(row["APs"])  # undefined metrics stay missing, never 0
    assert row["dataset"] == "shapes" and row["noise_model"] == "uniform" and row["cell_dir"] == str(a)
    assert df.set_index("cell").loc[c.name, "noise_model"] == "none"
    assert math.isnan(df.set_index("cell").loc[a.name, "train_bag_iou"])
    assert df.set_index("cell").loc[b.name, "train_bag_iou"] == 0.7


def test_two_datasets_with_one_name_stay_apart(tmp_path):
    """Two folders both called `coco` (different content) must not be averaged as if they were seeds of one."""
    a = make_cell(tmp_path, "faster_rcnn", dataset="coco", train_sha="x1", ap=0.1)
    b = make_cell(tmp_path, "faster_rcnn", dataset="coco", train_sha="x2", ap=0.9)
    c = make_cell(tmp_path, "faster_rcnn", dataset="bccd", train_sha="x3")
    df = results.load(tmp_path).set_index("cell")
    names = {df.loc[a.name, "dataset"], df.loc[b.name, "dataset"]}
    assert len(names) == 2 and all(n.startswith("coco [") for n in names)
    assert df.loc[a.name, "dataset"] == f"coco [{df.loc[a.name, 'dataset_id']}]"
    assert df.loc[c.name, "dataset"] == "bccd"  # a name used by one dataset only stays as it is


def test_cells_trained_with_other_defaults_stay_apart(tmp_path):
    """A store holding cells of two releases (the same command, a profile default changed in between) must not
    average them as seeds of one experiment; seeds and runtime keys (device) do not make another recipe."""
    old = [make_cell(tmp_path, "ssd_det", 0.4, s, ap=0.19, model={"box_batch_size_per_image": 128}) for s in (0, 1)]
    new = [make_cell(tmp_path, "ssd_det", 0.4, s, ap=0.17, device=d) for s, d in ((0, "cpu"), (1, "cuda"), (2, "cpu"))]
    same = [make_cell(tmp_path, "faster_rcnn", 0.4, s, device=d) for s, d in ((0, "cpu"), (1, "cuda"))]
    df = results.load(tmp_path).set_index("cell")
    labels = {d.name: df.loc[d.name, "method"] for d in old + new + same}
    assert len({labels[d.name] for d in old}) == 1 and len({labels[d.name] for d in new}) == 1
    assert labels[old[0].name] != labels[new[0].name]
    assert labels[new[0].name] == f"ssd_det [recipe {df.loc[new[0].name, 'recipe']}]"
    assert {labels[d.name] for d in same} == {"faster_rcnn"}  # one recipe: seeds of one experiment, untagged
    assert results.base_method(labels[old[0].name]) == "ssd_det"


def test_dataset_names_from_paths_skip_split_and_part_names(tmp_path):
    from benchmark.runner.cells import dataset_name

    for rel in ("coco/annotations/instances_train2017.json", "cells/train/_annotations.coco.json",
                "coco/annotations/train.json", "mine.json", "voc2012/train/x", "blood/data.yaml",
                "cells2/dataset.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    assert dataset_name(f"coco:{tmp_path}/coco/annotations/instances_train2017.json,v.json") == "coco"
    assert dataset_name(f"coco:{tmp_path}/cells/train/_annotations.coco.json,v.json") == "cells"
    assert dataset_name(str(tmp_path / "coco" / "annotations" / "train.json")) == "coco"
    assert dataset_name(str(tmp_path / "mine.json")) == "mine"
    assert dataset_name(str(tmp_path / "voc2012" / "train")) == "voc2012"
    assert dataset_name(str(tmp_path / "blood" / "data.yaml")) == "blood"  # YOLO: the yaml's folder
    assert dataset_name(str(tmp_path / "cells2" / "dataset.yaml")) == "cells2"
    assert dataset_name("shapes") == "shapes"


def test_cells_whose_metrics_changed_after_done_are_left_out(tmp_path):
    good = make_cell(tmp_path, "a")
    bad = make_cell(tmp_path, "b")
    write_json(bad / st.METRICS, {"coco": {"AP": 0.99}})
    (tmp_path / "cells" / "junk").mkdir()  # not a cell
    assert list(results.load(tmp_path)["cell"]) == [good.name]
    odd = make_cell(tmp_path, "c")  # a config.json that is valid JSON but no config: left out, no traceback
    (odd / st.CONFIG).write_text("[1]")
    assert list(results.load(tmp_path)["cell"]) == [good.name]


def test_csv_and_parquet_round_trip(tmp_path):
    pytest.importorskip("pyarrow")
    for seed in range(3):
        make_cell(tmp_path, "m", 0.2, seed, ap=0.1 * (seed + 1))
    df = results.load(tmp_path)
    paths = results.write_tables(tmp_path, df)
    assert paths == {"csv": tmp_path / "results.csv", "parquet": tmp_path / "results.parquet"}
    pd.testing.assert_frame_equal(pd.read_parquet(paths["parquet"]), df)
    csv = pd.read_csv(paths["csv"])
    assert list(csv.columns) == list(df.columns) and len(csv) == 3
    assert csv["AP"].tolist() == pytest.approx(df["AP"].tolist())


def test_empty_and_missing_stores(tmp_path):
    (tmp_path / "cells").mkdir()
    df = results.load(tmp_path)
    assert df.empty and "AP" in df.columns and "method" in df.columns
    results.write_tables(tmp_path, df)
    assert (tmp_path / "results.csv").read_text().startswith("cell,method,")
    with pytest.raises(BenchError, match="not found"):
        results.load(tmp_path / "nope")
    # the cells/ folder itself (or any other folder) is no store: not an empty table that reads as "no results"
    make_cell(tmp_path, "m", 0.2, 0, ap=0.5)
    with pytest.raises(BenchError, match="not a results store"):
        results.load(tmp_path / "cells")
