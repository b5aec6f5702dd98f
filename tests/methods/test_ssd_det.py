"""SSD-Det mechanism tests on tiny tensors: the refiner's pure functions, its wiring (with a stub "perfect head"
that knows the clean boxes), the ablation switches, the model's hooks, and a short run through the engine."""

from __future__ import annotations

import gc
import warnings

import pytest
import torch
from torch import nn
from torchvision.ops import MultiScaleRoIAlign, box_iou, roi_align

from benchmark.config import resolve_config
from benchmark.errors import BenchError
from methods import get_method
from methods._core.geometry import paired_iou
from methods.ssd_det import TABLE3_ROWS, TABLE6_SPSD, bag_for, pseudo_box_dataset
from methods.ssd_det.refiner import (
    RefinerSettings,
    SSDRefiner,
    clip_to_image,
    denormalise_iou,
    ensure_min_size,
    filter_negatives,
    inside_fraction,
    masked_bag_softmax,
    minmax_per_bag,
    neighbourhood_proposals,
    normalise_iou_target,
    object_relation_enhance,
    paired_bag_iou,
    random_negatives,
    topk_fusion,
    validity_mask,
)

PAPER = [1.0, 1.2, 1.3, 0.8, 0.7]


# ---- sampler -----------------------------------------------------------------------------------------------
def test_sampler_count_and_geometry():
    box = torch.tensor([[20.0, 30.0, 60.0, 50.0]])  # w 40, h 20, centre (40, 40)
    bag = neighbourhood_proposals(box, PAPER, 0.2)
    assert bag.shape == (1, 125, 4)
    assert neighbourhood_proposals(box, [1.0, 1.1, 0.9], 0.1).shape == (1, 45, 4)
    assert torch.allclose(bag[0, 0], box[0])  # unit ratios, no shift = the noisy box itself
    w, h = bag[0, :, 2] - bag[0, :, 0], bag[0, :, 3] - bag[0, :, 1]
    assert sorted({round(v, 3) for v in (w / 40).tolist()}) == sorted(PAPER)
    assert sorted({round(v, 3) for v in (h / 20).tolist()}) == sorted(PAPER)
    cx, cy = (bag[0, :, 0] + bag[0, :, 2]) / 2, (bag[0, :, 1] + bag[0, :, 3]) / 2
    # every shape: one unshifted copy and 4 copies moved by +-0.2 x its own width / height
    dx, dy = ((cx - 40) / w).reshape(25, 5), ((cy - 40) / h).reshape(25, 5)
    expect_x, expect_y = torch.tensor([0, 0.2, -0.2, 0, 0]), torch.tensor([0, 0, 0, 0.2, -0.2])
    assert torch.allclose(dx, expect_x.expand(25, 5), atol=1e-5)
    assert torch.allclose(dy, expect_y.expand(25, 5), atol=1e-5)
    # all 125 proposals differ
    assert torch.unique(bag[0].round(decimals=3), dim=0).shape[0] == 125


def test_validity_is_overlap_with_the_image():
    hw = torch.tensor([[100.0, 100.0]])
    bags = torch.tensor([[[0.0, 0.0, 10.0, 10.0],  # inside
                          [-2.0, 0.0, 8.0, 10.0],  # 80 % inside
                          [-4.0, 0.0, 6.0, 10.0],  # 60 % inside
                          [95.0, 95.0, 105.0, 105.0]]])  # 25 % inside
    assert torch.allclose(inside_fraction(bags, hw), torch.tensor([[1.0, 0.8, 0.6, 0.25]]))
    assert validity_mask(bags, hw, 0.7).tolist() == [[True, True, False, False]]
    outside = torch.tensor([[[200.0, 200.0, 210.0, 210.0], [300.0, 0.0, 310.0, 10.0]]])
    assert validity_mask(outside, hw, 0.7).all()  # a bag with nothing valid keeps a defined softmax
    clipped = clip_to_image(bags, hw)
    assert clipped.min() >= 0 and clipped.max() <= 100


def test_masked_bag_softmax_ignores_invalid_proposals():
    logits = torch.tensor([[[1.0], [2.0], [50.0]]])
    p = masked_bag_softmax(logits, torch.tensor([[True, True, False]]))
    assert p[0, 2, 0] == 0
    assert torch.allclose(p[0, :2, 0], torch.softmax(torch.tensor([1.0, 2.0]), 0))


def test_topk_weighted_fusion():
    bags = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [10.0, 10.0, 20.0, 20.0], [100.0, 100.0, 200.0, 200.0]]])
    scores = torch.tensor([[3.0, 1.0, 0.5]])
    fused = topk_fusion(bags, scores, k=2)  # the third is outside the top-2
    assert torch.allclose(fused, torch.tensor([[2.5, 2.5, 12.5, 12.5]]))  # 0.75 * b0 + 0.25 * b1
    assert torch.allclose(topk_fusion(bags, scores, k=7), (bags[0] * (scores[0] / 4.5)[:, None]).sum(0, keepdim=True))
    zero = topk_fusion(bags, torch.zeros(1, 3), k=2)  # no evidence: plain mean of the k picked
    assert torch.isfinite(zero).all()


def test_random_negatives_are_seeded_and_inside_the_image():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, ai = random_negatives([(50, 80), (30, 40)], 200, g1)
    b, bi = random_negatives([(50, 80), (30, 40)], 200, g2)
    assert torch.equal(a, b) and torch.equal(ai, bi)
    assert 300 < a.shape[0] <= 400
    w = torch.tensor([80.0, 40.0])[ai]
    h = torch.tensor([50.0, 30.0])[ai]
    assert (a[:, 0] >= 0).all() and (a[:, 2] <= w).all() and (a[:, 3] <= h).all()
    assert ((a[:, 2:] - a[:, :2]) >= 1).all()
    # corners come from [-0.2 W, W]: about 1/6 of x1 draws fall left of the image and get clipped to 0
    assert 0.15 < (a[:, 0] == 0).float().mean() < 0.5


def test_negatives_are_filtered_against_positives_of_their_own_image():
    neg = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    neg_img = torch.tensor([0, 1, 0])
    pos = torch.tensor([[1.0, 1.0, 11.0, 11.0], [0.0, 0.0, 4.0, 10.0]])  # IoU 0.68 and 0.4 with [0,0,10,10]
    pos_img = torch.tensor([0, 0])
    keep = filter_negatives(neg, neg_img, pos, pos_img, 0.3)
    assert keep.tolist() == [False, True, True]  # image 1 has no positive near its negative
    assert filter_negatives(neg, neg_img, pos[1:], pos_img[1:], 0.5).tolist() == [True, True, True]


def test_ore_adds_the_bag_mean_of_valid_proposals():
    f = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]], [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    valid = torch.tensor([[True, True, False], [True, True, True]])
    out = object_relation_enhance(f, valid)
    assert torch.allclose(out[0, 0], torch.tensor([3.0, 1.0]))  # (1,0) + mean((1,0),(3,2))
    assert torch.allclose(out[1, 0], torch.tensor([2.0, 0.0]))
    assert not torch.allclose(out[0, 0], out[1, 0])  # same proposal feature, different objects -> different


def test_score_normalisation():
    iou = torch.tensor([0.0, 0.5, 1.0, 0.8])
    assert normalise_iou_target(iou).tolist() == [-1.0, 0.0, 1.0, pytest.approx(0.6)]
    assert torch.allclose(denormalise_iou(normalise_iou_target(iou)), iou)
    u = torch.tensor([[0.2, 0.6, 0.4, 9.0], [0.5, 0.5, 0.5, 0.5]])
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    n = minmax_per_bag(u, valid)
    assert torch.allclose(n[0], torch.tensor([0.0, 1.0, 0.5, 0.0]))
    assert torch.isfinite(n[1]).all() and (n[1] == 0).all()  # flat bag: no NaN


def test_min_size_keeps_boxes_usable_by_the_box_coder():
    hw = torch.tensor([[20.0, 30.0]])
    b = ensure_min_size(torch.tensor([[29.8, 5.0, 29.9, 5.0]]), hw, 1.0)
    assert (b[:, 2:] - b[:, :2] >= 1 - 1e-6).all() and b[0, 2] <= 30


# ---- the refiner with a perfect head ---------------------------------------------------------------------------
class CoordPool(nn.Module):
    """'Features' of a RoI = (image index, x1, y1, x2, y2); counts its calls (one per stage is the contract)."""

    output_size = (1, 1)

    def __init__(self):
        super().__init__()
        self.calls, self.rois = 0, []

    def forward(self, features, boxes, image_shapes):
        self.calls += 1
        self.rois.append(sum(len(b) for b in boxes))
        return torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)])


class Perfect(nn.Module):
    """A head that knows the clean boxes: kind = 'cls1' | 'ins' | 'cls2' | 'reg' | 'iou'."""

    def __init__(self, kind: str, clean: list[torch.Tensor], labels: list[torch.Tensor], k: int, step: float = 0.6):
        super().__init__()
        self.kind, self.clean, self.labels, self.k, self.step = kind, clean, labels, k, step
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x):
        shape = x.shape[:-1]
        x = x.reshape(-1, 5)
        img, rois = x[:, 0].long(), x[:, 1:]
        clean, labels = torch.cat(self.clean), torch.cat(self.labels)
        owner = torch.repeat_interleave(torch.arange(len(self.clean)), torch.tensor([len(c) for c in self.clean]))
        ious = box_iou(rois, clean).masked_fill(img[:, None] != owner[None, :], -1.0)  # own image's boxes only
        iou, j = ious.max(dim=1)
        box, best_lab = clean[j], labels[j]
        if self.kind == "reg":  # move `step` of the way to the clean box (a regressor that learnt the consensus)
            from torchvision.models.detection._utils import BoxCoder

            target = rois + self.step * (box - rois)
            out = BoxCoder((10.0, 10.0, 5.0, 5.0)).encode_single(target, rois)
        elif self.kind == "iou":
            out = normalise_iou_target(iou)[:, None]
        elif self.kind == "ins":
            out = (20.0 * iou)[:, None].expand(-1, self.k)
        else:
            lab = best_lab - (1 if self.kind == "cls2" else 0)
            width = self.k + (1 if self.kind == "cls1" else 0)
            out = torch.full((len(iou), width), -10.0)
            out[torch.arange(len(iou)), lab] = 20.0 * (iou - 0.5)
        return (out * self.gain).reshape(*shape, -1)


def perfect_refiner(settings: RefinerSettings, clean, labels):
    pool = CoordPool()
    ref = SSDRefiner(settings, MultiScaleRoIAlign(["0"], 1, 1), in_channels=5, fc_dim=8)
    ref.pooler = pool
    ref.shared_fcs = nn.Identity()
    k = settings.num_classes
    ref.cls1, ref.ins1 = Perfect("cls1", clean, labels, k), Perfect("ins", clean, labels, k + 1)
    ref.spsd1 = nn.ModuleList(Perfect("reg", clean, labels, k) for _ in ref.spsd1)
    if settings.refiner_stages == 2:
        ref.cls2, ref.ins2 = Perfect("cls2", clean, labels, k), Perfect("ins", clean, labels, k)
        if ref.spsd2_reg is not None:
            ref.spsd2_reg = Perfect("reg", clean, labels, k)
    if settings.sisd:
        ref.sisd_fcs, ref.sisd_iou = nn.Identity(), Perfect("iou", clean, labels, k)
    return ref, pool


def noisy_scene(seed: int = 0, n_img: int = 3, per_img: int = 4, gamma: float = 0.4, size: float = 200.0):
    """Clean boxes well apart (a grid) and OA-MIL-style noisy versions (centre shift and scale, +-gamma)."""
    g = torch.Generator().manual_seed(seed)
    clean, noisy, labels = [], [], []
    for _ in range(n_img):
        cells = torch.arange(per_img, dtype=torch.float32)
        cx = 25 + (cells % 2) * 100 + torch.rand(per_img, generator=g) * 40
        cy = 25 + (cells // 2) * 100 + torch.rand(per_img, generator=g) * 40
        w, h = 20 + torch.rand(per_img, generator=g) * 20, 20 + torch.rand(per_img, generator=g) * 20
        c = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        u = (torch.rand(per_img, 4, generator=g) * 2 - 1) * gamma
        ncx, ncy, nw, nh = cx + w * u[:, 0], cy + h * u[:, 1], w * (1 + u[:, 2]), h * (1 + u[:, 3])
        n = torch.stack([ncx - nw / 2, ncy - nh / 2, ncx + nw / 2, ncy + nh / 2], 1).clamp(0, size)
        clean.append(c), noisy.append(n), labels.append(torch.randint(1, 3, (per_img,), generator=g))
    return clean, noisy, labels


def run_refiner(ref, noisy, labels, size=200, with_losses=True):
    counts = [len(b) for b in noisy]
    obj_img = torch.repeat_interleave(torch.arange(len(noisy)), torch.tensor(counts))
    return ref({}, [(size, size)] * len(noisy), torch.cat(noisy), torch.cat(labels), obj_img,
               torch.Generator().manual_seed(0), with_losses=with_losses)


@pytest.mark.parametrize("row", list(TABLE3_ROWS))
def test_perfect_head_pseudo_box_beats_the_noisy_box(row):
    clean, noisy, labels = noisy_scene()
    settings = RefinerSettings(num_classes=2, num_negatives=50, sisd_ore=False, **TABLE3_ROWS[row])
    ref, pool = perfect_refiner(settings, clean, labels)
    out = run_refiner(ref, noisy, labels)
    c = torch.cat(clean)
    noisy_iou = paired_iou(torch.cat(noisy), c).mean()
    pseudo_iou = paired_iou(out.pseudo_boxes, c).mean()
    assert pseudo_iou > noisy_iou + 0.15, (row, float(noisy_iou), float(pseudo_iou))
    assert all(torch.isfinite(v) for v in out.losses.values())
    # bag quality improves through the SPSD stages when they are on (Fig. 5's effect, here by construction)
    if settings.spsd2:
        means = [paired_bag_iou(out.bags[k][0], c).mean() for k in ("sampler", "stage1", "stage2")]
        assert means[0] < means[1] < means[2]


class Flat(nn.Module):
    """An uninformative head: the same logits for every proposal."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.zeros(*x.shape[:-1], self.width) + self.bias


@pytest.mark.parametrize("score", ["cls", "mil"])
def test_sisd_alone_ranks_the_stage2_bag(score):
    """Stage-II class and instance heads know nothing; a perfect SISD IoU head must still pick a better box than
    the stage-I box, and its ORE/min-max path must keep that ranking."""
    clean, noisy, labels = noisy_scene(seed=1)
    settings = RefinerSettings(num_classes=2, num_negatives=20, spsd1_steps=0, spsd2=False, sisd=True,
                               sisd_ore=False, sisd_score=score)
    ref, _ = perfect_refiner(settings, clean, labels)
    ref.cls2, ref.ins2 = Flat(2), Flat(2)
    out = run_refiner(ref, noisy, labels)
    c = torch.cat(clean)
    stage1, pseudo = paired_iou(out.stage1_boxes, c).mean(), paired_iou(out.pseudo_boxes, c).mean()
    assert pseudo > stage1 + 0.05, (float(stage1), float(pseudo))
    ref.sisd_iou = Perfect("iou", [b + 1000 for b in clean], labels, 2)  # blind SISD: IoU 0 everywhere
    blind = paired_iou(run_refiner(ref, noisy, labels).pseudo_boxes, c).mean()
    assert blind < pseudo - 0.05


def test_one_roialign_call_per_stage():
    clean, noisy, labels = noisy_scene(n_img=2, per_img=3)
    expected = {"refiner_only": 1, "two_stage": 2, "two_stage+spsd": 3, "ssd_det": 3}
    for row, calls in expected.items():
        ref, pool = perfect_refiner(RefinerSettings(num_classes=2, num_negatives=20, sisd_ore=False,
                                                    **TABLE3_ROWS[row]), clean, labels)
        run_refiner(ref, noisy, labels)
        assert pool.calls == calls, row
        assert pool.rois[0] == 6 * 125  # every bag of the batch in the first call
    ref, pool = perfect_refiner(RefinerSettings(num_classes=2, num_negatives=20, spsd1_steps=2, sisd=False), clean,
                                labels)
    run_refiner(ref, noisy, labels)
    assert pool.calls == 4 and pool.rois[-1] > 6 * 125  # stage II pools its negatives in the same call


def test_pooling_keeps_each_roi_with_its_features():
    """Bags and negatives of several images go through one pooler call; each row must still match its own RoI."""
    torch.manual_seed(0)
    feats = {"0": torch.randn(2, 3, 16, 16)}
    pooler = MultiScaleRoIAlign(["0"], 2, 1)
    ref = SSDRefiner(RefinerSettings(num_classes=2), pooler, 3, 8)
    bags = torch.rand(3, 4, 4) * 30
    bags[..., 2:] += bags[..., :2] + 4
    obj_img = torch.tensor([0, 1, 1])
    extra = torch.tensor([[1.0, 1.0, 20.0, 20.0], [5.0, 5.0, 30.0, 9.0]])
    extra_img = torch.tensor([0, 1])
    f, pooled, extra_f = ref._bag_features(nn.Flatten(), feats, bags, obj_img, [(64, 64), (64, 64)], extra, extra_img)
    scale = 16 / 64
    for n in range(3):
        for b in range(4):
            want = roi_align(feats["0"], [torch.zeros(0, 4)] * int(obj_img[n]) + [bags[n, b:b + 1]], 2, scale, 1)
            assert torch.allclose(f[n, b], want.flatten(), atol=1e-6)
    for j in range(2):
        want = roi_align(feats["0"], [torch.zeros(0, 4)] * int(extra_img[j]) + [extra[j:j + 1]], 2, scale, 1)
        assert torch.allclose(extra_f[j], want.flatten(), atol=1e-6)


# ---- ablation switches -------------------------------------------------------------------------------------
def _refiner(**switches) -> SSDRefiner:
    return SSDRefiner(RefinerSettings(num_classes=3, **switches), MultiScaleRoIAlign(["0"], 7, 1), 8, 16)


def _losses(ref: SSDRefiner) -> set[str]:
    torch.manual_seed(0)
    feats = {"0": torch.randn(2, 8, 16, 16)}
    boxes = torch.tensor([[4.0, 4.0, 30.0, 40.0], [20.0, 10.0, 50.0, 30.0], [8.0, 8.0, 40.0, 40.0]])
    out = ref(feats, [(64, 64), (64, 64)], boxes, torch.tensor([1, 3, 2]), torch.tensor([0, 0, 1]),
              torch.Generator().manual_seed(1))
    total = sum(out.losses.values())
    total.backward()
    used = {n for n, p in ref.named_parameters() if p.grad is not None}
    assert used == {n for n, p in ref.named_parameters()}  # every built part is trained (DDP-safe)
    return set(out.losses)


def test_ablation_switches_remove_their_parts():
    full = _refiner(**TABLE3_ROWS["ssd_det"])
    names = {n.split(".")[0] for n, _ in full.named_parameters()}
    assert {"shared_fcs", "spsd1", "cls1", "ins1", "spsd2_reg", "cls2", "ins2", "sisd_fcs", "sisd_iou"} <= names
    assert _losses(full) == {"loss_spsd1", "loss_mil1", "loss_spsd2", "loss_mil2", "loss_mil2_neg", "loss_sisd"}

    no_sisd = _refiner(**TABLE3_ROWS["two_stage+spsd"])
    assert not hasattr(no_sisd, "sisd_fcs") and not hasattr(no_sisd, "sisd_iou")
    assert "loss_sisd" not in _losses(no_sisd)

    basic = _refiner(**TABLE3_ROWS["two_stage"])
    assert basic.spsd2_reg is None and len(basic.spsd1) == 0
    assert _losses(basic) == {"loss_mil1", "loss_mil2", "loss_mil2_neg"}

    single = _refiner(**TABLE3_ROWS["refiner_only"])
    assert not hasattr(single, "cls2") and not hasattr(single, "spsd2_reg")
    assert _losses(single) == {"loss_mil1"}

    counts = {k: sum(p.numel() for p in r.parameters()) for k, r in
              (("full", full), ("no_sisd", no_sisd), ("basic", basic), ("single", single))}
    assert counts["full"] > counts["no_sisd"] > counts["basic"] > counts["single"]


@pytest.mark.parametrize("num", sorted(TABLE6_SPSD))
def test_number_of_spsd_modules(num):
    ref = _refiner(**TABLE6_SPSD[num])
    regressors = len(ref.spsd1) + (ref.spsd2_reg is not None)
    assert regressors == num
    assert len([k for k in _losses(ref) if k.startswith("loss_spsd")]) == num


def test_inconsistent_switches_are_errors():
    ad = get_method("ssd_det")
    cfg = resolve_config(ad, "cpu", "coco", 0.4, {"method.refiner_stages": 1})
    with pytest.raises(BenchError, match="refiner_stages"):
        ad.build_model(cfg, 2)
    cfg = resolve_config(ad, "cpu", "coco", 0.4, {"method.topk": 0})
    with pytest.raises(BenchError, match="topk"):
        ad.build_model(cfg, 2)
    with pytest.raises(BenchError, match="method.base_ratios"):
        ad.build_model(resolve_config(ad, "cpu", "coco", 0.4, {"method.base_ratios": [1, -1]}), 2)


def test_spsd2_weighting_switch_changes_only_its_loss():
    a, b = _refiner(spsd2_weighted=True), _refiner(spsd2_weighted=False)
    b.load_state_dict(a.state_dict())
    torch.manual_seed(0)
    feats = {"0": torch.randn(1, 8, 16, 16)}
    args = (feats, [(64, 64)], torch.tensor([[4.0, 4.0, 30.0, 40.0]]), torch.tensor([2]), torch.tensor([0]))
    la = a(*args, torch.Generator().manual_seed(1)).losses
    lb = b(*args, torch.Generator().manual_seed(1)).losses
    assert torch.allclose(la["loss_mil1"], lb["loss_mil1"])
    assert la["loss_spsd2"] < lb["loss_spsd2"]  # weighted by a bag score < 1


# ---- configuration ------------------------------------------------------------------------------------------
def test_bag_settings_per_dataset_and_noise():
    assert bag_for("paper", 0.1, "voc")[:2] == ([1.0, 1.1, 0.9], 0.1)
    assert bag_for("paper", 0.2, "voc")[:2] == ([1.0, 1.1, 0.9], 0.1)
    assert bag_for("paper", 0.4, "voc")[:2] == (PAPER, 0.2)
    assert bag_for("paper", 0.4, "coco")[:2] == (PAPER, 0.2)
    assert "unpublished" in bag_for("paper", 0.2, "coco")[2]
    # the cpu profile's documented 45-proposal bags (its refiner RoIAlign dominates the step) ...
    assert bag_for("cpu", 0.4, "coco")[:2] == ([1.0, 1.3, 0.7], 0.2)
    assert bag_for("cpu", 0.4, "voc")[:2] == ([1.0, 1.3, 0.7], 0.2)
    assert bag_for("cpu", 0.2, "coco")[:2] == ([1.0, 1.1, 0.9], 0.1)
    # ... the same bags on shapes, the quick start, pooled 4x4 with 64 negatives per image
    assert bag_for("cpu", 0.4, "shapes")[:2] == ([1.0, 1.3, 0.7], 0.2)
    assert bag_for("paper", 0.4, "shapes")[:2] == (PAPER, 0.2)
    quick = resolve_config(get_method("ssd_det"), "cpu", "shapes", 0.3)["method"]
    assert (quick["num_negatives"], quick["refiner_pool_size"], len(quick["base_ratios"])) == (64, 4, 3)
    assert resolve_config(get_method("ssd_det"), "cpu", "voc", 0.3)["method"]["refiner_pool_size"] is None
    assert resolve_config(get_method("ssd_det"), "paper", "shapes", 0.3)["method"]["num_negatives"] == 500
    cfg = resolve_config(get_method("ssd_det"), "fair", "coco", 0.4)["method"]  # the paper text, plain FPN
    assert cfg["loss_sisd"] == 0.25 and cfg["fpn_norm"] == "none" and cfg["roi_sampling_ratio"] is None
    assert cfg["num_negatives"] == 500 and len(cfg["base_ratios"]) == 5
    cfg = resolve_config(get_method("ssd_det"), "paper", "coco", 0.4)["method"]  # the reference code
    assert cfg["loss_sisd"] == 5.0 and cfg["fpn_norm"] == "group" and cfg["num_negatives"] == 500
    cpu = resolve_config(get_method("ssd_det"), "cpu", "coco", 0.4)["method"]
    assert cpu["num_negatives"] == 200 and cpu["loss_sisd"] == 0.25


# ---- the model: hooks, export, memory --------------------------------------------------------------------------
def tiny_cfg(**method):
    ad = get_method("ssd_det")
    over = {"model.widths": [8, 8, 16, 16], "model.pretrained": False, "model.fpn_channels": 32, "model.representation_size": 32,
            "model.box_batch_size_per_image": 32, "model.rpn_post_nms_top_n_train": 50,
            "model.rpn_pre_nms_top_n_train": 100, "method.num_negatives": 40,
            **{f"method.{k}": v for k, v in method.items()}}
    return ad, resolve_config(ad, "cpu", "coco", 0.4, over)


def toy_batch(tmp_path, n=3, noise=0.3):
    from methods._core.data import DetectionImages, collate
    from methods._core.toy import make_toy_dataset

    ds = make_toy_dataset(tmp_path / "toy", num_images=n, size=(64, 48), noise=noise)
    images = DetectionImages(ds.without_clean_boxes())
    return ds, collate([images[(i, i % 2 == 0, i == 1)] for i in range(n)])


def test_identity_refiner_exports_the_original_boxes_through_flips(tmp_path):
    """With a one-proposal bag the pseudo box is the noisy box: export must give back the annotation, in
    original-image pixels, whatever flips the batch had; diagnostics then agree with a direct computation."""
    ad, cfg = tiny_cfg(base_ratios=[1.0], shake=0.0, **TABLE3_ROWS["two_stage"])
    ds, (ims, targets) = toy_batch(tmp_path)
    torch.manual_seed(0)
    model = ad.build_model(cfg, 2)
    model.set_diagnostics(ds)
    model.train()
    losses = model(ims, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    refined = model.refined_boxes()
    assert set(refined) == {a["id"] for a in ds.annotations}
    clean_iou = []
    for a in ds.annotations:
        x, y, w, h = a["bbox"]
        assert refined[a["id"]] == pytest.approx([x, y, x + w, y + h], abs=1e-3)
        cx, cy, cw, ch = a["true_bbox"]
        clean_iou.append(paired_iou(torch.tensor([[x, y, x + w, y + h]]), torch.tensor([[cx, cy, cx + cw, cy + ch]])))
    d = model.diagnostics()
    assert d["epoch_noisy_iou_mean"] == pytest.approx(float(torch.cat(clean_iou).mean()), abs=1e-4)
    assert d["epoch_pseudo_iou_mean"] == pytest.approx(d["epoch_noisy_iou_mean"], abs=1e-4)
    assert d["epoch_diag_objects"] == len(ds.annotations)
    for stage in ("sampler", "stage1", "stage2"):
        assert d[f"epoch_bag_{stage}_iou_max"] == pytest.approx(d["epoch_noisy_iou_mean"], abs=1e-4)
    model.set_epoch(1, 2)  # a new epoch starts fresh sums
    assert "epoch_noisy_iou_mean" not in model.diagnostics()


def test_no_clean_boxes_no_quality_metrics(tmp_path):
    ad, cfg = tiny_cfg()
    ds, (ims, targets) = toy_batch(tmp_path)
    model = ad.build_model(cfg, 2).train()
    model(ims, targets)
    d = model.diagnostics()
    assert d == {"refined_objects": float(len(ds.annotations))}


def test_eval_is_the_plain_detector_and_inference_weights_fit_faster_rcnn(tmp_path):
    from methods._core.model import build_faster_rcnn

    ad, cfg = tiny_cfg()
    _, (ims, _) = toy_batch(tmp_path)
    model = ad.build_model(cfg, 2).eval()
    plain = build_faster_rcnn(cfg["model"], 2).eval()
    plain.load_state_dict(model.detector.state_dict())  # the detector is exactly the core Faster R-CNN
    with torch.no_grad():
        a, b = model(ims), plain(ims)
    assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(a, b))


def test_group_norm_fpn_option():
    ad, cfg = tiny_cfg(fpn_norm="group")
    model = ad.build_model(cfg, 2)
    assert any(isinstance(m, nn.GroupNorm) for m in model.detector.backbone.fpn.modules())
    ad, cfg = tiny_cfg()
    assert not any(isinstance(m, nn.GroupNorm) for m in ad.build_model(cfg, 2).modules())


def test_refiner_pool_size_option(tmp_path):
    """The refiner may pool coarser than the detector's box head (the shapes cpu recipe: 4x4): its FCs take the
    smaller input, the detector keeps its 7x7, and a training step runs; a bad size is a one-line error."""
    ad, cfg = tiny_cfg(refiner_pool_size=4)
    _, (ims, targets) = toy_batch(tmp_path)
    model = ad.build_model(cfg, 2).train()
    assert model.refiner.pooler.output_size == (4, 4) and model.detector.roi_heads.box_roi_pool.output_size == (7, 7)
    assert model.refiner.shared_fcs.fc6.in_features == 32 * 4 * 4
    assert all(torch.isfinite(v) for v in model(ims, targets).values())
    assert ad.build_model(tiny_cfg()[1], 2).refiner.pooler.output_size == (7, 7)  # default: the detector's
    for bad in (0, 2.5, "4", [4]):
        with pytest.raises(BenchError, match="refiner_pool_size"):
            ad.build_model(tiny_cfg(refiner_pool_size=bad)[1], 2)


def test_refined_boxes_and_sums_survive_a_checkpoint(tmp_path):
    ad, cfg = tiny_cfg()
    ds, (ims, targets) = toy_batch(tmp_path)
    model = ad.build_model(cfg, 2)
    model.set_diagnostics(ds)
    model.train()(ims, targets)
    again = ad.build_model(cfg, 2)
    again.load_state_dict(model.state_dict())
    assert again.refined_boxes() == model.refined_boxes()
    assert again.diagnostics() == model.diagnostics()
    assert int(again.steps) == 1


def test_memory_does_not_grow_with_iterations(tmp_path):
    import tracemalloc

    ad, cfg = tiny_cfg()
    ds, (ims, targets) = toy_batch(tmp_path)
    model = ad.build_model(cfg, 2)
    model.set_diagnostics(ds)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step():
        loss = sum(model(ims, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()

    def live_tensors() -> int:
        gc.collect()
        with warnings.catch_warnings():  # isinstance() on some torch objects warns about deprecations
            warnings.simplefilter("ignore")
            return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    step(), step()
    tracemalloc.start()
    base_tensors, (base_mem, _) = live_tensors(), tracemalloc.get_traced_memory()
    for _ in range(4):
        step()
    grown = tracemalloc.get_traced_memory()[0] - base_mem
    tracemalloc.stop()
    assert live_tensors() == base_tensors  # nothing from a step is kept (no graph, no per-step tensors)
    assert grown < 256 * 1024, grown
    assert len(model.refined_boxes()) == len(ds.annotations)  # one entry per object, not per step


def test_pseudo_box_dataset_replaces_only_refined_boxes(tmp_path):
    from methods._core.toy import make_toy_dataset

    ds = make_toy_dataset(tmp_path / "toy", num_images=2)
    first = ds.annotations[0]
    out = pseudo_box_dataset(ds, [{"id": first["id"], "bbox": [1.0, 2.0, 3.0, 4.0]}])
    assert out.annotations[0]["bbox"] == [1.0, 2.0, 3.0, 4.0] and out.annotations[0]["area"] == 12.0
    assert out.annotations[1]["bbox"] == ds.annotations[1]["bbox"]
    assert ds.annotations[0]["bbox"] == first["bbox"]  # input untouched


# ---- through the engine ---------------------------------------------------------------------------------------
def _engine_cfg(ad, **train):
    over = {"model.widths": [8, 8, 16, 16], "model.pretrained": False, "model.fpn_channels": 32, "model.representation_size": 32,
            "model.box_batch_size_per_image": 32, "method.num_negatives": 40, "train.epochs": 1,
            "train.iters_per_epoch": 2, "train.batch_size": 2, "train.base_batch_size": 2, "train.steps": [1],
            "train.warmup_iters": 1, "train.cache_images": False, **{f"train.{k}": v for k, v in train.items()}}
    return resolve_config(ad, "cpu", "coco", 0.4, over)


def test_two_iteration_training_exports_pseudo_boxes_and_bag_quality(tmp_path):
    from benchmark.io import read_json
    from methods._core.toy import make_toy_dataset

    ds = make_toy_dataset(tmp_path / "toy", num_images=4, noise=0.3)
    ad = get_method("ssd_det")
    cfg = _engine_cfg(ad)
    res = ad.train(ds, cfg, tmp_path / "run", progress=False)  # clean boxes for metrics: taken from `ds`
    refined = read_json(res.refined_boxes)
    assert {r["id"] for r in refined} == {a["id"] for a in ds.annotations}  # every object, by the final pass
    m = res.metrics
    for key in ("bag_sampler_iou_mean", "bag_stage2_iou_top10", "pseudo_iou_mean", "noisy_iou_mean",
                "epoch_pseudo_iou_mean"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["diag_objects"] == len(ds.annotations)
    assert read_json(tmp_path / "run" / "train_metrics.json")["pseudo_iou_mean"] == m["pseudo_iou_mean"]
    preds = ad.predict(res.checkpoint, ds, cfg, progress=False)
    assert isinstance(preds, list)


def test_retrain_variant_trains_a_plain_faster_rcnn_on_the_pseudo_boxes(tmp_path):
    from benchmark.engine import _load
    from benchmark.io import read_json
    from methods._core.toy import make_toy_dataset

    ds = make_toy_dataset(tmp_path / "toy", num_images=4, noise=0.3)
    ad = get_method("ssd_det+retrain")
    cfg = _engine_cfg(ad)
    res = ad.train(ds, cfg, tmp_path / "run", progress=False)
    state = _load(res.checkpoint)
    assert not any(k.startswith("refiner.") or k.startswith("detector.") for k in state["model"])
    assert res.refined_boxes == tmp_path / "run" / "ssd_det" / "refined_boxes.json"
    assert len(read_json(res.refined_boxes)) == len(ds.annotations)
    assert res.metrics["iterations"] == 2 and "ssd_det_stage" in res.metrics
    assert 0.0 <= res.metrics["pseudo_iou_mean"] <= 1.0  # the SSD-Det stage's bag quality is kept
    preds = ad.predict(res.checkpoint, ds, cfg, progress=False)
    assert isinstance(preds, list)
