"""A plug-in whose entry-point name is already taken is skipped, but never silently: the user must learn that their
adapter does not run and whose does instead."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest

from benchmark import registry as registry_module
from benchmark.registry import Registry
from methods import METHODS

GROUP = "noisybox_bench.test_widgets"


def fake_entry_point(name: str, obj, dist: str):
    """What `importlib.metadata.entry_points` yields for an installed package; records whether it was loaded."""
    ep = SimpleNamespace(name=name, value=f"{dist.replace('-', '_')}.adapter:Thing", dist=SimpleNamespace(name=dist),
                         loaded=False)

    def load():
        ep.loaded = True
        return obj

    ep.load = load
    return ep


@pytest.fixture
def installed(monkeypatch):
    """Install fake entry points into GROUP: `installed(ep, ...)`."""
    def install(*eps):
        monkeypatch.setattr(registry_module, "entry_points", lambda group: list(eps) if group == GROUP else [])

    return install


def test_a_plugin_shadowed_by_a_builtin_warns_with_its_distribution_and_the_owner(installed):
    reg = Registry("method", entry_point_group=GROUP)
    builtin = METHODS.get("faster_rcnn")
    reg.add("faster_rcnn", builtin)
    ep = fake_entry_point("faster_rcnn", object(), "noisybox-my-rcnn")
    installed(ep)
    with pytest.warns(UserWarning) as caught:
        assert reg.get("faster_rcnn") is builtin
    (w,) = caught
    message = str(w.message)
    assert "'faster_rcnn' from noisybox-my-rcnn" in message
    assert "already registered by builtin (methods.faster_rcnn:FasterRCNN)" in message
    assert "\n" not in message
    assert reg.origin("faster_rcnn") == "builtin" and not ep.loaded


def test_a_plugin_shadowed_by_another_plugin_names_the_first_distribution(installed):
    reg = Registry("method", entry_point_group=GROUP)
    first, second = object(), object()
    installed(fake_entry_point("dup", first, "noisybox-first"), fake_entry_point("dup", second, "noisybox-second"))
    with pytest.warns(UserWarning, match=r"'dup' from noisybox-second .* already registered by plugin:noisybox-first"):
        assert reg.get("dup") is first
    assert reg.origin("dup") == "plugin:noisybox-first"


def test_a_plugin_with_a_free_name_loads_without_a_warning(installed):
    reg = Registry("method", entry_point_group=GROUP)
    reg.add("faster_rcnn", METHODS.get("faster_rcnn"))
    plugin = object()
    installed(fake_entry_point("my_method", plugin, "noisybox-my-method"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reg.get("my_method") is plugin
    assert reg.origin("my_method") == "plugin:noisybox-my-method"
    assert reg.owner("my_method") == "plugin:noisybox-my-method"  # an instance: no module:name to add
