"""Box geometry: conversions, IoU, and the round trip data flip -> model resize -> back to original pixels."""

import pytest
import torch

from methods._core.geometry import (
    box_iou,
    boxes_from_original,
    boxes_to_original,
    flip_boxes,
    paired_iou,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
from methods._core.model import IMAGENET_MEAN, IMAGENET_STD, ResizeTransform


def test_xywh_xyxy_round_trip():
    xywh = torch.tensor([[10.0, 20.0, 5.5, 7.25], [0.0, 0.0, 1.0, 2.0]])
    xyxy = xywh_to_xyxy(xywh)
    assert torch.equal(xyxy, torch.tensor([[10.0, 20.0, 15.5, 27.25], [0.0, 0.0, 1.0, 2.0]]))
    assert torch.equal(xyxy_to_xywh(xyxy), xywh)
    assert xywh_to_xyxy([1, 2, 3, 4]).tolist() == [[1.0, 2.0, 4.0, 6.0]]
    assert xywh_to_xyxy([]).shape == (0, 4)


def test_iou_helpers_agree():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 15.0, 15.0]])
    full = box_iou(a, b)
    assert full[0, 0].item() == pytest.approx(0.5)
    assert torch.allclose(paired_iou(a, b), torch.diagonal(full))
    assert paired_iou(a[:1], torch.tensor([[20.0, 20.0, 30.0, 30.0]])).item() == 0.0


def test_flip_is_an_involution_and_mirrors():
    boxes = torch.tensor([[2.0, 3.0, 10.0, 7.0]])
    hw = (20, 40)
    h = flip_boxes(boxes, hw, True, False)
    assert h.tolist() == [[30.0, 3.0, 38.0, 7.0]]
    v = flip_boxes(boxes, hw, False, True)
    assert v.tolist() == [[2.0, 13.0, 10.0, 17.0]]
    assert torch.equal(flip_boxes(flip_boxes(boxes, hw, True, True), hw, True, True), boxes)


@pytest.mark.parametrize("hflip,vflip", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("size", [(48, 64), (240, 320)])
def test_round_trip_through_model_transform(hflip, vflip, size):
    """Boxes flipped by the data pipeline and resized by the model come back to the annotation in original pixels."""
    h, w = size
    original = torch.tensor([[3.0, 4.0, 20.5, 30.25], [0.0, 0.0, w / 2, h / 3]])
    target = {"boxes": flip_boxes(original, (h, w), hflip, vflip), "labels": torch.tensor([1, 2]),
              "orig_size": torch.tensor([h, w]), "flip": torch.tensor([hflip, vflip])}
    transform = ResizeTransform(100, 170, IMAGENET_MEAN, IMAGENET_STD, upscale=True).train()
    images, targets = transform([torch.rand(3, h, w)], [dict(target)])
    resized_hw = images.image_sizes[0]
    assert tuple(resized_hw) != (h, w)  # the transform really resized
    back = boxes_to_original(targets[0]["boxes"], resized_hw, targets[0])
    assert torch.allclose(back, original, atol=1e-4)
    again = boxes_from_original(original, resized_hw, targets[0])
    assert torch.allclose(again, targets[0]["boxes"], atol=1e-4)


def test_no_upscale_keeps_native_size_but_downsizes_large_images():
    t = ResizeTransform(240, 320, IMAGENET_MEAN, IMAGENET_STD, upscale=False).eval()
    small, _ = t([torch.rand(3, 128, 128)])
    assert small.image_sizes[0] == (128, 128)
    big, _ = t([torch.rand(3, 480, 640)])
    assert big.image_sizes[0] == (240, 320)
