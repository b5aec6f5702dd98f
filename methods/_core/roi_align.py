"""RoIAlign with a faster CPU backward: the core detector's box head and SSD-Det's refiner pool through it.

Forward is torchvision's `roi_align` (aligned=False, fixed sampling ratio). On CPU torchvision's backward walks
every (RoI, channel, bin) and recomputes the bilinear weights per channel: ~0.3 s of a 0.8 s `cpu`-profile Faster
R-CNN step (1024 RoIs), and it dominated an SSD-Det CPU step; the sparse product below takes ~0.09 s.
RoIAlign is linear in the features and its bilinear weights factor into a y part and an x part (the out-of-image
test too), so the backward is one sparse matrix product: grad_features[N*H*W, C] = S^T grad_out[R*P*Q, C], with
(2*sr)^2 non-zeros per output bin. Same numbers as torchvision's backward up to float summation order
(`tests/test_ssd_det.py` checks it, borders included). CUDA tensors and adaptive sampling (ratio 0) use
torchvision's own op.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales


def _axis_weights(start: Tensor, end: Tensor, bins: int, sr: int, length: int) -> tuple[Tensor, Tensor]:
    """Sample indices and weights along one axis, as torchvision's CPU kernel computes them:
    `[R, bins, 2*sr]` (low and high neighbour of each of the sr samples per bin; weights include 1/sr)."""
    size = (end - start).clamp(min=1.0)  # aligned=False: RoIs at least one feature cell wide
    bin_size = size / bins
    p = torch.arange(bins, dtype=start.dtype, device=start.device)
    i = torch.arange(sr, dtype=start.dtype, device=start.device)
    v = start[:, None, None] + p[None, :, None] * bin_size[:, None, None] \
        + (i[None, None, :] + 0.5) * bin_size[:, None, None] / sr  # [R, bins, sr]
    inside = (v >= -1.0) & (v <= length)
    v = v.clamp(min=0.0)
    lo = v.floor()
    at_end = lo >= length - 1
    lo = torch.where(at_end, torch.full_like(lo, length - 1), lo)
    v = torch.where(at_end, lo, v)
    hi = torch.where(at_end, lo, lo + 1)
    frac = v - lo
    idx = torch.stack([lo, hi], dim=-1).long()
    w = torch.stack([1.0 - frac, frac], dim=-1) * inside[..., None] / sr
    return idx.reshape(len(start), bins, 2 * sr), w.reshape(len(start), bins, 2 * sr)


class _RoIAlignSparseBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: Tensor, rois: Tensor, output_size: tuple[int, int], scale: float, sr: int) -> Tensor:
        ctx.save_for_backward(rois)
        ctx.meta = (features.shape, features.dtype, output_size, scale, sr)
        return roi_align(features, rois, output_size, scale, sr, aligned=False)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (rois,) = ctx.saved_tensors
        (n, c, h, w), dtype, (ph, pw), scale, sr = ctx.meta
        r = rois.shape[0]
        if r == 0:
            return grad.new_zeros((n, c, h, w), dtype=dtype), None, None, None, None
        rois = rois.float()
        iy, wy = _axis_weights(rois[:, 2] * scale, rois[:, 4] * scale, ph, sr, h)
        ix, wx = _axis_weights(rois[:, 1] * scale, rois[:, 3] * scale, pw, sr, w)
        b = rois[:, 0].long()
        k = 2 * sr
        pixel = (b[:, None, None, None, None] * h + iy[:, :, None, :, None]) * w + ix[:, None, :, None, :]
        weight = wy[:, :, None, :, None] * wx[:, None, :, None, :]  # [R, ph, pw, k, k]
        col = torch.arange(r * ph * pw, device=grad.device).repeat_interleave(k * k)
        s = torch.sparse_coo_tensor(torch.stack([pixel.reshape(-1), col]), weight.reshape(-1),
                                    (n * h * w, r * ph * pw), check_invariants=False)
        g = grad.float().permute(0, 2, 3, 1).reshape(r * ph * pw, c)
        out = torch.sparse.mm(s, g).reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous()
        return out.to(dtype), None, None, None, None


def roi_align_fast_backward(features: Tensor, rois: Tensor, output_size: tuple[int, int], scale: float,
                            sampling_ratio: int) -> Tensor:
    """torchvision `roi_align(..., aligned=False)` whose CPU backward is a sparse matrix product."""
    if features.is_cuda or sampling_ratio <= 0 or not torch.is_grad_enabled() or not features.requires_grad:
        return roi_align(features, rois, output_size, scale, sampling_ratio, aligned=False)
    return _RoIAlignSparseBackward.apply(features, rois, tuple(output_size), float(scale), int(sampling_ratio))


class FastMultiScaleRoIAlign(MultiScaleRoIAlign):
    """`MultiScaleRoIAlign` (same level mapping and output) using `roi_align_fast_backward` per level."""

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        x_filtered = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(x_filtered, image_shapes, self.canonical_scale,
                                                         self.canonical_level)
        rois = _convert_to_roi_format(boxes)
        if len(x_filtered) == 1:
            return roi_align_fast_backward(x_filtered[0], rois, self.output_size, self.scales[0], self.sampling_ratio)
        levels = self.map_levels(boxes)
        if len(rois) and bool((levels == levels[0]).all()):  # one level holds every RoI (small objects: P2)
            level = int(levels[0])
            return roi_align_fast_backward(x_filtered[level], rois, self.output_size, self.scales[level],
                                           self.sampling_ratio).to(x_filtered[0].dtype)
        first = x_filtered[0]
        result = first.new_zeros((len(rois), first.shape[1]) + tuple(self.output_size))
        for level, (feat, scale) in enumerate(zip(x_filtered, self.scales)):
            idx = torch.where(levels == level)[0]
            out = roi_align_fast_backward(feat, rois[idx], self.output_size, scale, self.sampling_ratio)
            result[idx] = out.to(result.dtype)  # in place, as torchvision: each row copied once, not the result per level
        return result
