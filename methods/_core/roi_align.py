"""RoIAlign with a faster CPU backward: the core detector's box head and SSD-Det's refiner pool through it.

Forward is torchvision's `roi_align`, either convention: `aligned=False` with a fixed sampling ratio (torchvision's
detector) or mmcv's `aligned=True` (half-pixel shift, no 1-cell minimum size) with adaptive sampling
(`sampling_ratio=0`: ceil(RoI size / bins) samples per bin and axis), the mmdet detectors' RoIAlign. On CPU
torchvision's backward walks
every (RoI, channel, bin) and recomputes the bilinear weights per channel: ~0.3 s of a 0.8 s `cpu`-profile Faster
R-CNN step (1024 RoIs), and it dominated an SSD-Det CPU step; the sparse product below takes ~0.09 s.
RoIAlign is linear in the features and its bilinear weights factor into a y part and an x part (the out-of-image
test too), so the backward is one sparse matrix product: grad_features[N*H*W, C] = S^T grad_out[R*P*Q, C], with
(2*sr)^2 non-zeros per output bin. Same numbers as torchvision's backward up to float summation order
(`tests/methods/test_ssd_det.py` and `tests/training/test_core_parity.py` check it, borders, `aligned` and adaptive sampling
included). CUDA tensors use torchvision's own op.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales


def _axis_weights(start: Tensor, end: Tensor, bins: int, sr: int, length: int,
                  aligned: bool = False) -> tuple[Tensor, Tensor]:
    """Sample indices and weights along one axis, as torchvision's CPU kernel computes them:
    `[R, bins, 2*k]` (low and high neighbour of each of the k samples per bin; weights include 1/samples).
    `sr > 0`: k = sr samples per bin; `sr == 0` (adaptive): ceil(RoI size / bins) samples for each RoI, k their
    maximum, the unused ones weighted 0."""
    size = end - start
    if not aligned:
        size = size.clamp(min=1.0)  # aligned=False: RoIs at least one feature cell wide
    bin_size = size / bins
    if sr > 0:
        grid = torch.full_like(start, float(sr))
    else:
        grid = torch.ceil(bin_size).clamp(min=0.0)  # ceil(roi_size / pooled_size), as the kernel
    k = max(int(grid.max()) if grid.numel() else 1, 1)
    p = torch.arange(bins, dtype=start.dtype, device=start.device)
    i = torch.arange(k, dtype=start.dtype, device=start.device)
    g = grid.clamp(min=1.0)[:, None, None]
    v = start[:, None, None] + p[None, :, None] * bin_size[:, None, None] \
        + (i[None, None, :] + 0.5) * bin_size[:, None, None] / g  # [R, bins, k]
    used = i[None, None, :] < grid[:, None, None]
    inside = (v >= -1.0) & (v <= length) & used
    v = v.clamp(min=0.0)
    lo = v.floor()
    at_end = lo >= length - 1
    lo = torch.where(at_end, torch.full_like(lo, length - 1), lo)
    v = torch.where(at_end, lo, v)
    hi = torch.where(at_end, lo, lo + 1)
    frac = v - lo
    idx = torch.stack([lo, hi], dim=-1).long().clamp(min=0)
    w = torch.stack([1.0 - frac, frac], dim=-1) * inside[..., None] / g[..., None]
    return idx.reshape(len(start), bins, 2 * k), w.reshape(len(start), bins, 2 * k)


class _RoIAlignSparseBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: Tensor, rois: Tensor, output_size: tuple[int, int], scale: float, sr: int,
                aligned: bool) -> Tensor:
        ctx.save_for_backward(rois)
        ctx.meta = (features.shape, features.dtype, output_size, scale, sr, aligned)
        return roi_align(features, rois, output_size, scale, sr, aligned=aligned)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (rois,) = ctx.saved_tensors
        (n, c, h, w), dtype, (ph, pw), scale, sr, aligned = ctx.meta
        r = rois.shape[0]
        if r == 0:
            return grad.new_zeros((n, c, h, w), dtype=dtype), None, None, None, None, None
        rois = rois.float()
        off = 0.5 if aligned else 0.0
        iy, wy = _axis_weights(rois[:, 2] * scale - off, rois[:, 4] * scale - off, ph, sr, h, aligned)
        ix, wx = _axis_weights(rois[:, 1] * scale - off, rois[:, 3] * scale - off, pw, sr, w, aligned)
        b = rois[:, 0].long()
        ky, kx = iy.shape[-1], ix.shape[-1]
        pixel = (b[:, None, None, None, None] * h + iy[:, :, None, :, None]) * w + ix[:, None, :, None, :]
        weight = wy[:, :, None, :, None] * wx[:, None, :, None, :]  # [R, ph, pw, ky, kx]
        col = torch.arange(r * ph * pw, device=grad.device).repeat_interleave(ky * kx)
        s = torch.sparse_coo_tensor(torch.stack([pixel.reshape(-1), col]), weight.reshape(-1),
                                    (n * h * w, r * ph * pw), check_invariants=False)
        g = grad.float().permute(0, 2, 3, 1).reshape(r * ph * pw, c)
        out = torch.sparse.mm(s, g).reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous()
        return out.to(dtype), None, None, None, None, None


def roi_align_fast_backward(features: Tensor, rois: Tensor, output_size: tuple[int, int], scale: float,
                            sampling_ratio: int, aligned: bool = False) -> Tensor:
    """torchvision `roi_align(..., aligned=aligned)` whose CPU backward is a sparse matrix product."""
    if features.is_cuda or sampling_ratio < 0 or not torch.is_grad_enabled() or not features.requires_grad:
        return roi_align(features, rois, output_size, scale, sampling_ratio, aligned=aligned)
    return _RoIAlignSparseBackward.apply(features, rois, tuple(output_size), float(scale), int(sampling_ratio),
                                         bool(aligned))


class FastMultiScaleRoIAlign(MultiScaleRoIAlign):
    """`MultiScaleRoIAlign` (same level mapping and output) using `roi_align_fast_backward` per level; `aligned`
    as in `torchvision.ops.roi_align` (mmcv's default is True)."""

    def __init__(self, featmap_names, output_size, sampling_ratio: int, *, aligned: bool = False, **kwargs):
        super().__init__(featmap_names, output_size, sampling_ratio, **kwargs)
        self.aligned = bool(aligned)

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        x_filtered = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(x_filtered, image_shapes, self.canonical_scale,
                                                         self.canonical_level)
        rois = _convert_to_roi_format(boxes)
        if len(x_filtered) == 1:
            return roi_align_fast_backward(x_filtered[0], rois, self.output_size, self.scales[0], self.sampling_ratio,
                                           self.aligned)
        levels = self.map_levels(boxes)
        if len(rois) and bool((levels == levels[0]).all()):  # one level holds every RoI (small objects: P2)
            level = int(levels[0])
            return roi_align_fast_backward(x_filtered[level], rois, self.output_size, self.scales[level],
                                           self.sampling_ratio, self.aligned).to(x_filtered[0].dtype)
        first = x_filtered[0]
        result = first.new_zeros((len(rois), first.shape[1]) + tuple(self.output_size))
        for level, (feat, scale) in enumerate(zip(x_filtered, self.scales)):
            idx = torch.where(levels == level)[0]
            out = roi_align_fast_backward(feat, rois[idx], self.output_size, scale, self.sampling_ratio, self.aligned)
            result[idx] = out.to(result.dtype)  # in place, as torchvision: each row copied once, not the result per level
        return result
