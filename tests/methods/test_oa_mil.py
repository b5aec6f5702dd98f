"""OA-MIL mechanism tests on tiny hand-built tensors.

Most tests drive `OAMILRoIHeads` with a stub "perfect head": the RoI pool passes each RoI's coordinates through as
its feature, and the predictor knows the clean boxes, so its confidence is a sharp function of IoU with the clean
box and its regression points exactly at it. That isolates OA-MIL's bookkeeping (bags, selection, correction,
schedule, export) from learning.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import box_iou

from benchmark.config import resolve_config
from benchmark.errors import BenchError
from methods import get_method
from methods._core.geometry import boxes_to_original, paired_iou
from methods.oa_mil import lambda_and_type
from methods.oa_mil.head import (
    OAMILParams,
    OAMILRoIHeads,
    XYXYBoxCoder,
    bag_index,
    correct_boxes,
    mil_bag_score,
    mil_loss,
    oais_phi,
    phase_start,
)

SHAPE = (100, 100)


# ---- stubs -----------------------------------------------------------------------------------------------
class CoordPool(nn.Module):
    """'Features' of a RoI = (image index, x1, y1, x2, y2)."""

    def forward(self, features, boxes, image_shapes):
        return torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)])


class CountingIdentity(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


class PerfectPredictor(nn.Module):
    """Class-1 confidence = sigmoid(sharp * (IoU with nearest clean box - 0.5)); regression -> that clean box."""

    def __init__(self, clean: list[torch.Tensor], num_classes: int = 2, sharp: float = 20.0, code: torch.Tensor = None):
        super().__init__()
        self.clean, self.k, self.sharp = clean, num_classes, sharp
        self.code = code  # if given: a constant regression code instead of the perfect one
        self.gain = nn.Parameter(torch.ones(()))  # a parameter so the losses have something to differentiate
        self.coder = XYXYBoxCoder()

    def forward(self, x):
        img, rois = x[:, 0].long(), x[:, 1:]
        logits, codes = [], []
        for i, roi in zip(img.tolist(), rois):
            iou = box_iou(roi[None], self.clean[i])[0]
            j = int(iou.argmax())
            fg = self.gain * self.sharp * (iou[j] - 0.5)
            logits.append(torch.stack([torch.zeros(()), fg] + [torch.full((), -10.0)] * (self.k - 2)))
            c = self.code if self.code is not None else self.coder.encode_single(self.clean[i][j][None], roi[None])[0]
            codes.append(c.repeat(self.k))
        return torch.stack(logits), torch.stack(codes) * self.gain


def make_head(clean, params=None, code=None, batch=512):
    base = RoIHeads(CoordPool(), CountingIdentity(), PerfectPredictor(clean, code=code), 0.5, 0.5, batch, 0.25,
                    None, 0.05, 0.5, 100)
    head = OAMILRoIHeads(base, params or OAMILParams(mil_lambda=0.1, oaie_type="refine"))
    head.train()
    return head


def target(boxes, ann_ids, labels=None, orig=SHAPE, flip=(False, False)):
    boxes = torch.tensor(boxes, dtype=torch.float32)
    return {"boxes": boxes, "labels": torch.tensor(labels or [1] * len(boxes)),
            "ann_ids": torch.tensor(ann_ids), "image_id": torch.tensor(0),
            "orig_size": torch.tensor(orig), "flip": torch.tensor(flip)}


def jitter(box, n=6, step=2.0):
    """Proposals around a box, all with IoU >= 0.5 with it."""
    b = torch.tensor(box, dtype=torch.float32)
    return torch.stack([b + torch.tensor([d, -d, d, d]) * step * 0.5 for d in range(-n // 2, n // 2)])


CLEAN = [20.0, 20.0, 60.0, 60.0]
NOISY = [28.0, 14.0, 72.0, 58.0]


def single_object():
    clean = [torch.tensor([CLEAN])]
    proposals = [torch.cat([jitter(NOISY), torch.tensor([[80.0, 80.0, 95.0, 95.0], [0.0, 70.0, 15.0, 99.0]])])]
    return clean, proposals, [target([NOISY], [11])]


# ---- box coder -------------------------------------------------------------------------------------------
def test_xyxy_coder_is_corner_linear_and_inverts():
    coder = XYXYBoxCoder((0.1, 0.1, 0.1, 0.1))
    roi = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # w 20, h 40
    gt = torch.tensor([[12.0, 16.0, 31.0, 64.0]])
    codes = coder.encode_single(gt, roi)
    assert torch.allclose(codes, torch.tensor([[2 / 20 / 0.1, -4 / 40 / 0.1, 1 / 20 / 0.1, 4 / 40 / 0.1]]))
    assert torch.allclose(coder.decode_single(codes, roi), gt)
    many = coder.decode(torch.cat([codes, torch.zeros(1, 4)], 1), [roi])  # two classes, torchvision layout
    assert many.shape == (1, 2, 4) and torch.allclose(many[0, 0], gt[0]) and torch.allclose(many[0, 1], roi[0])


# ---- bags ------------------------------------------------------------------------------------------------
def test_bags_are_keyed_by_image_and_assigned_gt():
    image = torch.tensor([0, 0, 0, 1, 1, 0])
    gt = torch.tensor([0, 1, 0, 0, 0, 1])
    bag, keys = bag_index(image, gt)
    assert keys.tolist() == [[0, 0], [0, 1], [1, 0]]
    assert bag.tolist() == [0, 1, 0, 2, 2, 1]  # same GT index in another image is another bag


def test_two_objects_with_equal_coordinate_sums_get_separate_corrections():
    # a key built from decoded GT coordinates (x1+y1+x2+y2) would merge these two bags: both sums are 80
    n1, n2 = [10.0, 10.0, 30.0, 30.0], [0.0, 0.0, 40.0, 40.0]
    c1, c2 = [12.0, 12.0, 32.0, 32.0], [2.0, 2.0, 42.0, 42.0]
    head = make_head([torch.tensor([c1, c2])])
    head.set_epoch(5, 12)
    proposals = [torch.cat([jitter(n1, 4, 1.0), jitter(n2, 4, 1.0)])]
    head([], proposals, [SHAPE], [target([n1, n2], [1, 2])])
    got = head.refined_boxes()
    phi = 0.85  # perfect confidence -> clamped
    for ann, n, c in ((1, n1, c1), (2, n2, c2)):
        want = phi * torch.tensor(c) + (1 - phi) * torch.tensor(n)
        assert torch.allclose(torch.tensor(got[ann]), want, atol=1e-4), (ann, got[ann], want)


# ---- OA-IS -----------------------------------------------------------------------------------------------
def test_phi_is_score_power_gamma_clamped_at_theta():
    s = torch.tensor([0.0, 0.5, 0.8, 0.9, 0.97, 0.99, 1.0])
    phi = oais_phi(s, 7.5, 0.85)
    want = torch.tensor([min(v ** 7.5, 0.85) for v in s.tolist()])
    assert torch.allclose(phi, want)
    assert phi[-1].item() == pytest.approx(0.85) and phi[3].item() == pytest.approx(0.9 ** 7.5)  # 0.4538: not clamped


def test_correction_uses_the_most_confident_instance_of_each_bag():
    bag = torch.tensor([0, 0, 0, 1])
    boxes = torch.tensor([[0.0, 0, 10, 10], [2.0, 2, 12, 12], [4.0, 4, 14, 14], [50.0, 50, 60, 60]])
    scores = torch.tensor([0.5, 0.95, 0.7, 0.2])
    noisy = torch.tensor([[1.0, 1, 11, 11], [40.0, 40, 70, 70]])
    corrected, best, phi = correct_boxes(bag, 2, boxes, scores, noisy, 7.5, 0.85)
    assert best.tolist() == pytest.approx([0.95, 0.2])
    p0 = 0.95 ** 7.5
    assert torch.allclose(corrected[0], p0 * boxes[1] + (1 - p0) * noisy[0])
    assert torch.allclose(corrected[1], 0.2 ** 7.5 * boxes[3] + (1 - 0.2 ** 7.5) * noisy[1])


def test_corrected_box_moves_toward_the_clean_box_with_a_perfect_head():
    clean, proposals, targets = single_object()
    head = make_head(clean)
    head.set_epoch(1, 12)  # OA-IS on from (1-based) epoch 2
    head([], proposals, [SHAPE], targets)
    got = torch.tensor([head.refined_boxes()[11]])
    c, n = torch.tensor([CLEAN]), torch.tensor([NOISY])
    assert torch.allclose(got, 0.85 * c + 0.15 * n, atol=1e-4)
    assert paired_iou(got, c).item() > 0.9 > 0.55 > paired_iou(n, c).item()


def test_all_positives_regress_to_the_corrected_box():
    # perfect regressor predicts codes to the clean box; codes are linear in the target, so with
    # target = 0.85 clean + 0.15 noisy the L1 box loss must shrink to exactly (1 - 0.85) of the noisy-target loss
    clean, proposals, targets = single_object()
    head = make_head(clean)
    head.set_epoch(0, 12)
    before = head([], proposals, [SHAPE], targets)[1]["loss_box_reg"]
    head.set_epoch(1, 12)
    after = head([], proposals, [SHAPE], targets)[1]["loss_box_reg"]
    assert before.item() > 0
    assert after.item() == pytest.approx(0.15 * before.item(), rel=1e-4)


def test_correction_off_before_oais_epoch():
    clean, proposals, targets = single_object()
    head = make_head(clean)
    head.set_epoch(0, 12)
    assert not head.oais_active
    head([], proposals, [SHAPE], targets)
    assert head.refined_boxes() == {}
    head.set_epoch(1, 12)
    assert head.oais_active
    head([], proposals, [SHAPE], targets)
    assert list(head.refined_boxes()) == [11]


def test_phases_keep_their_fraction_of_training():
    # published: OA-IS from epoch 2 and OA-IE from epoch 9 of a 12-epoch schedule (1-based)
    assert phase_start(2, 12, 12) == 1 and phase_start(9, 12, 12) == 8
    assert phase_start(2, 12, 24) == 2 and phase_start(9, 12, 24) == 16
    assert phase_start(2, 12, 2) == 0 and phase_start(9, 12, 2) == 1
    clean, _, _ = single_object()
    head = make_head(clean)
    head.set_epoch(1, 24)
    assert not head.oais_active
    head.set_epoch(2, 24)
    assert head.oais_active


# ---- OA-IE -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("epoch,num_epochs,rounds", [(0, 12, 1), (7, 12, 1), (8, 12, 5), (11, 12, 5),
                                                      (15, 24, 1), (16, 24, 5)])
def test_extension_rounds_only_from_oaie_epoch(epoch, num_epochs, rounds):
    clean, proposals, targets = single_object()
    head = make_head(clean)
    head.set_epoch(epoch, num_epochs)
    head([], proposals, [SHAPE], targets)
    assert head.box_head.calls == 1 + rounds  # the sampled RoIs once, then one pass per instance round


def test_no_extension_without_mil_loss():
    clean, proposals, targets = single_object()
    head = make_head(clean, OAMILParams(mil_lambda=0.0))
    head.set_epoch(10, 12)
    losses = head([], proposals, [SHAPE], targets)[1]
    assert "loss_oamil" not in losses and head.box_head.calls == 2  # OA-IS still selects from one round


@pytest.mark.parametrize("oaie_type", ["refine", "random"])
def test_extension_cascades_or_restarts_from_the_rois(oaie_type):
    code = torch.tensor([1.0, 0.0, 1.0, 0.0])  # every prediction: shift right by 0.1 of the box width
    roi = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    head = make_head([torch.tensor([CLEAN])], OAMILParams(oaie_type=oaie_type), code=code)
    boxes, scores = head.instance_rounds({}, [SHAPE], roi, torch.tensor([0]), torch.tensor([1]),
                                         code.repeat(2)[None], num_rounds=3)
    x1 = [float(b[0, 0]) for b in boxes]
    assert x1 == pytest.approx([12.0, 14.0, 16.0] if oaie_type == "refine" else [12.0, 12.0, 12.0])
    assert len(scores) == 3


# ---- MIL loss --------------------------------------------------------------------------------------------
def test_mil_loss_on_a_hand_built_bag_set():
    scores = torch.tensor([0.2, 0.9, 0.5, 0.7, 0.4], requires_grad=True)
    bag = torch.tensor([0, 0, 1, 1, 2])
    labels = torch.tensor([1, 1, 2])  # bags 0, 1 of class 1; bag 2 of class 2
    s = mil_bag_score(scores, bag, 3, labels)
    assert s.item() == pytest.approx(((0.9 + 0.7) / 2 + 0.4) / 2)  # per-class mean, then mean over classes
    loss = mil_loss([s], "refine", 1.0, 0.1)
    assert loss.item() == pytest.approx(0.1 * (1 - 0.6))
    loss.backward()
    assert scores.grad.tolist() == pytest.approx([0.0, -0.025, 0.0, -0.025, -0.05])  # only each bag's max


def test_mil_loss_with_extension_rounds():
    s = [torch.tensor(0.6), torch.tensor(0.5), torch.tensor(0.3)]
    assert mil_loss(s, "refine", 1.0, 0.1).item() == pytest.approx(0.1 * ((1 - 0.6) + (1 - 0.4)))
    assert mil_loss(s, "refine", 0.5, 0.1).item() == pytest.approx(0.1 * ((1 - 0.6) + 0.5 * (1 - 0.4)))
    assert mil_loss(s, "random", 1.0, 0.1).item() == pytest.approx(0.1 * (1 - 1.4 / 3))
    with pytest.raises(ValueError):
        mil_loss(s, "cascade", 1.0, 0.1)


def test_head_mil_loss_matches_the_perfect_confidences():
    clean, proposals, targets = single_object()
    head = make_head(clean)
    head.set_epoch(0, 12)
    loss = head([], proposals, [SHAPE], targets)[1]["loss_oamil"]
    best = torch.sigmoid(torch.tensor(20.0 * 0.5))  # every instance decodes onto the clean box: IoU 1
    assert loss.item() == pytest.approx(0.1 * (1 - best.item()), abs=1e-6)


def test_images_without_boxes_and_batches_without_positives():
    clean, proposals, targets = single_object()
    empty = {**target([], [], labels=[]), "boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    head = make_head(clean + [torch.tensor([[0.0, 0.0, 1.0, 1.0]])])
    head.set_epoch(9, 12)
    losses = head([], proposals + [torch.tensor([[5.0, 5.0, 30.0, 30.0]])], [SHAPE, SHAPE], targets + [empty])[1]
    assert torch.isfinite(torch.stack(list(losses.values()))).all() and list(head.refined_boxes()) == [11]
    losses = head([], [torch.tensor([[5.0, 5.0, 30.0, 30.0]])], [SHAPE], [empty])[1]
    assert losses["loss_box_reg"].item() == 0.0 and "loss_oamil" not in losses


# ---- export ----------------------------------------------------------------------------------------------
def test_refined_boxes_are_in_original_image_pixels():
    clean, proposals, _ = single_object()
    t = target([NOISY], [11], orig=(200, 300), flip=(True, False))  # model frame 100x100, mirrored
    head = make_head(clean)
    head.set_epoch(3, 12)
    head([], proposals, [SHAPE], [t])
    x1, y1, x2, y2 = (0.85 * torch.tensor(CLEAN) + 0.15 * torch.tensor(NOISY)).tolist()  # model frame
    want = torch.tensor([[300 - 3 * x2, 2 * y1, 300 - 3 * x1, 2 * y2]])  # x3, y2, then mirrored in x
    assert torch.allclose(want, boxes_to_original(torch.tensor([[x1, y1, x2, y2]]), SHAPE, t))
    assert torch.allclose(torch.tensor([head.refined_boxes()[11]]), want, atol=1e-3)


def test_refined_boxes_survive_a_checkpoint():
    clean, proposals, targets = single_object()
    head = make_head(clean)
    head.set_epoch(2, 12)
    head([], proposals, [SHAPE], targets)
    fresh = make_head(clean)
    fresh.load_state_dict(head.state_dict())
    before, after = head.refined_boxes(), fresh.refined_boxes()
    assert before and sorted(after) == sorted(before) and fresh.epoch == 2
    for ann_id, box in before.items():  # pytest.approx takes flat sequences, not nested dicts (pytest >= 9.2)
        assert after[ann_id] == pytest.approx(box)


# ---- adapter ---------------------------------------------------------------------------------------------
def test_published_hyperparameters_per_dataset_and_noise():
    m = get_method("oa_mil")
    cfg = m.default_config("paper", 0.4, "coco")
    assert (cfg["mil_lambda"], cfg["oaie_type"]) == (0.1, "random")
    assert (cfg["oais_epoch"], cfg["oais_gamma"], cfg["oais_theta"]) == (2, 7.5, 0.85)
    assert (cfg["oaie_epoch"], cfg["oaie_num"], cfg["oaie_coef"], cfg["schedule_epochs"]) == (9, 4, 1.0, 12)
    assert cfg["box_stds"] == [0.1] * 4 and cfg["mil_lambda_source"].startswith("published")
    assert lambda_and_type("coco", 0.2)[:2] == (0.01, "refine")
    assert lambda_and_type("voc", 0.4)[:2] == (0.1, "refine")
    for level, lam in ((0.1, 0.01), (0.2, 0.01), (0.3, 0.1)):  # VOC 10-30 %: unpublished, documented default
        got_lam, typ, source = lambda_and_type("voc", level)
        assert (got_lam, typ) == (lam, "refine") and "unpublished" in source
    assert lambda_and_type("shapes", 0.4)[:2] == (0.1, "random")  # non-VOC datasets follow the COCO configs
    assert "unpublished" in lambda_and_type("coco", None)[2]


def _cpu_cfg(**method):
    return resolve_config(get_method("oa_mil"), "cpu", "shapes", 0.4,
                          {f"method.{k}": v for k, v in method.items()})


def test_model_adds_no_parameters_and_keeps_torchvision_keys():
    cfg = _cpu_cfg()
    oamil = get_method("oa_mil").build_model(cfg, 4)
    vanilla = get_method("faster_rcnn").build_model(cfg, 4)
    assert isinstance(oamil.roi_heads, OAMILRoIHeads)
    assert {k: v.shape for k, v in oamil.named_parameters()} == {k: v.shape for k, v in vanilla.named_parameters()}
    assert set(oamil.state_dict()) - set(vanilla.state_dict()) == {"roi_heads._extra_state"}
    assert oamil.roi_heads.box_head is not None and callable(oamil.set_epoch) and callable(oamil.refined_boxes)


def test_bad_method_settings_are_one_line_errors():
    with pytest.raises(BenchError, match="oaie_type"):
        get_method("oa_mil").build_model(_cpu_cfg(oaie_type="cascade"), 4)
    with pytest.raises(BenchError, match="oais_epoch"):
        get_method("oa_mil").build_model(_cpu_cfg(oais_epoch=0), 4)
    with pytest.raises(BenchError, match="unknown config key"):
        _cpu_cfg(oamil_lambda=0.1)


# ---- through the shared engine ----------------------------------------------------------------------------
def test_two_iteration_training_exports_refined_boxes(tmp_path):
    import orjson

    from benchmark.datasets import ShapesConfig, load_shapes

    torch.set_num_threads(1)
    data = load_shapes(ShapesConfig(train=4, val=2, size=64), progress=False)
    train = data["train"]
    m = get_method("oa_mil")
    # 2 epochs of 1 iteration: OA-IS from epoch 0 (1/12 of 2 rounds to 0), OA-IE at epoch 1 (8/12 -> 1)
    cfg = resolve_config(m, "cpu", "shapes", 0.4, {"train.epochs": 2, "train.iters_per_epoch": 1,
                                                    "train.batch_size": 2, "train.base_batch_size": 2,
                                                    "train.steps": [1], "train.warmup_iters": 0})
    result = m.train(train, cfg, tmp_path, progress=False)
    assert result.refined_boxes is not None
    refined = orjson.loads(result.refined_boxes.read_bytes())
    anns = {a["id"]: a for a in train.annotations}
    assert refined and all(r["id"] in anns for r in refined)
    for r in refined:
        x, y, w, h = r["bbox"]
        assert r["category_id"] == anns[r["id"]]["category_id"]
        assert -1e-3 <= x and -1e-3 <= y and x + w <= 64 + 1e-3 and y + h <= 64 + 1e-3 and w > 0 and h > 0
    history = result.metrics["history"]
    assert [("loss_oamil" in h) for h in history] == [True, True]
    assert result.metrics["oamil_refined_annotations"] == len(refined)
    preds = m.predict(result.checkpoint, data["test"], cfg, progress=False)
    assert isinstance(preds, list)  # the checkpoint (with the head's extra state) loads back for inference
