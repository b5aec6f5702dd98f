"""Adding a method: registry, entry points, `bench methods ls`, the scaffold and the contract kit."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.errors import BenchError
from benchmark.registry import Registry
from benchmark.testing import check_adapter
from methods import METHODS, MethodAdapter, get_method
from methods.core import build_faster_rcnn

BUILTINS = ["faster_rcnn", "clean", "oa_mil", "ssd_det", "ssd_det+retrain", "retinanet", "retinanet_clean", "free_anchor",
            "co_teaching", "sd_locnet", "disco"]


def test_registry_suggests_close_names_and_lets_builtins_win():
    reg = Registry("widget")
    reg.register("uniform")(object)
    with pytest.raises(BenchError, match="did you mean 'uniform'"):
        reg.get("unifrom")
    plugin = object()
    reg.add("uniform", plugin, origin="plugin:x")
    assert reg.get("uniform") is object and reg.origin("uniform") == "builtin"
    with pytest.raises(BenchError, match="unknown method 'ssd-det'.*did you mean 'ssd_det'"):
        get_method("ssd-det")


def test_methods_ls_lists_every_builtin_with_its_source():
    res = CliRunner().invoke(cli, ["methods", "ls"])
    assert res.exit_code == 0, res.output
    for name in BUILTINS:
        assert any(line.split()[0] == name and "builtin" in line for line in res.output.splitlines()), name
    assert set(BUILTINS) <= set(METHODS.names())


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_adapters_satisfy_the_contract(name, tmp_path):
    report = check_adapter(name, workdir=tmp_path)
    assert report.ok, report.summary()
    assert len(report.passed) == 8


class _Leaky(MethodAdapter):
    """Trains on the clean boxes while claiming not to: the kit must catch it."""

    name = "leaky_probe"

    def build_model(self, cfg, num_classes):
        return build_faster_rcnn(cfg["model"], num_classes)

    def training_view(self, train):
        return train.with_clean_boxes_as_targets()


class _NoisyInit(_Leaky):
    """Initialises from an unseeded generator: not deterministic."""

    name = "nondeterministic_probe"

    def training_view(self, train):
        return train.without_clean_boxes()

    def build_model(self, cfg, num_classes):
        import torch

        model = super().build_model(cfg, num_classes)
        with torch.no_grad():
            for p in model.roi_heads.box_predictor.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(torch.seed())) * 0.1)
        return model


class _Silent(_Leaky):
    """Trains honestly but never predicts anything (a score threshold no detection reaches)."""

    name = "silent_probe"

    def training_view(self, train):
        return train.without_clean_boxes()

    def build_model(self, cfg, num_classes):
        model = super().build_model(cfg, num_classes)
        model.roi_heads.score_thresh = 2.0
        return model


def test_contract_kit_catches_a_method_that_predicts_nothing(tmp_path):
    report = check_adapter(_Silent, workdir=tmp_path)
    assert [name for name, _ in report.failed] == ["predicts valid COCO results"]
    assert "no detections" in report.failed[0][1]


def test_contract_kit_catches_a_method_that_reads_clean_boxes(tmp_path):
    report = check_adapter(_Leaky, workdir=tmp_path)
    assert not report.ok
    assert [name for name, _ in report.failed] == ["never reads clean boxes"]


def test_contract_kit_catches_nondeterminism(tmp_path):
    report = check_adapter(_NoisyInit, workdir=tmp_path)
    failed = {name for name, _ in report.failed}
    assert "deterministic under a fixed seed" in failed


def test_scaffold_writes_a_package_that_passes_the_contract(tmp_path, monkeypatch):
    out = tmp_path / "pkg"
    res = CliRunner().invoke(cli, ["new-method", "my_method", "--out", str(out), "--title", "My Method"])
    assert res.exit_code == 0, res.output
    pyproject = (out / "pyproject.toml").read_text()
    assert '[project.entry-points."noisybox_bench.methods"]' in pyproject
    assert '"my_method" = "noisybox_my_method.adapter:MyMethod"' in pyproject
    assert "check_adapter" in (out / "tests" / "test_my_method.py").read_text()
    probe = ("import sys; import noisybox_my_method.adapter; "
             "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    imported = subprocess.run([sys.executable, "-c", probe], cwd=out, capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"  # listing methods does not pay for a torch import
    monkeypatch.syspath_prepend(str(out))
    adapter_cls = importlib.import_module("noisybox_my_method.adapter").MyMethod
    assert adapter_cls.name == "my_method"
    report = check_adapter(adapter_cls, workdir=tmp_path / "contract")
    assert report.ok, report.summary()
    sys.modules.pop("noisybox_my_method.adapter", None)
    sys.modules.pop("noisybox_my_method.config", None)
    sys.modules.pop("noisybox_my_method", None)
    res = CliRunner().invoke(cli, ["new-method", "my_method", "--out", str(out)])
    assert res.exit_code != 0 and "not empty" in str(res.exception or res.output)
    res = CliRunner().invoke(cli, ["new-method", "Bad Name", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0
