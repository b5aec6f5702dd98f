"""The noise setting from `bench run` to the store: parsed once (`NoiseSpec.parse` in the grid), the cell ids and
labels it gives unchanged, and a store read without the noise package (labels come from what the cell recorded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import test_runner_dummy  # noqa: F401  (registers the `dummy` method)
from test_runner_dummy import TINY

from benchmark import results
from benchmark.io import write_json
from benchmark.runner import store as st
from benchmark.runner.cells import DatasetCache, resolve
from benchmark.runner.grid import expand_grid

TESTS = Path(__file__).resolve().parents[1]
BOXES = '[{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.9}]'  # sha256 cadb5723...
BOXES_SHA = "sha256:cadb572390204e60afda11ebf5f49992e5647fe2a5a5a5a37424c1baeaccc4be"


class Fixed(DatasetCache):
    """Fixed fingerprints: no dataset is loaded, so the ids depend on the noise setting and the dummy's config."""

    def facts(self, spec):
        return {"name": spec, "kind": "shapes", "train_sha256": "a" * 64, "test_sha256": "b" * 64}


# (sweep options, cell id, config noise, table variant), computed with the runner before NoiseSpec existed
# (commit 8bb0056: grid + cells resolved the noise themselves); `dummy` method, cpu profile, one cell each
PINNED = {
    "uniform": (dict(levels=[0.4], seeds=[0]), "129ad43dc26daa0e",
                {"model": "uniform", "level": 0.4, "params": {}, "seed": 0, "rng": "numpy"}, ""),
    "clean": (dict(levels=[0.0], seeds=[0]), "d5b8774ebf268e9c",
              {"model": "none", "level": 0.0, "params": {}, "seed": 0, "rng": "numpy"}, ""),
    "composed": (dict(levels=[0.3], seeds=[1], noise_model="uniform+missing@0.1"), "46514c243bb315ae",
                 {"model": "uniform+missing@0.1", "level": 0.3, "params": {}, "seed": 0, "rng": "numpy"}, ""),
    "legacy": (dict(levels=[0.2], seeds=[0], noise_rng="oamil-legacy"), "202b13e3afad7c03",
               {"model": "uniform", "level": 0.2, "params": {}, "seed": 45, "rng": "oamil-legacy"},
               "noise rng oamil-legacy"),
    "param": (dict(levels=[0.2], seeds=[0], noise_model="bias", noise_params={"direction": "shrink", "dx": 1}),
              "fcf9c29c6064c00a",
              {"model": "bias", "level": 0.2, "params": {"direction": "shrink", "dx": 1.0, "dy": 0.0}, "seed": 0,
               "rng": "numpy"}, "noise direction=shrink; noise dx=1.0"),
    "default param": (dict(levels=[0.2], seeds=[0], noise_model="bias", noise_params={"direction": "grow"}),
                      "6bb7011913e88144",
                      {"model": "bias", "level": 0.2, "params": {"direction": "grow", "dx": 0.0, "dy": 0.0},
                       "seed": 0, "rng": "numpy"}, ""),
    "seed tied": (dict(levels=[0.1], seeds=[2], noise_model="gaussian", noise_seed="seed"), "5187a38d0bd81eda",
                  {"model": "gaussian", "level": 0.1, "params": {}, "seed": 2, "rng": "numpy"}, ""),
    "noise seed": (dict(levels=[0.1], seeds=[2], noise_seed=7), "791a7971fb404d2d",
                   {"model": "uniform", "level": 0.1, "params": {}, "seed": 7, "rng": "numpy"}, ""),
    "file": (dict(levels=[0.5], seeds=[0], noise_model="imported", noise_params={"file": "BOXES"}),
             "40a2c689bbffb69f",
             {"model": "imported", "level": 0.5, "rng": "numpy", "seed": 0,
              "params": {"file": BOXES_SHA, "min_iou": 0.3, "same_class": True, "min_score": 0.0}},
             "noise file=sha256:cadb5723"),
    "composed file": (dict(levels=[0.2], seeds=[0], noise_model="uniform+imported@0.5",
                           noise_params={"imported.file": "BOXES", "imported.min_iou": 0.3}), "830102af0f74cc3e",
                      {"model": "uniform+imported@0.5", "level": 0.2, "rng": "numpy", "seed": 0,
                       "params": {"imported.file": BOXES_SHA, "imported.min_iou": 0.3, "imported.same_class": True,
                                  "imported.min_score": 0.0}}, "noise imported.file=sha256:cadb5723"),
}


def _cell(name: str, boxes: Path):
    options, *_ = PINNED[name]
    options = dict(options)
    levels, seeds = options.pop("levels"), options.pop("seeds")
    params = {k: str(boxes) if v == "BOXES" else v for k, v in (options.pop("noise_params", None) or {}).items()}
    (spec,) = expand_grid(["dummy"], levels, seeds, ["shapes"], baselines=False, profile="cpu",
                          noise_params=params, **options)
    return resolve(spec, Fixed(), gpu=False)


@pytest.fixture
def boxes(tmp_path) -> Path:
    path = tmp_path / "weak.json"
    path.write_text(BOXES)
    return path


@pytest.mark.parametrize("name", list(PINNED))
def test_cell_ids_and_labels_are_those_of_the_runner_before_noise_spec(name, boxes):
    _, cid, noise, label = PINNED[name]
    cell = _cell(name, boxes)
    assert cell.id == cid
    assert cell.config["noise"] == noise
    assert results.variant(cell.config) == label


def _write_done(store: Path, config: dict) -> Path:
    d = store / "cells" / config["cell_id"]
    write_json(d / st.CONFIG, config)
    write_json(d / st.PREDICTIONS, [])
    write_json(d / st.METRICS, {"coco": {"AP": 0.5}, "voc": {"AP50": 0.6}})
    st.mark_done(d)
    return d


def _store(tmp_path: Path, boxes: Path, old: bool = False) -> Path:
    """A store of pinned cells as the runner writes them now, or (`old`) as it wrote them before it recorded the
    noise model's defaults in the locator."""
    store = tmp_path / ("old" if old else "new")
    for name in ("uniform", "param", "default param", "file", "legacy"):
        config = _cell(name, boxes).config
        if old:
            config["locator"].pop("noise_defaults")
        else:
            assert "noise_defaults" in config["locator"]
        _write_done(store, config)
    return store


def _labels(store: Path) -> dict:
    df = results.load(store)
    return dict(zip(df["cell"], df["method"]))


def test_old_and_new_stores_read_with_the_same_labels(tmp_path, boxes):
    """A store planned before the locator held the noise defaults reads as it always did (the installed models'
    defaults), and one planned now reads the same from what its cells recorded."""
    want = {PINNED["uniform"][1]: "dummy", PINNED["default param"][1]: "dummy",  # defaults are not a variant
            PINNED["param"][1]: "dummy [noise direction=shrink; noise dx=1.0]",
            PINNED["file"][1]: "dummy [noise file=sha256:cadb5723]",
            PINNED["legacy"][1]: "dummy [noise rng oamil-legacy]"}
    assert _labels(_store(tmp_path, boxes, old=True)) == want
    assert _labels(_store(tmp_path, boxes)) == want


def test_labels_come_from_the_record_not_the_installed_plugins(tmp_path):
    """A cell of a noise-model plug-in that is not installed where the store is read keeps its label: its
    defaults were recorded when the cell was planned (before, every parameter read as a variant there)."""
    config = {"schema": 1, "method": "m", "method_config": {}, "profile": "cpu", "seed": 0,
              "dataset": {"name": "d", "kind": "coco", "train_sha256": "a", "test_sha256": "b"},
              "noise": {"model": "elsewhere", "level": 0.2, "params": {"k": 1, "j": 2}, "seed": 0, "rng": "numpy"},
              "cell_id": "0123456789abcdef", "locator": {"noise_defaults": {"k": 1, "j": 0}}}
    assert results.variant(config) == "noise j=2"
    config["locator"].pop("noise_defaults")  # planned before the record: nothing to tell defaults by
    assert results.variant(config) == "noise j=2; noise k=1"


def test_reading_a_store_imports_no_noise(tmp_path, boxes):
    """The table reads what the cells recorded: no noise registry, so no plug-in changes a label; nor do the
    reports and the leaderboard, which read the table, import it."""
    store = _store(tmp_path, boxes)
    code = ("import importlib, json, pkgutil, sys; from benchmark import results; "
            f"df = results.load({str(store)!r}); "
            "[importlib.import_module(f'{p}.{m.name}') for p in ('reports', 'leaderboard') "
            " for m in pkgutil.iter_modules(importlib.import_module(p).__path__)]; "
            "print(json.dumps([sorted(df['method']), sorted(m for m in sys.modules if m.split('.')[0] == 'noise')]))")
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    methods, noise_modules = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(methods) == 5 and "dummy [noise direction=shrink; noise dx=1.0]" in methods
    assert noise_modules == []


@pytest.mark.parametrize("args,error", [
    (["--noise-model", "una", "--noise-param", "x=1"], "noise model 'una' has no parameter 'x'"),
    (["--noise-model", "no_such_noise"], "unknown noise model"),
    (["--noise-model", "gaussian", "--noise-rng", "oamil-legacy"], "'uniform' only"),
    (["--noise", "0.7", "--noise-model", "una"], "must be in [0, 0.5]"),
    (["--noise-model", "bias", "--noise-param", "direction=sideways"], "sideways"),  # found on a few images
])
def test_bad_noise_settings_fail_bench_run_in_one_line_before_any_cell(tmp_path, args, error):
    store = tmp_path / "store"
    args = ["--method", "dummy", "--noise", "0.2", "--seeds", "1", "--dataset", TINY, "--no-baselines",
            "--import", "test_runner_dummy", "--no-report", "--no-progress", "--out", str(store), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    r = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", *args], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 2 and error in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list(store.glob("cells/*/config.json"))  # no cell was planned, none ran
