"""Grid expansion and cell identity (no cell is run here)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import test_runner_dummy  # noqa: F401  (registers the `dummy` method)
from test_runner_dummy import TINY

from benchmark.errors import BenchError
from benchmark.runner.cells import DatasetCache, cell_id, identity, resolve, resolve_all
from benchmark.runner.grid import CellSpec, expand_grid, parse_levels, parse_methods, parse_seeds, parse_set_options
from noise.spec import NoiseSpec


# ---- parsing ------------------------------------------------------------------------------------------------------
def test_parse_levels_ranges_and_lists():
    assert parse_levels("0.1..0.4") == [0.1, 0.2, 0.3, 0.4]
    assert parse_levels("0,0.2,0.4") == [0.0, 0.2, 0.4]
    assert parse_levels("0.4,0,0.2..0.3") == [0.0, 0.2, 0.3, 0.4]
    assert parse_levels("0..0.4:0.2") == [0.0, 0.2, 0.4]
    with pytest.raises(BenchError):
        parse_levels("a..b")


def test_parse_seeds_count_list_range():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("1") == [0]
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("7,") == [7]
    assert parse_seeds("2..4") == [2, 3, 4]
    for bad in ("0", "x", "-1,2", "", "2..0"):
        with pytest.raises(BenchError):
            parse_seeds(bad)


def test_expand_rejects_noise_settings_before_any_cell_runs():
    """A typo in the noise settings fails the command, not every cell of the sweep one by one."""
    with pytest.raises(BenchError, match="has no parameter 'x'"):
        expand_grid(["dummy"], [0.1], [0], noise_model="una", noise_params={"x": 1})
    with pytest.raises(BenchError, match="unknown noise model"):
        expand_grid(["dummy"], [0.1], [0], noise_model="no_such_noise")
    with pytest.raises(BenchError, match="'uniform' only"):
        expand_grid(["dummy"], [0.1], [0], noise_model="gaussian", noise_rng="oamil-legacy")
    assert expand_grid(["dummy"], [0.0], [0], noise_model="no_such_noise", baselines=False)  # clean: no model used


def test_parse_methods_and_scoped_overrides():
    assert parse_methods("faster_rcnn, oa_mil,ssd_det,oa_mil") == ["faster_rcnn", "oa_mil", "ssd_det"]
    assert parse_set_options(["train.lr=0.01", "ssd_det:method.alpha=2"]) == {
        "train.lr": 0.01, "ssd_det": {"method.alpha": 2}}


# ---- expansion ----------------------------------------------------------------------------------------------------
def _keys(cells):
    return [(c.method, c.noise.level, c.seed, c.role) for c in cells]


def test_expand_default_baselines_and_oracle_once_per_seed():
    cells = expand_grid(["ssd_det"], [0.1, 0.2], [0, 1])
    assert _keys(cells) == [
        ("clean", 0.0, 0, "oracle"),
        ("faster_rcnn", 0.1, 0, "baseline"), ("ssd_det", 0.1, 0, "method"),
        ("faster_rcnn", 0.2, 0, "baseline"), ("ssd_det", 0.2, 0, "method"),
        ("clean", 0.0, 1, "oracle"),
        ("faster_rcnn", 0.1, 1, "baseline"), ("ssd_det", 0.1, 1, "method"),
        ("faster_rcnn", 0.2, 1, "baseline"), ("ssd_det", 0.2, 1, "method"),
    ]
    oracle = cells[0]
    assert oracle.noise.model == "none" and oracle.noise.params == {}


def test_expand_no_baselines_no_duplicates_and_level_zero_is_clean():
    cells = expand_grid(["faster_rcnn", "ssd_det"], [0, 0.4], [3], ["shapes", "bccd"], noise_model="bias",
                        noise_params={"direction": "shrink"}, baselines=False)
    assert len(cells) == 2 * 2 * 2
    clean = [c for c in cells if c.noise.level == 0]
    assert all(c.noise == NoiseSpec("none", 0.0, {}, 0, "numpy") for c in clean)
    noisy = [c for c in cells if c.noise.level == 0.4]
    assert all(c.noise.model == "bias" and c.noise.params == {"direction": "shrink"} for c in noisy)
    # asking for faster_rcnn explicitly with baselines on does not duplicate it
    with_base = expand_grid(["faster_rcnn"], [0.2], [0])
    assert _keys(with_base) == [("clean", 0.0, 0, "oracle"), ("faster_rcnn", 0.2, 0, "baseline")]
    # the oracle ignores the noise: asking for it at noisy levels gives its one clean cell, not a retraining per level
    assert _keys(expand_grid(["clean"], [0.2, 0.4], [0], baselines=False)) == [("clean", 0.0, 0, "method")]
    assert _keys(expand_grid(["clean", "ssd_det"], [0.4], [0])) == [
        ("clean", 0.0, 0, "oracle"), ("faster_rcnn", 0.4, 0, "baseline"), ("ssd_det", 0.4, 0, "method")]


def test_expand_noise_seed_modes():
    fixed = expand_grid(["ssd_det"], [0.2], [0, 1], baselines=False)
    assert [c.noise.seed for c in fixed] == [0, 0]
    tied = expand_grid(["ssd_det"], [0.2], [0, 1], noise_seed="seed", baselines=False)
    assert [c.noise.seed for c in tied] == [0, 1]
    legacy = expand_grid(["ssd_det"], [0.2], [0], noise_rng="oamil-legacy", baselines=False)
    assert legacy[0].noise.seed == 45  # the published OA-MIL script's seed
    with pytest.raises(BenchError):
        expand_grid([], [0.1], [0])


def test_scoped_overrides_reach_only_their_method():
    cells = expand_grid(["dummy", "faster_rcnn"], [0.1], [0], overrides={"train.lr": 0.5,
                                                                         "dummy": {"method.steps": 9}},
                        baselines=False)
    by_method = {c.method: c.overrides for c in cells}
    assert by_method["dummy"] == {"train.lr": 0.5, "method.steps": 9}
    assert by_method["faster_rcnn"] == {"train.lr": 0.5}


def test_a_dict_value_under_a_dotted_key_is_a_global_override_not_a_method_scope():
    # `--set model.extra={"a": 1}` once read as a method called "model.extra": dropped, then "not a method"
    opts = parse_set_options(['model.extra={"a": 1}', 'dummy:method.steps=9'])
    assert opts == {"model.extra": {"a": 1}, "dummy": {"method.steps": 9}}
    cells = expand_grid(["dummy", "faster_rcnn"], [0.1], [0], overrides=opts, baselines=False)
    by_method = {c.method: c.overrides for c in cells}
    assert by_method["dummy"] == {"model.extra": {"a": 1}, "method.steps": 9}
    assert by_method["faster_rcnn"] == {"model.extra": {"a": 1}}


# ---- identity -----------------------------------------------------------------------------------------------------
GOLDEN_CONFIG = {
    "schema": 1, "code_version": "0.1.0", "method": "m", "profile": "cpu", "seed": 0,
    "method_config": {"train": {"lr": 0.001, "device": "cuda", "workers": 8}, "method": {"a": 1}},
    "dataset": {"name": "d", "kind": "coco", "train_sha256": "aa", "test_sha256": "bb"},
    "noise": {"model": "uniform", "level": 0.2, "params": {}, "seed": 0, "rng": "numpy"},
}


def test_cell_id_golden_and_independent_of_key_order_location_and_runtime_knobs():
    cid = cell_id(GOLDEN_CONFIG)
    # the scheme: sha256 of the canonical JSON (sorted keys, no spaces) of the config minus runtime knobs
    expected = json.loads(json.dumps(GOLDEN_CONFIG))
    for key in ("device", "workers"):
        del expected["method_config"]["train"][key]
    canonical = json.dumps(expected, sort_keys=True, separators=(",", ":")).encode()
    assert cid == hashlib.sha256(canonical).hexdigest()[:16]
    assert cid == "e665735888620ef1"  # must not drift: it names every stored cell
    reordered = json.loads(json.dumps(GOLDEN_CONFIG, sort_keys=True))
    reordered = dict(reversed(list(reordered.items())))
    moved = {**GOLDEN_CONFIG, "locator": {"dataset_spec": "/elsewhere"}, "cell_id": "whatever"}
    runtime = json.loads(json.dumps(GOLDEN_CONFIG))
    runtime["method_config"]["train"].update(device="cpu", workers=0, log_every=5)
    assert cell_id(reordered) == cell_id(moved) == cell_id(runtime) == cid
    assert "locator" not in identity(moved)


@pytest.mark.parametrize("path, value", [
    (("method",), "other"), (("profile",), "paper"), (("seed",), 1), (("code_version",), "0.2.0"),
    (("method_config", "train", "lr"), 0.002), (("method_config", "method", "a"), 2),
    (("dataset", "train_sha256"), "ab"), (("dataset", "test_sha256"), "bc"), (("dataset", "name"), "e"),
    (("noise", "model"), "gaussian"), (("noise", "level"), 0.3), (("noise", "params"), {"k": 1}),
    (("noise", "seed"), 1), (("noise", "rng"), "oamil-legacy"),
])
def test_cell_id_changes_with_every_identity_field(path, value):
    cfg = json.loads(json.dumps(GOLDEN_CONFIG))
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert cell_id(cfg) != cell_id(GOLDEN_CONFIG)


@pytest.fixture(scope="module")
def datasets():
    cache = DatasetCache()
    cache.splits(TINY)
    return cache


def test_resolve_full_config(datasets):
    spec = CellSpec("dummy", TINY, NoiseSpec.parse("uniform", level=0.2, seed=5), seed=3)
    cell = resolve(spec, datasets)
    c = cell.config
    assert c["cell_id"] == cell.id == cell_id(c)
    assert c["method"] == "dummy" and c["profile"] == "cpu" and c["seed"] == 3
    assert c["method_config"]["train"]["seed"] == 3 and c["method_config"]["train"]["data_seed"] == 3
    assert c["method_config"]["method"]["steps"] == 3
    assert c["dataset"]["kind"] == "shapes"
    assert c["dataset"]["train_sha256"] == datasets.splits(TINY)["train"].fingerprint()
    assert c["noise"] == {"model": "uniform", "level": 0.2, "params": {}, "seed": 5, "rng": "numpy"}
    assert c["locator"]["dataset_spec"] == TINY


def test_noise_parameter_files_enter_the_identity_by_content(datasets, tmp_path, monkeypatch):
    """`imported`'s file (and any model's `file_params`): the same file by another path is the same cell, an edited
    file a new one (never a stale skip); the cell runs with the absolute path and refuses a file changed since."""
    boxes = tmp_path / "data" / "weak.json"
    boxes.parent.mkdir()
    boxes.write_text('[{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.9}]')

    def cell(path):
        return resolve(CellSpec("dummy", TINY, NoiseSpec.parse("imported", {"file": str(path)}, level=0.5), seed=0),
                       datasets)

    monkeypatch.chdir(tmp_path)
    a = cell("data/weak.json")
    monkeypatch.chdir(boxes.parent)
    b = cell("weak.json")
    assert a.id == b.id == cell(boxes).id
    assert a.config["noise"]["params"]["file"].startswith("sha256:")
    assert a.config["locator"]["noise_files"] == {"file": str(boxes)}
    assert NoiseSpec.from_config(a.config["noise"], a.config["locator"]).params["file"] == str(boxes)
    boxes.write_text('[{"image_id": 1, "category_id": 1, "bbox": [2, 2, 5, 5], "score": 0.9}]')
    assert cell(boxes).id != a.id
    with pytest.raises(BenchError, match="changed since the sweep was planned"):
        NoiseSpec.from_config(a.config["noise"], a.config["locator"])
    with pytest.raises(BenchError, match="file not found"):
        cell(tmp_path / "nope.json")
    flip = resolve(CellSpec("dummy", TINY, NoiseSpec.parse("class_flip", {"matrix": {"1": {"2": 1}}}, level=0.2),
                            seed=0), datasets)  # a matrix given inline is a value, not a file
    assert flip.config["noise"]["params"]["matrix"] == {"1": {"2": 1}} and "noise_files" not in flip.config["locator"]


def test_composition_file_parameters_enter_the_identity_by_content(datasets, tmp_path, monkeypatch):
    """The same rule inside a composition (`imported.file`): keyed by content, run from the absolute path, and the
    steps' defaults filled in, so spelling one out is the same cell."""
    from benchmark.results import variant

    boxes = tmp_path / "weak.json"
    boxes.write_text('[{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.9}]')

    def cell(**params):
        return resolve(CellSpec("dummy", TINY, NoiseSpec.parse("uniform+imported@0.5", params, level=0.2), seed=0),
                       datasets)

    monkeypatch.chdir(tmp_path)
    a = cell(**{"imported.file": "weak.json"})
    assert a.id == cell(**{"imported.file": str(boxes), "imported.min_iou": 0.3}).id
    assert a.config["noise"]["params"]["imported.file"].startswith("sha256:")
    assert a.config["noise"]["params"]["imported.same_class"] is True  # defaults filled
    assert a.config["locator"]["noise_files"] == {"imported.file": str(boxes)}
    assert NoiseSpec.from_config(a.config["noise"], a.config["locator"]).params["imported.file"] == str(boxes)
    assert variant(a.config).startswith("noise imported.file=sha256:")  # the file, not the filled defaults
    assert "min_iou" not in variant(a.config)
    boxes.write_text('[{"image_id": 1, "category_id": 1, "bbox": [2, 2, 5, 5], "score": 0.9}]')
    assert cell(**{"imported.file": "weak.json"}).id != a.id
    with pytest.raises(BenchError, match="changed since the sweep was planned"):
        NoiseSpec.from_config(a.config["noise"], a.config["locator"])


def test_equivalent_noise_parameters_are_one_cell(datasets):
    """Defaults spelt out, or a whole number for a float default, make the same data: one cell, not four."""
    ids = {resolve(CellSpec("dummy", TINY, NoiseSpec.parse("bias", p, level=0.2), 0), datasets).id
           for p in ({}, {"direction": "grow"}, {"dx": 0}, {"dx": 0.0, "dy": 0.0})}
    assert len(ids) == 1
    shrink = resolve(CellSpec("dummy", TINY, NoiseSpec.parse("bias", {"direction": "shrink"}, level=0.2), 0), datasets)
    assert shrink.id not in ids
    from benchmark.results import variant

    assert variant(shrink.config) == "noise direction=shrink"  # defaults are not a variant


def test_resolve_is_stable_across_processes(datasets):
    cells = resolve_all(expand_grid(["dummy"], [0, 0.1], [0, 1], [TINY], baselines=False), datasets)
    code = ("import test_runner_dummy, json; from benchmark.runner.cells import resolve_all; "
            "from benchmark.runner.grid import expand_grid; "
            f"print(json.dumps([c.id for c in resolve_all(expand_grid(['dummy'], [0, 0.1], [0, 1], [{TINY!r}], "
            "baselines=False))]))")
    import os
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [c.id for c in cells]
    assert len({c.id for c in cells}) == 4


UNIFORM_01 = NoiseSpec("uniform", 0.1)


def test_resolve_rejects_bad_input_before_running(datasets):
    with pytest.raises(BenchError, match="unknown method"):
        resolve(CellSpec("no_such_method", TINY, UNIFORM_01, 0), datasets)
    with pytest.raises(BenchError, match="unknown noise model"):  # a spec built without `NoiseSpec.parse`
        resolve(CellSpec("dummy", TINY, NoiseSpec("no_such_noise", 0.1), 0), datasets)
    with pytest.raises(BenchError, match=r"must be in \[0, 1\)"):
        resolve(CellSpec("dummy", TINY, NoiseSpec("uniform", 1.5), 0), datasets)
    with pytest.raises(BenchError, match="--seeds"):
        resolve(CellSpec("dummy", TINY, UNIFORM_01, 0, overrides={"train.seed": 4}), datasets)
    with pytest.raises(BenchError, match="unknown config key"):
        resolve(CellSpec("dummy", TINY, UNIFORM_01, 0, overrides={"method.nope": 1}), datasets)


# ---- defaults that depend on the machine ----------------------------------------------------------------------------
def test_default_profile_and_local_layout(monkeypatch):
    from benchmark.runner.api import SweepOptions, local_layout, runs_on_gpu
    from benchmark.runner.cells import default_profile
    from benchmark.runner.devices import cpu_count

    assert default_profile("coco", gpu=True) == "fair" and default_profile("voc", gpu=True) == "fair"
    assert default_profile("shapes", gpu=True) == "cpu" and default_profile("coco", gpu=False) == "cpu"
    assert runs_on_gpu(SweepOptions("m", executor="slurm", gpus_per_task=1))
    assert not runs_on_gpu(SweepOptions("m", executor="slurm", gpus_per_task=0))

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a CPU machine: one 1-thread worker per core
    assert local_layout(SweepOptions("m")) == (cpu_count(), 1, None)
    assert local_layout(SweepOptions("m", jobs=1)) == (1, cpu_count(), None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")  # one worker per GPU group
    jobs, _, groups = local_layout(SweepOptions("m", gpus_per_cell=2))
    assert jobs == 2 and groups == [["4", "5"], ["6", "7"]]
    assert local_layout(SweepOptions("m"))[2] == [["4"], ["5"], ["6"], ["7"]]
    with pytest.raises(BenchError, match="only 4 GPU"):
        local_layout(SweepOptions("m", gpus_per_cell=8))
    for bad in ({"jobs": 0}, {"threads": 0}):
        with pytest.raises(BenchError, match="must be at least 1"):
            local_layout(SweepOptions("m", **bad))


def test_runtime_keys_leave_the_cell_id_unchanged():
    from benchmark.config import RUNTIME_KEYS

    knobs = {"device": "cpu", "workers": 3, "log_every": 7, "amp": False, "cache_images": True,
             "checkpoint_every": 2, "checkpoint_minutes": 5.0, "loggers": ["csv", "tensorboard"]}
    assert set(knobs) == set(RUNTIME_KEYS["train"])
    changed = {**GOLDEN_CONFIG, "method_config": {**GOLDEN_CONFIG["method_config"],
                                                  "train": {**GOLDEN_CONFIG["method_config"]["train"], **knobs}}}
    assert cell_id(changed) == cell_id(GOLDEN_CONFIG)


def test_costliest_cells_start_first_and_ties_keep_grid_order():
    """On 2 workers the quick start's last SSD-Det cell used to run alone for minutes: long cells go first."""
    from types import SimpleNamespace

    from benchmark.runner.sweep import longest_first

    todo = [SimpleNamespace(cell=SimpleNamespace(method=m), i=i) for i, m in enumerate(
        ["clean", "faster_rcnn", "ssd_det", "not_registered", "faster_rcnn", "ssd_det+retrain", "ssd_det"])]
    assert [(p.cell.method, p.i) for p in longest_first(todo)] == [
        ("ssd_det+retrain", 5), ("ssd_det", 2), ("ssd_det", 6),
        ("clean", 0), ("faster_rcnn", 1), ("not_registered", 3), ("faster_rcnn", 4)]


def test_one_stage_oracle_runs_once_per_seed_at_level_zero():
    cells = expand_grid(["retinanet", "retinanet_clean"], [0.2, 0.4], [0], baselines=False)
    assert _keys(cells) == [("retinanet_clean", 0.0, 0, "method"), ("retinanet", 0.2, 0, "method"),
                            ("retinanet", 0.4, 0, "method")]
