"""DISCO's RoI head (Zhou et al., BMVC 2024), written from the released code's description (Correr-Zhou/DISCO,
`standard_roi_head_disco.py`, `convfc_bbox_head_disco.py`) on torchvision's `RoIHeads`.

Per training iteration, for every noisy box, the positive sampled RoIs assigned to it form a cluster:
1. their class-specific regressions are decoded and re-classified; softmax(score / T) over the cluster weights a
   spatial distribution: mean and std per coordinate (`cluster_distribution`);
2. DA-Aug: `sample_num` boxes drawn from N(mean, std) are classified too; the most confident of cluster + samples
   (`selected_num`) gets loss_cls_calib = -lambda * log(score) (classification calibration);
3. the distribution is re-estimated over cluster + samples (`dist_refine`);
4. DA-Ref: pseudo box = phi * mean + (1 - phi) * noisy box with phi = min(s(mean) ^ mix_a, mix_b), s(mean) the
   classifier's confidence at the mean box; every positive of the cluster regresses to it (L1, DeltaXYXY 0.1);
5. DA-Est: a variance branch predicts each coordinate's log-variance, trained (L1, weight gamma) towards
   log(std^2 / (w, h, w, h) of the pseudo box); at inference, variance voting + Gaussian soft-NMS use it.
The assignment is run `assign_time` times (2): later passes assign proposals to the pseudo boxes of the previous
one; losses come from the last pass (as in the released code, whose earlier passes' losses are overwritten).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import box_iou, clip_boxes_to_image

from methods.core import boxes_to_original


@dataclass(frozen=True)
class DiscoParams:
    loss_lambda: float = 0.1
    loss_gamma: float = 0.3
    temperature: float = 0.1
    mix_a: float = 5.0
    mix_b: float = 0.85
    sample_num: int = 10
    selected_num: int = 1
    assign_time: int = 2
    reg_calib_epoch: int = 1
    schedule_epochs: int = 12
    box_stds: tuple = (0.1, 0.1, 0.1, 0.1)
    var_init_std: float = 1e-5
    softnms: bool = True
    softnms_sigma: float = 0.5
    var_vote: bool = True
    var_sigma_t: float = 0.02


class XYXYCoder:
    """DeltaXYXY (DISCO's RCNN coder): corners move by a fraction of the reference box's size, / stds."""

    def __init__(self, stds):
        self.stds = tuple(float(s) for s in stds)

    def encode_single(self, boxes: Tensor, ref: Tensor) -> Tensor:
        size = (ref[:, 2:] - ref[:, :2]).repeat(1, 2)
        return (boxes - ref) / size / ref.new_tensor(self.stds)

    def encode(self, boxes: list[Tensor], ref: list[Tensor]):
        sizes = [len(r) for r in ref]
        return self.encode_single(torch.cat(boxes).float(), torch.cat(ref).float()).split(sizes, 0)

    def decode_single(self, codes: Tensor, ref: Tensor) -> Tensor:
        """(N, 4K) codes on (N, 4) boxes -> (N, 4K) boxes."""
        k = codes.shape[1] // 4
        size = (ref[:, 2:] - ref[:, :2]).repeat(1, 2).repeat(1, k)
        return ref.repeat(1, k) + codes * codes.new_tensor(self.stds).repeat(k) * size


# ---- the mechanism as pure functions ----------------------------------------------------------------------
def cluster_softmax(scores: Tensor, cluster: Tensor, num: int, temperature: float) -> Tensor:
    """softmax(score / T) within each cluster (clusters 0..num-1)."""
    z = scores / temperature
    top = z.new_full((num,), -math.inf).scatter_reduce(0, cluster, z, "amax", include_self=True)
    e = torch.exp(z - top[cluster])
    return e / e.new_zeros(num).index_add(0, cluster, e)[cluster]


def cluster_distribution(boxes: Tensor, scores: Tensor, cluster: Tensor, num: int, temperature: float):
    """(mean, std) per cluster of the score-weighted boxes (weights softmax(score / T) in the cluster)."""
    w = cluster_softmax(scores, cluster, num, temperature)[:, None]
    mean = boxes.new_zeros(num, 4).index_add(0, cluster, w * boxes)
    var = boxes.new_zeros(num, 4).index_add(0, cluster, w * (boxes - mean[cluster]) ** 2)
    return mean, var.clamp(min=0).sqrt()


def mix_weight(score: Tensor, a: float, b: float) -> Tensor:
    """DA-Ref's phi = min(s ^ mix_a, mix_b)."""
    return score.clamp(min=0).pow(a).clamp(max=b)


def variance_target(std: Tensor, pseudo: Tensor) -> Tensor:
    """log(std^2 / (w, h, w, h) of the pseudo box), floored at log(1e-6), as the released code's target."""
    w = (pseudo[:, 2] - pseudo[:, 0]).clamp(min=1e-6)
    h = (pseudo[:, 3] - pseudo[:, 1]).clamp(min=1e-6)
    return torch.log((std ** 2 / torch.stack([w, h, w, h], 1)).clamp(min=1e-6))


def soft_nms_var_vote(boxes: Tensor, scores: Tensor, log_var: Tensor | None, score_thresh: float, sigma: float,
                      soft: bool, nms_thresh: float, sigma_t: float) -> tuple[Tensor, Tensor]:
    """One class: repeatedly keep the top box, move it to the variance-weighted vote of the boxes overlapping it
    (weights exp(-(1 - IoU)^2 / sigma_t) / variance, the box itself weight 1 / variance), and decay the others'
    scores by exp(-IoU^2 / sigma) (soft) or drop those above `nms_thresh` (hard); boxes below `score_thresh` go."""
    kept_boxes, kept_scores = [], []
    boxes, scores = boxes.clone(), scores.clone()
    var = None
    if log_var is not None:
        w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-6)
        h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-6)
        var = torch.exp(log_var) * torch.stack([w, h, w, h], 1)  # the released code's scaling back to pixels
    while scores.numel():
        i = int(torch.argmax(scores))
        top_box, top_score = boxes[i], scores[i]
        rest = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
        rest[i] = False
        boxes_r, scores_r = boxes[rest], scores[rest]
        iou = box_iou(top_box[None], boxes_r)[0]
        if var is not None:
            var_r = var[rest]
            near = iou > 0
            p = torch.cat([torch.exp(-(1 - iou[near]) ** 2 / sigma_t), iou.new_ones(1)])[:, None]
            p = p / torch.cat([var_r[near], var[i][None]])
            p = p / p.sum(0)
            top_box = (p * torch.cat([boxes_r[near], top_box[None]])).sum(0)
            var = var_r
        kept_boxes.append(top_box)
        kept_scores.append(top_score)
        decay = torch.exp(-iou ** 2 / sigma) if soft else (iou <= nms_thresh).to(scores.dtype)
        scores_r = scores_r * decay
        alive = scores_r >= score_thresh
        boxes, scores = boxes_r[alive], scores_r[alive]
        if var is not None:
            var = var[alive]
    if not kept_boxes:
        return boxes.new_zeros(0, 4), scores.new_zeros(0)
    return torch.stack(kept_boxes), torch.stack(kept_scores)


class DiscoPredictor(nn.Module):
    """Classifier + class-specific box deltas (the core's layers) + class-specific log-variances (DA-Est)."""

    def __init__(self, cls_score: nn.Linear, bbox_pred: nn.Linear, init_std: float):
        super().__init__()
        self.cls_score, self.bbox_pred = cls_score, bbox_pred
        self.bbox_var = nn.Linear(bbox_pred.in_features, bbox_pred.out_features)
        with torch.no_grad():
            self.bbox_var.weight.normal_(0.0, init_std)
            self.bbox_var.bias.zero_()

    def forward(self, x: Tensor):
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x), self.bbox_var(x)


class DiscoRoIHeads(RoIHeads):
    def __init__(self, base: RoIHeads, params: DiscoParams):
        super().__init__(
            base.box_roi_pool, base.box_head,
            DiscoPredictor(base.box_predictor.cls_score, base.box_predictor.bbox_pred, params.var_init_std),
            fg_iou_thresh=base.proposal_matcher.high_threshold, bg_iou_thresh=base.proposal_matcher.low_threshold,
            batch_size_per_image=base.fg_bg_sampler.batch_size_per_image,
            positive_fraction=base.fg_bg_sampler.positive_fraction, bbox_reg_weights=None,
            score_thresh=base.score_thresh, nms_thresh=base.nms_thresh, detections_per_img=base.detections_per_img)
        self.box_coder = XYXYCoder(params.box_stds)  # select_training_samples encodes targets with it
        self.params = params
        self.epoch, self.num_epochs = 0, params.schedule_epochs
        self._refined: dict[int, list[float]] = {}
        self._stats = {"phi": 0.0, "std_scaled": 0.0, "batches": 0.0}

    # ---- hooks ---------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        self.epoch, self.num_epochs = int(epoch), int(num_epochs)
        self._stats = dict.fromkeys(self._stats, 0.0)

    @property
    def reg_calib_active(self) -> bool:
        """From `reg_calib_epoch` (1-based, of `schedule_epochs`), scaled to the run's epoch count."""
        p = self.params
        return self.epoch >= math.ceil((p.reg_calib_epoch - 1) / p.schedule_epochs * self.num_epochs - 1e-9)

    def refined_boxes(self) -> dict[int, list[float]]:
        return {k: list(v) for k, v in self._refined.items()}

    def diagnostics(self) -> dict[str, float]:
        n = max(self._stats["batches"], 1.0)
        return {"disco_mean_phi": self._stats["phi"] / n, "disco_mean_std_scaled": self._stats["std_scaled"] / n,
                "disco_refined_annotations": float(len(self._refined))}

    def get_extra_state(self):
        ids = torch.tensor(list(self._refined.keys()), dtype=torch.int64)
        boxes = torch.tensor(list(self._refined.values()), dtype=torch.float32).reshape(-1, 4)
        return {"refined_ids": ids, "refined_boxes": boxes, "epoch": torch.tensor([self.epoch, self.num_epochs]),
                "stats": dict(self._stats)}

    def set_extra_state(self, state) -> None:
        self._refined = dict(zip((int(i) for i in state["refined_ids"].tolist()), state["refined_boxes"].tolist()))
        self.epoch, self.num_epochs = (int(v) for v in state["epoch"].tolist())
        self._stats.update({k: float(v) for k, v in state.get("stats", {}).items() if k in self._stats})

    # ---- training --------------------------------------------------------------------------------------------
    def _classify(self, features, boxes: list[Tensor], image_shapes):
        return self.box_predictor(self.box_head(self.box_roi_pool(features, boxes, image_shapes)))

    def _scores_at(self, features, boxes: Tensor, image: Tensor, labels: Tensor, image_shapes) -> Tensor:
        """Softmax confidence of `labels` at `boxes` (one list entry per image, `image` says which)."""
        per_image = [boxes[image == i] for i in range(len(image_shapes))]
        order = torch.cat([torch.where(image == i)[0] for i in range(len(image_shapes))])
        logits = self._classify(features, per_image, image_shapes)[0]
        scores = torch.empty(len(boxes), device=boxes.device, dtype=logits.dtype)
        scores[order] = F.softmax(logits, 1)[torch.arange(len(order), device=boxes.device), labels[order]]
        return scores

    def _pass(self, features, proposals, image_shapes, targets):
        """One assignment pass: (losses, pseudo box per (image, gt) or None, that (image, gt) list)."""
        p = self.params
        props, matched, labels, reg_targets = self.select_training_samples(proposals, targets)
        logits, deltas, log_var = self._classify(features, props, image_shapes)
        labels_all, reg_all = torch.cat(labels), torch.cat(reg_targets)
        n_all = labels_all.numel()
        image_all = torch.cat([torch.full((len(b),), i, dtype=torch.int64, device=labels_all.device)
                               for i, b in enumerate(props)])
        pos = torch.where(labels_all > 0)[0]
        losses = {"loss_classifier": F.cross_entropy(logits, labels_all)}
        pos_labels = labels_all[pos]
        pos_deltas = deltas.reshape(n_all, -1, 4)[pos, pos_labels]
        pos_log_var = log_var.reshape(n_all, -1, 4)[pos, pos_labels]
        if len(pos) == 0:
            zero = deltas.sum() * 0.0 + log_var.sum() * 0.0
            losses.update(loss_box_reg=zero, loss_var=zero, loss_cls_calib=zero)
            return losses, None, None
        pos_rois, pos_image = torch.cat(props)[pos].float(), image_all[pos]
        pairs = torch.stack([pos_image, torch.cat(matched)[pos]], 1)
        keys, cluster = torch.unique(pairs, dim=0, return_inverse=True)
        num = len(keys)
        noisy = torch.stack([targets[i]["boxes"][g] for i, g in keys.tolist()]).float()
        # 1. the cluster's predicted boxes and their confidence
        boxes = clip_per_image(self.box_coder.decode_single(pos_deltas.detach().float(), pos_rois), pos_image,
                               image_shapes)
        conf = self._scores_at(features, boxes, pos_image, pos_labels, image_shapes)
        mean, std = cluster_distribution(boxes, conf.detach(), cluster, num, p.temperature)
        # 2. DA-Aug: boxes sampled from the distribution, classified
        key_labels = pos_labels.new_zeros(num).index_put((cluster,), pos_labels)
        s_cluster = torch.arange(num, device=pos.device).repeat_interleave(p.sample_num)
        s_image = keys[s_cluster, 0]
        noise = torch.randn(num * p.sample_num, 4, device=mean.device)
        sampled = clip_per_image(mean[s_cluster] + std[s_cluster] * noise, s_image, image_shapes)
        s_conf = self._scores_at(features, sampled, s_image, key_labels[s_cluster], image_shapes)
        all_boxes, all_conf = torch.cat([boxes, sampled]), torch.cat([conf, s_conf])
        all_cluster = torch.cat([cluster, s_cluster])
        # classification calibration: the `selected_num` most confident per cluster
        losses["loss_cls_calib"] = -p.loss_lambda * torch.log(
            top_per_cluster(all_conf, all_cluster, num, p.selected_num).clamp(min=1e-12)).mean()
        # 3. refined distribution over cluster + samples
        mean, std = cluster_distribution(all_boxes, all_conf.detach(), all_cluster, num, p.temperature)
        if not self.reg_calib_active:
            losses["loss_box_reg"] = F.l1_loss(pos_deltas.float(), reg_all[pos].float(), reduction="sum") / n_all
            losses["loss_var"] = log_var.sum() * 0.0
            return losses, None, keys
        # 4. DA-Ref: pseudo box mixing the mean with the noisy box
        with torch.no_grad():
            mean = mean.clamp(min=0)
            mean = clip_per_image(mean, keys[:, 0], image_shapes)
            s_mean = self._scores_at(features, mean, keys[:, 0], key_labels, image_shapes)
            phi = mix_weight(s_mean, p.mix_a, p.mix_b)[:, None]
            pseudo = phi * mean + (1 - phi) * noisy
            target = self.box_coder.encode_single(pseudo[cluster], pos_rois)
            var_target = variance_target(std, pseudo)[cluster]
        losses["loss_box_reg"] = F.l1_loss(pos_deltas.float(), target, reduction="sum") / n_all
        # 5. DA-Est: the variance branch learns the distribution's spread
        losses["loss_var"] = p.loss_gamma * F.l1_loss(pos_log_var.float(), var_target, reduction="sum") / n_all
        self._stats["phi"] += float(phi.mean())
        self._stats["std_scaled"] += float(torch.exp(var_target).mean())
        return losses, pseudo, keys

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training:
            return self._infer(features, proposals, image_shapes)
        current = targets
        for k in range(self.params.assign_time):
            last = k == self.params.assign_time - 1
            with torch.set_grad_enabled(last and torch.is_grad_enabled()):
                losses, pseudo, keys = self._pass(features, proposals, image_shapes, current)
            if pseudo is None:
                break
            current = corrected_targets(current, pseudo, keys)
        if pseudo is not None:
            self._stats["batches"] += 1.0
            self._record(pseudo, keys, targets, image_shapes)
        return [], losses

    def _record(self, pseudo: Tensor, keys: Tensor, targets, image_shapes) -> None:
        for i, t in enumerate(targets):
            rows = torch.where(keys[:, 0] == i)[0]
            if not len(rows) or "ann_ids" not in t:
                continue
            boxes = boxes_to_original(pseudo[rows], image_shapes[i], t).tolist()
            for g, box in zip(keys[rows, 1].tolist(), boxes):
                self._refined[int(t["ann_ids"][g])] = box

    # ---- inference ---------------------------------------------------------------------------------------------
    def _infer(self, features, proposals, image_shapes):
        p = self.params
        logits, deltas, log_var = self._classify(features, proposals, image_shapes)
        sizes = [len(b) for b in proposals]
        k = logits.shape[1]
        out = []
        for props, lg, dl, lv, shape in zip(proposals, logits.split(sizes), deltas.split(sizes),
                                            log_var.split(sizes), image_shapes):
            scores = F.softmax(lg.float(), 1)
            boxes = self.box_coder.decode_single(dl.float(), props.float()).reshape(-1, k, 4)
            boxes = clip_boxes_to_image(boxes, shape)
            lv = lv.float().reshape(-1, k, 4)
            det_b, det_s, det_l = [], [], []
            for c in range(1, k):
                keep = torch.where(scores[:, c] > self.score_thresh)[0]
                if not len(keep):
                    continue
                b, s = soft_nms_var_vote(boxes[keep, c], scores[keep, c], lv[keep, c] if p.var_vote else None,
                                         self.score_thresh, p.softnms_sigma, p.softnms, self.nms_thresh,
                                         p.var_sigma_t)
                det_b.append(b)
                det_s.append(s)
                det_l.append(torch.full((len(s),), c, dtype=torch.int64, device=s.device))
            if det_b:
                b, s, lab = torch.cat(det_b), torch.cat(det_s), torch.cat(det_l)
                order = torch.argsort(s, descending=True)[: self.detections_per_img]
                b, s, lab = clip_boxes_to_image(b[order], shape), s[order], lab[order]
            else:
                b, s, lab = boxes.new_zeros(0, 4), scores.new_zeros(0), torch.zeros(0, dtype=torch.int64,
                                                                                     device=boxes.device)
            out.append({"boxes": b, "scores": s, "labels": lab})
        return out, {}


def top_per_cluster(scores: Tensor, cluster: Tensor, num: int, k: int) -> Tensor:
    """The k highest scores of every cluster (fewer where a cluster has fewer), concatenated."""
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(cluster[order], stable=True)]  # by cluster, then by score
    c = cluster[order]
    first = torch.searchsorted(c, torch.arange(num, device=c.device))
    rank = torch.arange(len(c), device=c.device) - first[c]
    return scores[order][rank < k]


def clip_per_image(boxes: Tensor, image: Tensor, image_shapes) -> Tensor:
    """Clip each box to its own image (`image` gives the index into `image_shapes`)."""
    out = boxes.clone()
    for i, (h, w) in enumerate(image_shapes):
        m = image == i
        out[m] = clip_boxes_to_image(boxes[m], (h, w))
    return out


def corrected_targets(targets, pseudo: Tensor, keys: Tensor):
    """The targets with every annotation that had a cluster moved to its pseudo box (the next assignment pass)."""
    out = []
    for i, t in enumerate(targets):
        boxes = t["boxes"].clone()
        rows = torch.where(keys[:, 0] == i)[0]
        boxes[keys[rows, 1]] = pseudo[rows].to(boxes.dtype)
        out.append({**t, "boxes": boxes})
    return out
