"""Loss normalisations of SSD-Det's refiner checked against the reference code (PointTinyBenchmark
SSD-Det branch, `MIL_bbox_head_EPLUS.py`; docs/methods.md "SSD-Det step by step"): SPSD is an mmdet `L1Loss` summed
over the 4 codes and averaged over proposals; the stage-II negatives carry their own weight (0.75 x mean stage-I bag
score), not also the MIL loss weight."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import MultiScaleRoIAlign

from methods.ssd_det.refiner import (
    BOX_CODER_WEIGHTS,
    RefinerSettings,
    SSDRefiner,
    clip_to_image,
    neighbourhood_proposals,
)

BOXES = torch.tensor([[4.0, 4.0, 30.0, 40.0], [20.0, 10.0, 50.0, 30.0], [8.0, 8.0, 40.0, 40.0]])
LABELS = torch.tensor([1, 3, 2])
OBJ_IMG = torch.tensor([0, 0, 1])
SIZES = [(64, 64), (64, 64)]


class ZeroRegressor(nn.Module):
    """Predicts zero codes: the decoded bag is the input bag and the L1 loss is |target codes|."""

    def forward(self, x):
        return x.new_zeros(*x.shape[:-1], 4)


def _refiner(**settings) -> SSDRefiner:
    torch.manual_seed(0)
    return SSDRefiner(RefinerSettings(num_classes=3, num_negatives=50, **settings), MultiScaleRoIAlign(["0"], 7, 1),
                      8, 16)


def _run(ref: SSDRefiner):
    feats = {"0": torch.randn(2, 8, 16, 16, generator=torch.Generator().manual_seed(3))}
    return ref(feats, SIZES, BOXES, LABELS, OBJ_IMG, torch.Generator().manual_seed(1))


def _codes(targets: torch.Tensor, bags: torch.Tensor) -> torch.Tensor:
    t = targets[:, None, :].expand_as(bags).reshape(-1, 4)
    return BoxCoder(BOX_CODER_WEIGHTS).encode_single(t, bags.reshape(-1, 4)).reshape(bags.shape)


def test_spsd1_loss_sums_the_four_codes_and_averages_over_proposals():
    ref = _refiner(sisd=False)
    ref.spsd1 = nn.ModuleList([ZeroRegressor()])
    out = _run(ref)
    hw = torch.tensor(SIZES, dtype=torch.float32)[OBJ_IMG]
    bag = clip_to_image(neighbourhood_proposals(BOXES, list(ref.settings.base_ratios), ref.settings.shake), hw)
    want = 0.25 * _codes(BOXES, bag).abs().sum(dim=-1).mean()
    assert torch.allclose(out.losses["loss_spsd1"], want, rtol=1e-5), (float(out.losses["loss_spsd1"]), float(want))


def test_spsd2_loss_sums_the_four_codes_and_averages_over_proposals():
    ref = _refiner(sisd=False, spsd2_weighted=False)
    ref.spsd2_reg = ZeroRegressor()
    out = _run(ref)
    bag1 = out.bags["stage1"][0]
    want = 0.25 * _codes(out.stage1_boxes, bag1).abs().sum(dim=-1).mean()
    assert torch.allclose(out.losses["loss_spsd2"], want, rtol=1e-5), (float(out.losses["loss_spsd2"]), float(want))


def test_negative_loss_is_not_scaled_by_the_mil_loss_weight():
    a, b = _refiner(loss_mil2=0.25), _refiner(loss_mil2=1.0)
    b.load_state_dict(a.state_dict())
    la, lb = _run(a).losses, _run(b).losses
    assert torch.allclose(4.0 * la["loss_mil2"], lb["loss_mil2"])
    assert la["loss_mil2_neg"].item() > 0
    assert torch.allclose(la["loss_mil2_neg"], lb["loss_mil2_neg"])
