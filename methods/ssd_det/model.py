"""SSD-Det's training module (private to `methods/ssd_det/__init__.py`): the core Faster R-CNN plus the refiner, sharing one
backbone/FPN pass per iteration, with the engine's hooks (`set_epoch`, `set_diagnostics`, `refined_boxes`,
`diagnostics`). In eval mode it is exactly the core detector."""

from __future__ import annotations

import torch
from torch import nn

from methods._core.geometry import boxes_from_original, boxes_to_original, paired_iou
from methods.ssd_det.refiner import SSDRefiner, paired_bag_iou


class SSDDetModel(nn.Module):
    """The core Faster R-CNN (`detector`) + the SSD-Det refiner, with the engine's hooks.

    Keeps, outside the graph: the latest pseudo box of every training object (original-image xyxy, exported by
    `refined_boxes()`), and bag-quality sums against the clean boxes when `set_diagnostics` gave them. Both
    survive checkpoint/resume through the module's extra state."""

    def __init__(self, detector: nn.Module, refiner: SSDRefiner, det_loss_weights: dict[str, float], seed: int):
        super().__init__()
        self.detector = detector
        self.refiner = refiner
        self.det_loss_weights = dict(det_loss_weights)
        self.seed = int(seed)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._refined: dict[int, tuple[float, ...]] = {}
        self._clean: dict[int, tuple[float, ...]] | None = None
        self._sums: dict[str, dict[str, float]] = {"epoch": {}, "final": {}}

    # -- forward ----------------------------------------------------------------------------------------
    def forward(self, images, targets=None):
        if not self.training:
            return self.detector(images, targets)
        images_t, targets_t = self.detector.transform(images, targets)
        features = self.detector.backbone(images_t.tensors)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.steps))
        out, counts = self._refine(features, images_t.image_sizes, targets_t, g, with_losses=True)
        self.steps += 1
        pseudo = [{"boxes": b, "labels": t["labels"]} for b, t in zip(out.pseudo_boxes.split(counts), targets_t)]
        proposals, rpn_losses = self.detector.rpn(images_t, features, pseudo)
        _, det_losses = self.detector.roi_heads(features, proposals, images_t.image_sizes, pseudo)
        losses = {k: v * self.det_loss_weights.get(k, 1.0) for k, v in {**rpn_losses, **det_losses}.items()}
        losses.update(out.losses)
        with torch.no_grad():
            self._record(out, targets_t, images_t.image_sizes, counts, "epoch")
        return losses

    @torch.no_grad()
    def refine(self, images, targets) -> None:
        """Refinement pass without gradients (eval-mode BN, no negatives): records the pseudo boxes and the
        `final` diagnostics of every object in `targets`."""
        images_t, targets_t = self.detector.transform(images, targets)
        features = self.detector.backbone(images_t.tensors)
        out, counts = self._refine(features, images_t.image_sizes, targets_t, None, with_losses=False)
        self._record(out, targets_t, images_t.image_sizes, counts, "final")

    def _refine(self, features, image_sizes, targets, generator, with_losses):
        counts = [len(t["boxes"]) for t in targets]
        dev = targets[0]["boxes"].device if targets else torch.device("cpu")
        boxes = torch.cat([t["boxes"] for t in targets]).float()
        labels = torch.cat([t["labels"] for t in targets])
        obj_img = torch.repeat_interleave(torch.arange(len(targets), device=dev),
                                          torch.as_tensor(counts, device=dev))
        out = self.refiner(features, image_sizes, boxes, labels, obj_img, generator, with_losses=with_losses)
        return out, counts

    # -- bookkeeping (no gradients, nothing kept on the graph) ------------------------------------------------
    def _record(self, out, targets, image_sizes, counts, group: str) -> None:
        pseudo = out.pseudo_boxes.split(counts)
        ids_all, boxes_all = [], []
        for p, t, hw in zip(pseudo, targets, image_sizes):  # per image: map back to original pixels
            ids_all.append(t["ann_ids"].reshape(-1))
            boxes_all.append(boxes_to_original(p, hw, t))
        if not ids_all:
            return
        ids = torch.cat(ids_all).tolist()
        self._refined.update(zip(ids, map(tuple, torch.cat(boxes_all).cpu().tolist())))
        if self._clean is not None:
            self._accumulate(out, targets, image_sizes, ids, group)

    def _accumulate(self, out, targets, image_sizes, ids: list[int], group: str) -> None:
        """Sums of IoU with the clean box, in the model frame (IoU is invariant to the resize and flips)."""
        dev = out.pseudo_boxes.device
        known = torch.tensor([i in self._clean for i in ids], dtype=torch.bool, device=dev)
        if not known.any():
            return
        clean = []
        for t, hw in zip(targets, image_sizes):
            orig = [self._clean.get(int(i), (0.0, 0.0, 1.0, 1.0)) for i in t["ann_ids"].tolist()]
            clean.append(boxes_from_original(torch.tensor(orig, dtype=torch.float32).reshape(-1, 4), hw, t))
        clean = torch.cat(clean).to(dev)[known]
        noisy = torch.cat([t["boxes"] for t in targets]).float()[known]
        sums = self._sums[group]

        def add(name: str, values: torch.Tensor) -> None:
            sums[name] = sums.get(name, 0.0) + float(values.sum())

        add("objects", torch.ones(int(known.sum())))
        add("noisy_iou_mean", paired_iou(noisy, clean))
        add("pseudo_iou_mean", paired_iou(out.pseudo_boxes[known], clean))
        if out.stage1_boxes is not None:
            add("stage1_box_iou_mean", paired_iou(out.stage1_boxes[known], clean))
        for name, (bag, valid) in out.bags.items():
            iou = paired_bag_iou(bag[known], clean)
            v = valid[known]
            add(f"bag_{name}_iou_mean", (iou * v).sum(1) / v.sum(1).clamp(min=1))
            masked = iou.masked_fill(~v, -1.0)
            add(f"bag_{name}_iou_max", masked.max(dim=1).values)
            top = masked.topk(min(10, masked.shape[1]), dim=1).values
            add(f"bag_{name}_iou_top10", (top.clamp(min=0) * (top >= 0)).sum(1) / (top >= 0).sum(1).clamp(min=1))

    # -- engine hooks ----------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        self._sums["epoch"] = {}  # diagnostics describe the last epoch seen

    def set_diagnostics(self, d) -> None:
        self._clean = None if d is None else clean_boxes_from(d)

    def refined_boxes(self) -> dict[int, list[float]]:
        return {k: list(v) for k, v in self._refined.items()}

    def reset_final(self) -> None:
        self._sums["final"] = {}

    def diagnostics(self) -> dict[str, float]:
        """Bag quality vs clean boxes: `final` pass values as `bag_*`, `pseudo_iou_mean`, ...; the last training
        epoch's as `epoch_*`. Empty without clean boxes (they are for metrics only, never for a loss)."""
        out: dict[str, float] = {"refined_objects": float(len(self._refined))}
        for group, prefix in (("final", ""), ("epoch", "epoch_")):
            sums = self._sums[group]
            n = sums.get("objects", 0.0)
            if n:
                out[f"{prefix}diag_objects"] = n
                out.update({f"{prefix}{k}": round(v / n, 5) for k, v in sums.items() if k != "objects"})
        return out

    # -- checkpoint state -----------------------------------------------------------------------------------
    def get_extra_state(self):
        return {"refined": {int(k): list(v) for k, v in self._refined.items()},
                "sums": {g: dict(v) for g, v in self._sums.items()}}

    def set_extra_state(self, state) -> None:
        if state:
            self._refined = {int(k): tuple(v) for k, v in state.get("refined", {}).items()}
            self._sums = {"epoch": {}, "final": {}, **{g: dict(v) for g, v in state.get("sums", {}).items()}}

def clean_boxes_from(d) -> dict[int, tuple[float, ...]]:
    """Clean boxes per annotation id (xyxy, original pixels) from what `set_diagnostics` receives: a
    `methods.base.Diagnostics`, a dataset whose annotations carry `true_bbox` (COCO xywh), or a mapping."""
    if hasattr(d, "clean_boxes"):
        d = d.clean_boxes
    if hasattr(d, "annotations"):
        from methods.base import Diagnostics

        d = (Diagnostics.from_dataset(d) or Diagnostics({})).clean_boxes
    return {int(k): tuple(float(v) for v in box) for k, box in dict(d).items()}
