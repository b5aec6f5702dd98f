"""Box geometry shared by the core and the methods.

Inside the detector, boxes live in the *model frame*: the data pipeline may flip an image (in original pixels) and
the model transform then resizes it. Methods that refine their training boxes must report them in the *original*
frame (COCO pixels of the unflipped image); `boxes_to_original` undoes both steps using the target's
`orig_size` and `flip` entries, `boxes_from_original` applies them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.ops import box_iou as _box_iou

__all__ = ["xywh_to_xyxy", "xyxy_to_xywh", "box_iou", "paired_iou", "flip_boxes", "boxes_to_original",
           "boxes_from_original", "clip_boxes", "XYXYBoxCoder"]


def _as_tensor(boxes) -> torch.Tensor:
    t = torch.as_tensor(boxes, dtype=torch.float32) if not isinstance(boxes, torch.Tensor) else boxes
    return t.reshape(-1, 4) if t.numel() == 0 or t.dim() == 1 else t


def xywh_to_xyxy(boxes) -> torch.Tensor:
    """COCO [x, y, w, h] -> [x1, y1, x2, y2] (continuous coordinates: x2 = x + w)."""
    b = _as_tensor(boxes)
    return torch.cat([b[..., :2], b[..., :2] + b[..., 2:]], dim=-1)


def xyxy_to_xywh(boxes) -> torch.Tensor:
    b = _as_tensor(boxes)
    return torch.cat([b[..., :2], b[..., 2:] - b[..., :2]], dim=-1)


def box_iou(a, b) -> torch.Tensor:
    """Pairwise IoU matrix (N x M) of xyxy boxes (torchvision.ops.box_iou)."""
    return _box_iou(_as_tensor(a), _as_tensor(b))


def paired_iou(a, b) -> torch.Tensor:
    """IoU of a[i] with b[i] (N,), without building the N x N matrix."""
    a, b = _as_tensor(a), _as_tensor(b)
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    return inter / (area_a + area_b - inter).clamp(min=1e-12)


def clip_boxes(boxes, hw: Sequence[int]) -> torch.Tensor:
    h, w = float(hw[0]), float(hw[1])
    b = _as_tensor(boxes).clone()
    b[:, 0::2] = b[:, 0::2].clamp(0, w)
    b[:, 1::2] = b[:, 1::2].clamp(0, h)
    return b


def flip_boxes(boxes, hw: Sequence[int], hflip: bool, vflip: bool) -> torch.Tensor:
    """Mirror xyxy boxes of an image of size `hw` = (h, w); flipping is its own inverse."""
    b = _as_tensor(boxes).clone()
    h, w = float(hw[0]), float(hw[1])
    if hflip:
        b[:, [0, 2]] = w - b[:, [2, 0]]
    if vflip:
        b[:, [1, 3]] = h - b[:, [3, 1]]
    return b


def _target_geometry(target: dict) -> tuple[tuple[float, float], bool, bool]:
    oh, ow = (float(v) for v in torch.as_tensor(target["orig_size"]).tolist())
    flip = target.get("flip")
    hflip, vflip = (bool(v) for v in torch.as_tensor(flip).tolist()) if flip is not None else (False, False)
    return (oh, ow), hflip, vflip


def boxes_to_original(boxes_xyxy, resized_hw: Sequence[int], target: dict) -> torch.Tensor:
    """Model-frame xyxy boxes (image resized to `resized_hw`, possibly flipped) -> original-image pixels.

    `resized_hw` is the image size after the model transform's resize and before batch padding (the
    `image_sizes` / `image_shapes` torchvision passes to the heads); `target` is the training target of that image
    (its `orig_size` and `flip` entries).
    """
    b = _as_tensor(boxes_xyxy).detach().float()
    (oh, ow), hflip, vflip = _target_geometry(target)
    rh, rw = float(resized_hw[0]), float(resized_hw[1])
    scale = b.new_tensor([ow / rw, oh / rh, ow / rw, oh / rh])
    return flip_boxes(b * scale, (oh, ow), hflip, vflip)


def boxes_from_original(boxes_xyxy, resized_hw: Sequence[int], target: dict) -> torch.Tensor:
    """Inverse of `boxes_to_original`: original-image pixels -> the model frame of this (flipped, resized) image."""
    b = _as_tensor(boxes_xyxy).detach().float()
    (oh, ow), hflip, vflip = _target_geometry(target)
    rh, rw = float(resized_hw[0]), float(resized_hw[1])
    b = flip_boxes(b, (oh, ow), hflip, vflip)
    return b * b.new_tensor([rw / ow, rh / oh, rw / ow, rh / oh])


class XYXYBoxCoder:
    """DeltaXYXY coding (mmdet `DeltaXYXYBBoxCoder` of the OA-MIL fork; its RPN uses stds 1.0, its RCNN 0.1): each
    corner moves by a fraction of the reference box's size.

    d = ((gx1 - px1) / pw, (gy1 - py1) / ph, (gx2 - px2) / pw, (gy2 - py2) / ph) / stds. Linear (no exp), so the
    L1 loss on codes is proportional to corner errors. Same interface as torchvision's `BoxCoder` so that
    torchvision's RPN and `RoIHeads` use it unchanged.
    """

    def __init__(self, stds: tuple[float, float, float, float] = (0.1, 0.1, 0.1, 0.1)):
        self.stds = tuple(float(s) for s in stds)

    def _stds(self, like: torch.Tensor) -> torch.Tensor:
        return like.new_tensor(self.stds)

    def encode_single(self, reference_boxes: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """Codes that move `proposals` onto `reference_boxes` (both (N, 4) xyxy)."""
        reference_boxes, p = reference_boxes.float(), proposals.float()
        size = (p[:, 2:] - p[:, :2]).repeat(1, 2)
        return (reference_boxes - p) / size / self._stds(p)

    def encode(self, reference_boxes: list[torch.Tensor], proposals: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        per_image = [len(b) for b in reference_boxes]
        return self.encode_single(torch.cat(reference_boxes), torch.cat(proposals)).split(per_image, 0)

    def decode_single(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(N, 4K) codes applied to (N, 4) boxes -> (N, 4K) boxes, in float32 (AMP codes are half precision)."""
        rel_codes, boxes = rel_codes.float(), boxes.float()
        k = rel_codes.shape[1] // 4
        size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        return boxes.repeat(1, k) + rel_codes * self._stds(rel_codes).repeat(k) * size.repeat(1, k)

    def decode(self, rel_codes: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        concat = torch.cat(boxes, dim=0)
        n = concat.shape[0]
        if n == 0:
            return rel_codes.reshape(0, max(rel_codes.shape[-1] // 4, 1), 4)
        return self.decode_single(rel_codes.reshape(n, -1), concat).reshape(n, -1, 4)
