"""DISCO's pieces against hand computations: the cluster distribution, DA-Ref's mix, the variance target,
top-k calibration selection, variance voting + soft-NMS, and the published settings per dataset and level."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.config import resolve_config
from methods import get_method
from methods.disco import hparams
from methods.disco.head import (
    cluster_distribution,
    corrected_targets,
    mix_weight,
    soft_nms_var_vote,
    top_per_cluster,
    variance_target,
)


def test_cluster_distribution_is_the_softmax_weighted_mean_and_std():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.5])
    cluster = torch.tensor([0, 0, 1])
    mean, std = cluster_distribution(boxes, scores, cluster, 2, temperature=0.1)
    w0 = math.exp(9) / (math.exp(9) + math.exp(8))  # softmax(score / T) in cluster 0
    mx = w0 * 0 + (1 - w0) * 2
    assert mean[0].tolist() == pytest.approx([mx, 0.0, 10 + mx, 10.0], rel=1e-5)
    sx = math.sqrt(w0 * mx ** 2 + (1 - w0) * (2 - mx) ** 2)
    assert std[0].tolist() == pytest.approx([sx, 0.0, sx, 0.0], rel=1e-5, abs=1e-6)
    assert mean[1].tolist() == pytest.approx([50.0, 50.0, 60.0, 60.0]) and std[1].abs().sum().item() == 0


def test_mix_weight_and_variance_target_by_hand():
    assert mix_weight(torch.tensor([0.9, 0.99]), 5.0, 0.85).tolist() == pytest.approx([0.9 ** 5, 0.85])
    std = torch.tensor([[2.0, 1.0, 0.0, 4.0]])
    pseudo = torch.tensor([[0.0, 0.0, 8.0, 4.0]])  # w 8, h 4
    want = [math.log(4 / 8), math.log(1 / 4), math.log(1e-6), math.log(16 / 4)]
    assert variance_target(std, pseudo)[0].tolist() == pytest.approx(want, rel=1e-5)


def test_top_per_cluster_takes_the_k_best_of_each():
    scores = torch.tensor([0.2, 0.9, 0.5, 0.7, 0.1])
    cluster = torch.tensor([0, 1, 0, 1, 2])
    assert sorted(top_per_cluster(scores, cluster, 3, 1).tolist()) == pytest.approx([0.1, 0.5, 0.9])
    assert sorted(top_per_cluster(scores, cluster, 3, 2).tolist()) == pytest.approx([0.1, 0.2, 0.5, 0.7, 0.9])


def test_variance_voting_and_gaussian_soft_nms_on_two_boxes():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0]])  # IoU 0.8
    scores = torch.tensor([0.9, 0.6])
    log_var = torch.zeros(2, 4)  # variance = 1 x (w, h, w, h)
    kept, kept_scores = soft_nms_var_vote(boxes, scores, log_var, 0.05, sigma=0.5, soft=True, nms_thresh=0.5,
                                          sigma_t=0.02)
    p_other = math.exp(-(0.2 ** 2) / 0.02)
    # y2: the other box's weight p / var(h = 8), the top box 1 / var(h = 10)
    a, b = p_other / 8.0, 1.0 / 10.0
    assert kept[0].tolist() == pytest.approx([0.0, 0.0, 10.0, (a * 8 + b * 10) / (a + b)], rel=1e-5)
    assert kept_scores.tolist() == pytest.approx([0.9, 0.6 * math.exp(-0.64 / 0.5)], rel=1e-5)
    hard, hard_scores = soft_nms_var_vote(boxes, scores, None, 0.05, 0.5, soft=False, nms_thresh=0.5, sigma_t=0.02)
    assert hard.tolist() == [[0.0, 0.0, 10.0, 10.0]] and hard_scores.tolist() == pytest.approx([0.9])


def test_corrected_targets_move_only_the_clustered_annotations():
    t = [{"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0], [5.0, 5.0, 9.0, 9.0]]), "labels": torch.tensor([1, 2])}]
    out = corrected_targets(t, torch.tensor([[1.0, 1.0, 5.0, 5.0]]), torch.tensor([[0, 1]]))
    assert out[0]["boxes"].tolist() == [[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 5.0, 5.0]]
    assert t[0]["boxes"][1].tolist() == [5.0, 5.0, 9.0, 9.0]  # the caller's targets are untouched


def test_published_settings_per_dataset_and_level():
    assert hparams("coco", 0.2)[0] == (0.01, 0.3, 0.01, 10.0, 0.7)
    assert hparams("voc", 0.4)[0] == (0.1, 0.1, 0.1, 5.0, 0.8)
    values, source = hparams("voc", 0.1)
    assert values == (0.1, 0.1, 0.1, 5.0, 0.8) and "paper leaves open" in source
    cfg = resolve_config(get_method("disco"), "paper", "coco", 0.2)
    assert (cfg["method"]["loss_lambda"], cfg["method"]["temperature"], cfg["method"]["mix_a"]) == (0.01, 0.01, 10.0)
    assert cfg["method"]["hparams_source"].startswith("published")


def test_training_step_exports_pseudo_boxes_between_the_noisy_box_and_the_cluster_mean():
    from benchmark.testing import TINY_OVERRIDES

    m = get_method("disco")
    cfg = resolve_config(m, "cpu", "shapes", 0.4, TINY_OVERRIDES)
    torch.manual_seed(0)
    model = m.build_model(cfg, 2).train()
    model.set_epoch(0, 2)
    t = [{"boxes": torch.tensor([[5.0, 5.0, 30.0, 30.0]]), "labels": torch.tensor([1]), "ann_ids": torch.tensor([7]),
          "orig_size": torch.tensor([64, 64]), "flip": torch.tensor([False, False])}]
    losses = model([torch.rand(3, 64, 64)], t)
    assert {"loss_cls_calib", "loss_box_reg", "loss_var", "loss_classifier"} <= set(losses)
    refined = model.refined_boxes()
    assert set(refined) == {7}
    phi = model.diagnostics()["disco_mean_phi"]
    assert 0 <= phi <= cfg["method"]["mix_b"]
