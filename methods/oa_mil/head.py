"""OA-MIL's RoI head (Liu et al., ECCV 2022), written from the paper (§3) and the authors' code (cxliu0/OA-MIL,
`StandardRoIHeadOAMIL`, `Shared2FCBBoxHeadOAMIL`); summary in docs/methods.md ("OA-MIL RoI head").

The head is torchvision's `RoIHeads` with the same RoI pool, box head and predictor (no extra parameters). Only
training changes:

1. Bags: the positive sampled RoIs assigned to the same noisy ground-truth box form that object's bag. Membership
   comes from the matcher's GT index per image (never from decoded coordinates, which can collide).
2. Instances: each positive RoI's class-specific regression is decoded into a box; the boxes are re-pooled and
   re-classified by the same head; the softmax probability of the bag's class is the instance confidence.
3. OA-IS (from `oais_epoch`): per bag, the most confident instance (score s) corrects the noisy box:
   target = phi * best + (1 - phi) * noisy with phi = min(s ** gamma, theta); all positives of the bag regress to
   the corrected box (L1 on DeltaXYXY codes).
4. OA-IE (from `oaie_epoch`): N extra rounds re-pool the previous round's boxes; `refine` cascades from the previous
   round's boxes, `random` re-applies the new regression to the original RoIs. Only round 0 feeds OA-IS; every
   round feeds the MIL loss.
5. MIL loss: bag score = max instance confidence; scores averaged per class, then over the classes present;
   `lambda * (1 - score)` (with OA-IE: `refine` -> (1 - S0) + coef * (1 - mean(S1..N)); `random` ->
   1 - mean(S0..N)).

Everything here is pure tensor code with no RNG; the only state is the current epoch and the last corrected box per
annotation (exported through `refined_boxes()` and kept in checkpoints as the module's extra state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import RoIHeads

from methods._core.geometry import XYXYBoxCoder, boxes_to_original

OAIE_TYPES = ("refine", "random")


# ---- the mechanism as pure functions ----------------------------------------------------------------------
def bag_index(image_index: Tensor, gt_index: Tensor) -> tuple[Tensor, Tensor]:
    """Bag of every positive RoI (0..B-1) from its image and assigned GT index; and each bag's (image, gt) pair.

    Bags are ordered by image, then GT index.
    """
    if image_index.numel() == 0:
        return image_index.new_zeros(0), image_index.new_zeros((0, 2))
    pairs = torch.stack([image_index, gt_index], dim=1)
    uniq, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    return inverse, uniq


def oais_phi(score: Tensor, gamma: float, theta: float) -> Tensor:
    """OA-IS mixing weight phi = min(s ** gamma, theta) (gamma 7.5, theta 0.85 in the paper's configs)."""
    return score.clamp(min=0.0).pow(gamma).clamp(max=theta)


def bag_max(values: Tensor, bag: Tensor, num_bags: int) -> tuple[Tensor, Tensor]:
    """Per-bag maximum of `values` (differentiable) and the index (into `values`) of the first instance attaining it."""
    best = values.new_full((num_bags,), -math.inf).scatter_reduce(0, bag, values, reduce="amax", include_self=True)
    n = values.numel()
    positions = torch.arange(n, device=values.device)
    candidates = torch.where(values == best[bag], positions, torch.full_like(positions, n))
    argbest = positions.new_full((num_bags,), n).scatter_reduce(0, bag, candidates, reduce="amin", include_self=True)
    return best, argbest


def correct_boxes(bag: Tensor, num_bags: int, instance_boxes: Tensor, instance_scores: Tensor,
                  noisy_boxes: Tensor, gamma: float, theta: float) -> tuple[Tensor, Tensor, Tensor]:
    """OA-IS: per bag, corrected box = phi * most-confident instance + (1 - phi) * the noisy box.

    `noisy_boxes` is (num_bags, 4). Returns (corrected (num_bags, 4), best score, phi); no gradient flows.
    """
    scores = instance_scores.detach()
    best_score, arg = bag_max(scores, bag, num_bags)
    phi = oais_phi(best_score, gamma, theta)
    best_box = instance_boxes.detach()[arg]
    corrected = phi[:, None] * best_box + (1.0 - phi[:, None]) * noisy_boxes.detach()
    return corrected, best_score, phi


def mil_bag_score(instance_scores: Tensor, bag: Tensor, num_bags: int, bag_labels: Tensor) -> Tensor:
    """Class-balanced MIL score: max instance confidence per bag, mean per class, mean over classes present."""
    per_bag, _ = bag_max(instance_scores, bag, num_bags)
    classes, cls_index = torch.unique(bag_labels, return_inverse=True)
    per_class_sum = per_bag.new_zeros(len(classes)).index_add(0, cls_index, per_bag)
    per_class_count = per_bag.new_zeros(len(classes)).index_add(0, cls_index, torch.ones_like(per_bag))
    return (per_class_sum / per_class_count).mean()


def mil_loss(round_scores: list[Tensor], oaie_type: str, oaie_coef: float, mil_lambda: float) -> Tensor:
    """lambda * MIL loss from the class-balanced bag scores of each round (round 0 = the RoIs' own instances)."""
    if oaie_type not in OAIE_TYPES:
        raise ValueError(f"oaie_type must be one of {OAIE_TYPES}, got {oaie_type!r}")
    s0 = round_scores[0]
    if len(round_scores) == 1:
        loss = 1.0 - s0
    elif oaie_type == "refine":
        loss = (1.0 - s0) + oaie_coef * (1.0 - torch.stack(round_scores[1:]).mean())
    else:
        loss = 1.0 - torch.stack(round_scores).mean()
    return mil_lambda * loss


def phase_start(published_epoch: int, published_epochs: int, num_epochs: int) -> int:
    """0-based epoch at which a phase that the paper starts at (1-based) `published_epoch` of `published_epochs`
    starts in a run of `num_epochs`, keeping the same fraction of training before it (oais 2/12 -> epoch 1 of 12)."""
    frac = (published_epoch - 1) / published_epochs
    return int(math.floor(frac * num_epochs + 0.5))


def sane_boxes(boxes: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """Corners ordered and clipped to the image, so that re-pooling never sees a negative-size box."""
    h, w = float(image_hw[0]), float(image_hw[1])
    x1 = torch.minimum(boxes[:, 0], boxes[:, 2]).clamp(0, w)
    x2 = torch.maximum(boxes[:, 0], boxes[:, 2]).clamp(0, w)
    y1 = torch.minimum(boxes[:, 1], boxes[:, 3]).clamp(0, h)
    y2 = torch.maximum(boxes[:, 1], boxes[:, 3]).clamp(0, h)
    return torch.stack([x1, y1, x2, y2], dim=1)


# ---- the head ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OAMILParams:
    mil_lambda: float = 0.1
    oais: bool = True
    oais_epoch: int = 2
    oais_gamma: float = 7.5
    oais_theta: float = 0.85
    oaie: bool = True
    oaie_num: int = 4
    oaie_coef: float = 1.0
    oaie_epoch: int = 9
    oaie_type: str = "refine"
    schedule_epochs: int = 12
    box_stds: tuple[float, float, float, float] = (0.1, 0.1, 0.1, 0.1)

    def __post_init__(self):
        if self.oaie_type not in OAIE_TYPES:
            raise ValueError(f"oaie_type must be one of {OAIE_TYPES}, got {self.oaie_type!r}")
        if self.oaie and self.oaie_num < 1:
            raise ValueError("oaie_num must be >= 1 when OA-IE is on")
        if not 0.0 <= self.oais_theta <= 1.0:
            raise ValueError(f"oais_theta must be in [0, 1], got {self.oais_theta}")


class OAMILRoIHeads(RoIHeads):
    """torchvision `RoIHeads` + OA-MIL training (bags, OA-IS, OA-IE, MIL loss); inference is unchanged."""

    def __init__(self, base: RoIHeads, params: OAMILParams):
        super().__init__(
            base.box_roi_pool, base.box_head, base.box_predictor,
            fg_iou_thresh=base.proposal_matcher.high_threshold,
            bg_iou_thresh=base.proposal_matcher.low_threshold,
            batch_size_per_image=base.fg_bg_sampler.batch_size_per_image,
            positive_fraction=base.fg_bg_sampler.positive_fraction,
            bbox_reg_weights=None,
            score_thresh=base.score_thresh, nms_thresh=base.nms_thresh,
            detections_per_img=base.detections_per_img,
        )
        if base.has_mask() or base.has_keypoint():
            raise ValueError("OA-MIL head supports box detection only")
        self.box_coder = XYXYBoxCoder(params.box_stds)
        self.params = params
        self.epoch, self.num_epochs = 0, params.schedule_epochs
        self._refined: dict[int, list[float]] = {}
        self._stats = {"bags": 0.0, "best_score": 0.0, "phi": 0.0, "batches": 0.0}

    # ---- schedule ------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        """Called by the engine at the start of every epoch; diagnostics then describe the epoch under way."""
        self.epoch, self.num_epochs = int(epoch), int(num_epochs)
        self._stats = dict.fromkeys(self._stats, 0.0)

    @property
    def oais_active(self) -> bool:
        p = self.params
        return p.oais and self.epoch >= phase_start(p.oais_epoch, p.schedule_epochs, self.num_epochs)

    @property
    def oaie_active(self) -> bool:
        p = self.params
        return p.oaie and self.epoch >= phase_start(p.oaie_epoch, p.schedule_epochs, self.num_epochs)

    @property
    def num_rounds(self) -> int:
        """Instance rounds this epoch: 1, or 1 + N once OA-IE is on."""
        return 1 + self.params.oaie_num if self.oaie_active else 1

    # ---- exported state --------------------------------------------------------------------------------------
    def refined_boxes(self) -> dict[int, list[float]]:
        return {k: list(v) for k, v in self._refined.items()}

    def diagnostics(self) -> dict[str, float]:
        n = max(self._stats["batches"], 1.0)
        return {"oamil_bags_per_batch": self._stats["bags"] / n,
                "oamil_mean_best_score": self._stats["best_score"] / n,
                "oamil_mean_phi": self._stats["phi"] / n,
                "oamil_refined_annotations": float(len(self._refined))}

    def get_extra_state(self):
        ids = torch.tensor(list(self._refined.keys()), dtype=torch.int64)
        boxes = torch.tensor(list(self._refined.values()), dtype=torch.float32).reshape(-1, 4)
        return {"refined_ids": ids, "refined_boxes": boxes, "epoch": torch.tensor([self.epoch, self.num_epochs]),
                "stats": dict(self._stats)}  # an epoch's diagnostics so far: checkpoints are also taken mid-epoch

    def set_extra_state(self, state) -> None:
        ids, boxes = state["refined_ids"].tolist(), state["refined_boxes"].tolist()
        self._refined = dict(zip((int(i) for i in ids), boxes))
        self.epoch, self.num_epochs = (int(v) for v in state["epoch"].tolist())
        self._stats.update({k: float(v) for k, v in state.get("stats", {}).items() if k in self._stats})

    # ---- training --------------------------------------------------------------------------------------------
    def _classify(self, features, boxes_per_image: list[Tensor], image_shapes) -> tuple[Tensor, Tensor]:
        x = self.box_head(self.box_roi_pool(features, boxes_per_image, image_shapes))
        return self.box_predictor(x)

    def instance_rounds(self, features, image_shapes, pos_rois: Tensor, pos_image: Tensor, pos_labels: Tensor,
                        pos_regression: Tensor, num_rounds: int) -> tuple[list[Tensor], list[Tensor]]:
        """Instance boxes and confidences per round. Round 0 decodes the RoIs' own regressions; rounds 1..N
        (OA-IE) use the regression predicted at the previous round's boxes."""
        n_images = len(image_shapes)
        counts = torch.bincount(pos_image, minlength=n_images).tolist()
        rows = torch.arange(len(pos_labels), device=pos_labels.device)
        anchors, regression = pos_rois, pos_regression
        boxes_list, scores_list = [], []
        for _ in range(num_rounds):
            deltas = regression.reshape(len(rows), -1, 4)[rows, pos_labels]
            boxes = self.box_coder.decode_single(deltas.detach(), anchors).detach()
            per_image = [sane_boxes(b, image_shapes[i]) for i, b in enumerate(boxes.split(counts))]
            logits, regression = self._classify(features, per_image, image_shapes)
            scores = F.softmax(logits, dim=1)[rows, pos_labels]
            boxes_list.append(torch.cat(per_image))
            scores_list.append(scores)
            if self.params.oaie_type == "refine":
                anchors = boxes_list[-1]
        return boxes_list, scores_list

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("targets are required in training mode")
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        class_logits, box_regression = self._classify(features, proposals, image_shapes)

        labels_all = torch.cat(labels)
        reg_targets = torch.cat(regression_targets)
        pos = torch.where(labels_all > 0)[0]
        image_all = torch.cat([torch.full((len(p),), i, dtype=torch.int64, device=labels_all.device)
                               for i, p in enumerate(proposals)])
        pos_rois = torch.cat(proposals)[pos]
        pos_labels = labels_all[pos]
        pos_image, pos_gt = image_all[pos], torch.cat(matched_idxs)[pos]
        pos_regression = box_regression[pos]

        losses = {"loss_classifier": F.cross_entropy(class_logits, labels_all)}
        p = self.params
        use_mil = p.mil_lambda > 0
        if len(pos) > 0 and (use_mil or self.oais_active):
            bag, bag_keys = bag_index(pos_image, pos_gt)
            num_bags = len(bag_keys)
            boxes_r, scores_r = self.instance_rounds(features, image_shapes, pos_rois, pos_image, pos_labels,
                                                     pos_regression, self.num_rounds if use_mil else 1)
            if use_mil:
                bag_labels = torch.zeros(num_bags, dtype=pos_labels.dtype, device=pos_labels.device)
                bag_labels[bag] = pos_labels
                round_scores = [mil_bag_score(s, bag, num_bags, bag_labels) for s in scores_r]
                losses["loss_oamil"] = mil_loss(round_scores, p.oaie_type, p.oaie_coef, p.mil_lambda)
            if self.oais_active:
                noisy = torch.stack([targets[i]["boxes"][g] for i, g in bag_keys.tolist()]).to(pos_rois.dtype)
                corrected, best, phi = correct_boxes(bag, num_bags, boxes_r[0], scores_r[0], noisy,
                                                     p.oais_gamma, p.oais_theta)
                reg_targets = reg_targets.clone()
                reg_targets[pos] = self.box_coder.encode_single(corrected[bag], pos_rois)
                self._record(corrected, bag_keys, targets, image_shapes, best, phi)
        if len(pos) > 0:
            deltas = box_regression.reshape(len(labels_all), -1, 4)[pos, pos_labels]
            box_loss = F.l1_loss(deltas.float(), reg_targets[pos].float(), reduction="sum") / labels_all.numel()
        else:
            box_loss = box_regression.sum() * 0.0
        losses["loss_box_reg"] = box_loss
        return [], losses

    def _record(self, corrected: Tensor, bag_keys: Tensor, targets, image_shapes, best: Tensor, phi: Tensor) -> None:
        """Keep the corrected box of every annotation seen, in original-image pixels (last value wins)."""
        self._stats["bags"] += float(len(bag_keys))
        self._stats["best_score"] += float(best.mean())
        self._stats["phi"] += float(phi.mean())
        self._stats["batches"] += 1.0
        keys = bag_keys.tolist()
        for i, t in enumerate(targets):
            in_image = [b for b, (img, _) in enumerate(keys) if img == i]
            if not in_image or "ann_ids" not in t:
                continue
            boxes = boxes_to_original(corrected[in_image], image_shapes[i], t).tolist()
            for b, box in zip(in_image, boxes):
                self._refined[int(t["ann_ids"][keys[b][1]])] = box
