"""Issue 27: the suite's pretrained tiny backbone (label-only pretext task, rebuilt bit for bit) and the ImageNet
path (`model.weights` / torchvision's cache) loaded by the same code; the end-of-run warning when nothing learned."""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.config import profile_defaults, resolve_config
from benchmark.errors import BenchError
from methods import get_method
from methods._core import pretrain
from methods._core.model import build_faster_rcnn
from methods._core.weights import TINY_PRETEXT

REPO = Path(__file__).resolve().parents[2]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cfg(overrides=None, kind="shapes"):
    return resolve_config(get_method("faster_rcnn"), "cpu", kind, 0.4, overrides or {})


# ---- the pretext data shares nothing with a benchmark split ----------------------------------------------------
def test_pretext_code_reads_no_benchmark_data():
    """By construction: the pretext module imports nothing that loads or draws a dataset."""
    for path in (Path(pretrain.__file__), Path(pretrain.__file__).parent / "weights" / "__init__.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(n.startswith(("benchmark.datasets", "noise")) for n in names), (path, names)


def test_pretraining_runs_with_every_dataset_entry_point_blocked(monkeypatch):
    """A few pretraining steps with the shapes generator and every dataset loader made to fail: nothing from a
    benchmark split, image or box, can have reached them."""
    import benchmark.datasets as datasets
    from benchmark.datasets import shapes

    def boom(*a, **k):
        raise AssertionError("the pretext task touched a benchmark dataset")

    for mod, name in ((shapes, "render"), (shapes, "generate_split"), (shapes, "ensure_shapes"),
                      (datasets, "load")):
        monkeypatch.setattr(mod, name, boom)
    state, info = pretrain.pretrain(iters=2, batch_size=4, warmup=1, progress=False)
    assert set(state) == set(build_faster_rcnn(profile_defaults("cpu", "shapes")["model"] | {"pretrained": False},
                                               4).backbone.body.state_dict())


def test_pretext_labels_are_classes_only_and_images_are_not_shapes_images():
    """Labels are a class vector (no boxes); a sample of pretext images hashed against the shapes splits' first
    images (the catalog seeds 1 = train, 2 = val; shapes-mini is this prefix), drawn at the benchmark's 128 px and
    at the pretext's 64 px, shares no image."""
    from benchmark.datasets import shapes

    pre = set()
    for i in range(0, 64 * 2000, 500):  # spread over the shipped schedule's 76,800 images
        img, label = pretrain.render(i)
        assert img.shape == (pretrain.SIZE, pretrain.SIZE, 3) and img.dtype == np.uint8
        assert label.shape == (len(pretrain.CLASSES),) and set(np.unique(label)) <= {0.0, 1.0} and label.sum() >= 1
        pre.add(hashlib.sha256(img.tobytes()).hexdigest())
    assert len(pre) == len(range(0, 64 * 2000, 500))
    bench = set()
    for seed in (1, 2):
        for i in range(32):
            for size in (128, pretrain.SIZE):
                arr, _ = shapes.render(np.random.default_rng([seed, i]), size)
                bench.add(hashlib.sha256(arr.tobytes()).hexdigest())
    assert not pre & bench
    assert not set(pretrain.CLASSES) & set(shapes.CLASSES)


def test_pretext_seed_namespace_differs_from_shapes():
    """Image i's generator is not the generator of any shapes (seed, index) pair with small seeds."""
    pre = {tuple(pretrain.image_rng(i).integers(0, 2**63, 4)) for i in range(50)}
    shp = {tuple(np.random.default_rng([s, i]).integers(0, 2**63, 4)) for s in range(20) for i in range(50)}
    assert not pre & shp


def test_short_schedule_is_bit_for_bit(tmp_path):
    """Two runs of a short prefix of the schedule write byte-identical files (the full rebuild is the slow test)."""
    digests = []
    for k in range(2):
        state, _ = pretrain.pretrain(iters=3, batch_size=8, warmup=2, progress=False)
        digests.append(pretrain.save(state, tmp_path / f"w{k}.pth"))
    assert digests[0] == digests[1] == _sha(tmp_path / "w0.pth")


@pytest.mark.slow
def test_shipped_weights_rebuild_bit_for_bit(tmp_path):
    out = tmp_path / "tiny_pretext.pth"
    subprocess.run([sys.executable, "-m", "methods._core.pretrain", "--out", str(out)], cwd=REPO, check=True,
                   timeout=3600)
    assert _sha(out) == _sha(TINY_PRETEXT)


# ---- the shipped weights, the cpu profile, the recorded sha256 ------------------------------------------------
def test_shipped_weights_are_small_package_data():
    assert TINY_PRETEXT.is_file() and TINY_PRETEXT.stat().st_size <= 5 * 2**20
    assert "weights/*.pth" in (REPO / "pyproject.toml").read_text()


def test_cpu_profile_starts_from_the_suite_weights_and_records_their_sha256():
    cfg = _cfg()
    assert cfg["model"]["pretrained"] is True and cfg["model"]["weights"] is None
    assert cfg["model"]["weights_sha256"] == _sha(TINY_PRETEXT)
    assert _cfg(kind="yolo")["model"]["weights_sha256"] == _sha(TINY_PRETEXT)  # real photos too
    model = build_faster_rcnn(cfg["model"], 4)
    shipped = torch.load(TINY_PRETEXT, weights_only=True)
    body = model.backbone.body.state_dict()
    assert set(shipped) == set(body)
    for k, v in shipped.items():
        torch.testing.assert_close(body[k], v, rtol=0, atol=0)


def test_pretrained_false_trains_from_scratch_and_records_no_weights():
    cfg = _cfg({"model.pretrained": False})
    assert "weights_sha256" not in cfg["model"]
    shipped = torch.load(TINY_PRETEXT, weights_only=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        body = build_faster_rcnn(cfg["model"], 4).backbone.body.state_dict()
    assert not torch.equal(body["stage4.3.weight"], shipped["stage4.3.weight"])
    assert torch.equal(body["stage4.1.running_var"], torch.ones(160))  # a fresh BatchNorm, never the pretext's


def test_pretrained_start_changes_the_cell_identity():
    from benchmark.config import without_runtime_keys

    a, b = _cfg(), _cfg({"model.pretrained": False})
    assert without_runtime_keys(a) != without_runtime_keys(b)


def test_suite_weights_with_other_widths_are_a_clear_error():
    with pytest.raises(BenchError, match="model.pretrained=false"):
        _cfg({"model.widths": [8, 8, 16, 16]})


def test_a_changed_weights_file_is_refused(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(TINY_PRETEXT.read_bytes())
    cfg = _cfg({"model.weights": str(path)})
    assert cfg["model"]["weights_sha256"] == _sha(TINY_PRETEXT)
    state = torch.load(path, weights_only=True)
    state["stage1.0.weight"] += 1
    torch.save(state, path)
    with pytest.raises(BenchError, match="weights file changed"):
        build_faster_rcnn(cfg["model"], 4)


# ---- ImageNet path: torchvision backbones from a weights file, same code path, never a download ---------------
@pytest.fixture
def no_download(monkeypatch):
    import torch.hub

    def refuse(*a, **k):
        raise AssertionError("tests never download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "resnet18"])
def test_imagenet_backbone_from_a_weights_file(tmp_path, no_download, name):
    import torchvision

    with torch.random.fork_rng():
        torch.manual_seed(1)
        sd = torchvision.models.get_model(name, weights=None).state_dict()  # stands in for ImageNet weights
    path = tmp_path / f"{name}.pth"
    torch.save(sd, path)
    cfg = _cfg({"model.backbone": name, "model.weights": str(path), "model.trainable_layers": 3}, kind="yolo")
    assert cfg["model"]["weights_sha256"] == _sha(path)
    model = build_faster_rcnn(cfg["model"], 3)
    body = model.backbone.body.state_dict()
    key = "features.16.0.weight" if name == "mobilenet_v3_large" else "layer3.1.conv2.weight"  # the cpu levels
    torch.testing.assert_close(body[key.removeprefix("features.")], sd[key], rtol=0, atol=0)
    assert not any(k.startswith(("classifier", "fc")) for k in body)
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 120, 160)])
    assert set(out[0]) == {"boxes", "labels", "scores"}
    frozen = [n for n, p in model.backbone.body.named_parameters() if not p.requires_grad]
    assert frozen  # the early stages of an initialised backbone stay frozen


@pytest.mark.parametrize("name, sides", [("mobilenet_v3_large", [16, 8, 4, 2]),  # strides 8..64
                                         ("resnet18", [32, 16, 8, 4])])  # strides 4..32, as tiny
def test_torchvision_backbones_fit_the_cpu_profile_levels(name, sides):
    cfg = _cfg({"model.backbone": name, "model.pretrained": False, "model.trainable_layers": 3}, kind="yolo")
    with pytest.warns(UserWarning, match="from scratch"):  # then every stage trains
        model = build_faster_rcnn(cfg["model"], 3)
    feats = model.backbone(torch.zeros(1, 3, 128, 128))
    assert {k: v.shape[-1] for k, v in feats.items()} == dict(zip(["0", "1", "2", "pool"], sides))
    assert all(p.requires_grad for p in model.backbone.body.parameters())


# ---- the end-of-run warning when the oracle learned nothing ---------------------------------------------------
def test_oracle_warning_names_what_to_try():
    from benchmark.runner.sweep import oracle_warnings

    df = pd.DataFrame([
        {"cell": "a", "method": "clean", "dataset": "photos", "AP": 0.004, "train_iterations": 204},
        {"cell": "b", "method": "clean", "dataset": "photos", "AP": 0.002, "train_iterations": 204},
        {"cell": "c", "method": "faster_rcnn", "dataset": "photos", "AP": 0.0, "train_iterations": 204},
        {"cell": "d", "method": "clean", "dataset": "shapes", "AP": 0.45, "train_iterations": 420},
    ])
    lines = oracle_warnings(df, ["a", "b", "c", "d"])
    assert len(lines) == 1
    assert "photos" in lines[0] and "AP 0.3 < 1 point" in lines[0] and "204 iterations" in lines[0]
    assert "model.weights=PATH" in lines[0] and "train.iters_per_epoch" in lines[0]
    assert oracle_warnings(df, ["d"]) == [] and oracle_warnings(df, ["c"]) == []


def test_bench_run_ends_with_the_warning(tmp_path, monkeypatch):
    """A sweep (the torch-free `dummy` method standing in for the oracle, its AP forced below a point) prints the
    warning as its last line, after the tables."""
    import os

    import test_runner_dummy  # noqa: F401  (registers the `dummy` method)

    from benchmark import results
    from benchmark.runner import grid
    from benchmark.runner.api import SweepOptions, run_sweep

    monkeypatch.setenv("NOISYBOX_DUMMY_LOG", str(tmp_path / "dummy.log"))
    tests = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(grid, "ORACLE_METHOD", "dummy")
    load = results.load
    monkeypatch.setattr(results, "load", lambda root: load(root).assign(AP=0.002))
    messages = []
    o = SweepOptions(methods="dummy", noise="0.1", seeds="1", datasets=[test_runner_dummy.TINY], baselines=False,
                     store=tmp_path / "store", imports=["test_runner_dummy"], report=False, progress=False, jobs=1)
    run_sweep(o, echo=messages.append)
    assert messages[-1].startswith("warning: the clean oracle learned nothing") and "AP 0.2 < 1 point" in messages[-1]
    assert any(m.lstrip("\n").startswith("AP (") for m in messages[:-1])
