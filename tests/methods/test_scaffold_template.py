"""`bench new-method`: refuses a taken name, and writes an adapter that shows every protocol hook and lists cleanly."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

import methods
from benchmark import registry as registry_module
from benchmark.cli import cli
from benchmark.errors import BenchError
from benchmark.registry import Registry
from methods import METHODS, MethodAdapter
from methods.scaffold import scaffold

ENGINE = Path(__file__).resolve().parents[2] / "benchmark" / "engine.py"


def registry_with_plugin(monkeypatch, name: str, obj, dist: str) -> Registry:
    """A fresh method registry with faster_rcnn built in and one fake installed plug-in, in place of METHODS."""
    ep = SimpleNamespace(name=name, value=f"{dist}:X", dist=SimpleNamespace(name=dist), load=lambda: obj)
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [ep] if group == "noisybox_bench.methods" else [])
    reg = Registry("method", entry_point_group="noisybox_bench.methods")
    reg.add("faster_rcnn", METHODS.get("faster_rcnn"))
    monkeypatch.setattr(methods, "METHODS", reg)
    return reg


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A fresh scaffold for `scaffold_probe`, its folder on sys.path; yields (folder, adapter class)."""
    out = tmp_path / "pkg"
    scaffold("scaffold_probe", out)
    monkeypatch.syspath_prepend(str(out))
    yield out, importlib.import_module("noisybox_scaffold_probe.adapter").ScaffoldProbe
    for mod in ("noisybox_scaffold_probe.adapter", "noisybox_scaffold_probe.config", "noisybox_scaffold_probe"):
        sys.modules.pop(mod, None)


def test_new_method_refuses_a_builtin_name_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "pkg"
    res = subprocess.run([sys.executable, "-m", "benchmark.cli", "new-method", "faster_rcnn", "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [
        "error: method name 'faster_rcnn' is already registered by builtin (methods.faster_rcnn:FasterRCNN); "
        "choose another name"]
    assert not out.exists()


def test_new_method_refuses_the_name_of_an_installed_plugin(tmp_path, monkeypatch):
    class Theirs(MethodAdapter):
        name = "their_method"

    registry_with_plugin(monkeypatch, "their_method", Theirs, "noisybox-their-method")
    with pytest.raises(BenchError, match=r"'their_method' is already registered by plugin:noisybox-their-method "):
        scaffold("their_method", tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()
    assert scaffold("my_own_method", tmp_path / "mine")  # a free name still scaffolds


def test_new_method_refuses_a_name_whose_package_is_installed(tmp_path, monkeypatch):
    # `my-method` after `my_method`: the same noisybox_my_method package, so pip would replace the first one
    (tmp_path / "site" / "noisybox_taken_name").mkdir(parents=True)
    (tmp_path / "site" / "noisybox_taken_name" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(BenchError, match=r"'taken-name' would be packaged as noisybox-taken-name "
                                         r"\(noisybox_taken_name\), but module noisybox_taken_name is already"):
        scaffold("taken-name", tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_a_name_with_a_plus_writes_valid_toml(tmp_path):
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    scaffold("foo+bar", tmp_path / "pkg")
    project = tomllib.loads((tmp_path / "pkg" / "pyproject.toml").read_text())  # `foo+bar = ...` did not parse
    assert project["project"]["entry-points"]["noisybox_bench.methods"] == {
        "foo+bar": "noisybox_foo_bar.adapter:FooBar"}


def test_the_adapter_shows_every_protocol_hook(probe):
    out, cls = probe
    source = (out / "noisybox_scaffold_probe" / "adapter.py").read_text()
    protocol = {n: callable(v) for n, v in vars(MethodAdapter).items() if not n.startswith("_")}
    assert {"default_config", "profile_overrides", "build_model", "train", "predict", "relative_cost"} <= set(protocol)
    # a method as a def (written or commented out), an attribute as an assignment in the class body
    missing = [n for n, method in protocol.items()
               if not re.search(rf"^    (# )?def {n}\(" if method else rf"^    {n} = ", source, re.M)]
    assert not missing, f"protocol members absent from the template: {missing}"
    model_hooks = set(re.findall(r'_call_hook\([\w.]*model, "(\w+)"', ENGINE.read_text()))
    assert model_hooks == {"set_epoch", "set_diagnostics", "refined_boxes", "diagnostics"}
    assert not [h for h in model_hooks if f"model.{h} = " not in source]
    # the overrides it does write keep the suite's behaviour
    assert "relative_cost" in vars(cls) and cls.relative_cost == MethodAdapter.relative_cost
    assert "profile_overrides" in vars(cls)
    assert cls().profile_overrides("cpu", 0.2) == MethodAdapter().profile_overrides("cpu", 0.2)


def test_a_fresh_scaffold_lists_without_none_and_its_readme_has_no_placeholder_link(probe, monkeypatch):
    out, cls = probe
    registry_with_plugin(monkeypatch, "scaffold_probe", cls, "noisybox-scaffold-probe")
    res = CliRunner().invoke(cli, ["methods", "ls"])
    assert res.exit_code == 0, res.output
    (row,) = [line for line in res.output.splitlines() if line.startswith("scaffold_probe ")]
    assert re.fullmatch(r"scaffold_probe +TODO: paper title +plugin:noisybox-scaffold-probe +-", row), row
    readme = (out / "README.md").read_text()
    assert not re.search(r"\]\(https?://[^/)]*/?\)", readme), readme  # a link to a bare host is a placeholder
