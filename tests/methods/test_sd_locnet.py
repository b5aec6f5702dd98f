"""SD-LocNet: stability score, memory refinement of reliable instances, prior propagation, stability weighting."""

from __future__ import annotations

import pytest
import torch

from benchmark.config import resolve_config
from benchmark.testing import TINY_OVERRIDES
from methods import get_method
from methods.sd_locnet import prior_propagation, refine, stability


def test_stability_is_the_iou_of_prediction_and_memory():
    mem = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]])
    assert stability(pred, mem).tolist() == pytest.approx([1.0, 0.5])


def test_only_reliable_instances_move_towards_their_prediction():
    mem = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    pred = torch.tensor([[0.0, 0.0, 10.0, 8.0], [0.0, 0.0, 10.0, 4.0]])
    s = stability(pred, mem)  # 0.8 and 0.4
    new, reliable = refine(mem, pred, s, reliable_iou=0.7, momentum=0.5)
    assert reliable.tolist() == [True, False]
    assert new.tolist() == [[0.0, 0.0, 10.0, 9.0], [0.0, 0.0, 10.0, 10.0]]


def test_prior_propagation_pulls_unreliable_features_to_the_reliable_class_prototype():
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], requires_grad=True)
    labels = torch.tensor([1, 1, 1, 2])
    reliable = torch.tensor([True, True, False, False])  # class 2 has no reliable instance: not pulled
    loss = prior_propagation(f, labels, reliable)
    assert loss.item() == pytest.approx(1.0)  # cos(e2, e1) = 0
    loss.backward()
    assert f.grad[3].abs().sum().item() == 0 and f.grad[:2].abs().sum().item() == 0  # prototype detached
    assert f.grad[2].abs().sum().item() > 0


def test_unstable_instances_count_less_and_the_memory_is_exported(monkeypatch):
    m = get_method("sd_locnet")
    cfg = resolve_config(m, "cpu", "shapes", 0.4, TINY_OVERRIDES)
    torch.manual_seed(0)
    model = m.build_model(cfg, 2).train()
    model.set_epoch(1, 2)  # past refine_start
    t = [{"boxes": torch.tensor([[5.0, 5.0, 30.0, 30.0], [34.0, 30.0, 60.0, 60.0]]), "labels": torch.tensor([1, 2]),
          "ann_ids": torch.tensor([7, 8]), "orig_size": torch.tensor([64, 64]), "flip": torch.tensor([False, False])}]
    losses = model([torch.rand(3, 64, 64)], t)
    assert {"loss_classifier", "loss_box_reg", "loss_prior"} <= set(losses)
    assert set(model.refined_boxes()) == {7, 8}
    d = model.diagnostics()
    assert 0.0 <= d["sdloc_mean_stability"] <= 1.0


def test_box_loss_is_weighted_by_stability(monkeypatch):
    import methods.sd_locnet as sd

    m = get_method("sd_locnet")
    cfg = resolve_config(m, "cpu", "shapes", 0.4, TINY_OVERRIDES)
    t = [{"boxes": torch.tensor([[5.0, 5.0, 30.0, 30.0]]), "labels": torch.tensor([1]), "ann_ids": torch.tensor([7]),
          "orig_size": torch.tensor([64, 64]), "flip": torch.tensor([False, False])}]
    image = torch.rand(3, 64, 64)
    got = {}
    for value in (0.0, 1.0):
        monkeypatch.setattr(sd, "stability", lambda pred, mem, v=value: torch.full((len(mem),), v))
        torch.manual_seed(0)
        model = m.build_model(cfg, 2).train()
        torch.manual_seed(1)
        got[value] = model([image], t)["loss_box_reg"].item()
    assert got[0.0] == 0.0 and got[1.0] > 0.0


def test_a_batch_without_boxes_trains():
    m = get_method("sd_locnet")
    cfg = resolve_config(m, "cpu", "shapes", 0.4, TINY_OVERRIDES)
    model = m.build_model(cfg, 2).train()
    t = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
          "ann_ids": torch.zeros(0, dtype=torch.int64), "orig_size": torch.tensor([64, 64]),
          "flip": torch.tensor([False, False])}]
    losses = model([torch.rand(3, 64, 64)], t)
    assert all(torch.isfinite(v) for v in losses.values()) and model.refined_boxes() == {}
