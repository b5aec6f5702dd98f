"""CPU parity of the detector components the `paper` recipe switches on, against outside references on identical
inputs: torchvision's `roi_align` (forward and gradient, the sparse CPU backward included), hand-computed DeltaXYXY
codes, the L1 / smooth-L1 losses, mmdet's anchor formula, frozen-statistics BatchNorm, aspect-ratio grouped batches
and invalid padding anchors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from methods._core.roi_align import FastMultiScaleRoIAlign, roi_align_fast_backward


def _rois(n: int, h: int, w: int, scale: float, seed: int) -> torch.Tensor:
    """Boxes in image pixels over a feature map of h x w at `scale`: tiny, huge, crossing every border, degenerate."""
    g = torch.Generator().manual_seed(seed)
    img_w, img_h = w / scale, h / scale
    x1 = torch.rand(n, generator=g) * img_w * 1.2 - 0.1 * img_w
    y1 = torch.rand(n, generator=g) * img_h * 1.2 - 0.1 * img_h
    bw = torch.rand(n, generator=g) ** 2 * img_w
    bh = torch.rand(n, generator=g) ** 2 * img_h
    boxes = torch.stack([x1, y1, x1 + bw, y1 + bh], 1)
    boxes[0] = torch.tensor([3.0, 3.0, 3.0, 3.0])  # zero size
    boxes[1] = torch.tensor([-5.0, -5.0, img_w + 5, img_h + 5])  # whole image and beyond
    batch = torch.randint(0, 2, (n, 1), generator=g).float()
    return torch.cat([batch, boxes], 1)


@pytest.mark.parametrize("aligned,ratio", [(True, 0), (True, 2), (False, 0), (False, 2)])
def test_roi_align_forward_and_gradient_match_torchvision(aligned, ratio):
    """The sparse CPU backward (used whenever features need a gradient) against torchvision's own op."""
    torch.manual_seed(0)
    scale = 0.25
    feats = torch.randn(2, 5, 13, 17)
    rois = _rois(40, 13, 17, scale, seed=1)
    a = feats.clone().requires_grad_(True)
    b = feats.clone().requires_grad_(True)
    out_fast = roi_align_fast_backward(a, rois, (7, 7), scale, ratio, aligned)
    out_ref = roi_align(b, rois, (7, 7), scale, ratio, aligned=aligned)
    torch.testing.assert_close(out_fast, out_ref)
    grad = torch.randn_like(out_ref)
    out_fast.backward(grad)
    out_ref.backward(grad)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)  # float32, another summation order
    assert a.grad.abs().sum().item() > 0


def test_aligned_and_adaptive_differ_from_the_torchvision_default():
    """The switch changes numbers (a half-pixel shift, more samples on large RoIs): not a no-op."""
    feats = torch.randn(1, 3, 20, 20)
    rois = torch.tensor([[0.0, 8.0, 8.0, 72.0, 60.0]])
    legacy = roi_align(feats, rois, (7, 7), 0.25, 2, aligned=False)
    mmcv = roi_align_fast_backward(feats, rois, (7, 7), 0.25, 0, True)
    assert (legacy - mmcv).abs().max().item() > 1e-3


def test_multiscale_pool_passes_aligned_and_ratio():
    """`FastMultiScaleRoIAlign` with aligned/adaptive equals torchvision per level (one level holds all RoIs)."""
    feats = {"0": torch.randn(1, 4, 32, 32, requires_grad=True)}
    boxes = [torch.tensor([[1.0, 2.0, 30.0, 40.0], [10.0, 10.0, 100.0, 90.0]])]
    pool = FastMultiScaleRoIAlign(["0"], 7, 0, aligned=True)
    out = pool(feats, boxes, [(128, 128)])
    ref = roi_align(feats["0"], [boxes[0]], (7, 7), 0.25, 0, aligned=True)
    torch.testing.assert_close(out, ref)
