"""Co-teaching: the forget-rate schedule, small-loss selection, and the cross update (A trains on B's picks)."""

from __future__ import annotations

import pytest
import torch

from benchmark.config import resolve_config
from benchmark.testing import TINY_OVERRIDES
from methods import get_method
from methods.co_teaching import cross_select, remember_rate, small_loss


def test_remember_rate_ramps_down_to_one_minus_tau_over_tk():
    # tau 0.4, T_k = 0.25 x 12 = 3 epochs: 1, 1 - 0.4/3, 1 - 0.8/3, then 0.6 for good
    got = [remember_rate(e, 12, 0.4, 0.25) for e in range(6)]
    assert got == pytest.approx([1.0, 1 - 0.4 / 3, 1 - 0.8 / 3, 0.6, 0.6, 0.6])


def test_small_loss_keeps_the_int_rate_n_smallest_and_at_least_one():
    losses = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.2])
    assert small_loss(losses, 0.6).tolist() == [False, True, False, True, True]
    assert small_loss(losses, 0.01).tolist() == [False, True, False, False, False]
    assert small_loss(torch.zeros(0), 0.5).numel() == 0


def test_cross_select_gives_each_network_its_peers_small_loss_set():
    loss_a = torch.tensor([0.1, 0.9, 0.5, 0.2])
    loss_b = torch.tensor([0.8, 0.1, 0.2, 0.7])
    for_a, for_b = cross_select(loss_a, loss_b, 0.5)
    assert for_a.tolist() == [False, True, True, False]  # B's two smallest
    assert for_b.tolist() == [True, False, False, True]  # A's two smallest


def test_network_a_trains_on_the_boxes_network_b_scored_small(monkeypatch):
    m = get_method("co_teaching")
    cfg = resolve_config(m, "cpu", "shapes", 0.5, TINY_OVERRIDES)
    assert cfg["method"]["forget_rate"] == 0.5
    model = m.build_model(cfg, 2).train()
    model.set_epoch(11, 12)
    assert model.rate == pytest.approx(0.5)
    boxes = torch.tensor([[2.0, 2.0, 20.0, 20.0], [30.0, 30.0, 60.0, 60.0], [5.0, 30.0, 25.0, 60.0],
                          [40.0, 2.0, 60.0, 20.0]])
    targets = [{"boxes": boxes, "labels": torch.tensor([1, 2, 1, 2])}]
    scores = {id(model.a): torch.tensor([0.1, 0.2, 0.9, 0.8]), id(model.b): torch.tensor([0.9, 0.1, 0.2, 0.8])}
    monkeypatch.setattr(type(model), "annotation_loss", lambda self, net, f, s, t: scores[id(net)])
    seen = {}
    for tag in "ab":
        net = getattr(model, tag)
        inner = net.rpn.forward

        def spy(images, features, tgts, _inner=inner, _tag=tag):
            seen[_tag] = tgts[0]["boxes"].clone()
            return _inner(images, features, tgts)

        monkeypatch.setattr(net.rpn, "forward", spy)
    losses = model([torch.rand(3, 64, 64)], targets)
    assert {k[:2] for k in losses} == {"a_", "b_"} and len(losses) == 8
    torch.testing.assert_close(seen["a"], boxes[[1, 2]])  # B's small-loss boxes
    torch.testing.assert_close(seen["b"], boxes[[0, 1]])  # A's small-loss boxes
    assert model.diagnostics()["kept_fraction"] == pytest.approx(0.5)


def test_predicts_with_the_first_network():
    m = get_method("co_teaching")
    cfg = resolve_config(m, "cpu", "shapes", 0.3, {**TINY_OVERRIDES})
    model = m.build_model(cfg, 2).eval()
    x = [torch.rand(3, 64, 64)]
    with torch.no_grad():
        a, both = model.a(x)[0], model(x)[0]
    torch.testing.assert_close(both["boxes"], a["boxes"])


def test_forget_rate_defaults_to_the_noise_level():
    m = get_method("co_teaching")
    assert m.default_config("cpu", 0.4)["forget_rate"] == 0.4
    assert m.default_config("cpu", 0.0)["forget_rate"] == 0.0  # clean data: nothing to forget
    assert m.default_config("cpu", None)["forget_rate"] == 0.2
