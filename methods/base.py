"""The method-adapter protocol: the one small interface every method implements.

A method is a torch module with torchvision's detection interface plus a little metadata:

- `build_model(cfg, num_classes)` returns an `nn.Module` whose `forward(images, targets)` returns a dict of
  scalar losses in training mode and a list of `{"boxes", "labels", "scores"}` (xyxy, labels 1..K) in eval mode,
  exactly like `torchvision.models.detection.FasterRCNN`. Targets carry `boxes` (xyxy, float), `labels`
  (int64, 1..K), `ann_ids` (int64, the annotation ids) and `image_id`.
  Optional hooks the engine calls when present:
    * `set_epoch(epoch: int, num_epochs: int)` at the start of every epoch (0-based),
    * `refined_boxes() -> dict[int, list[float]]` annotation id -> refined xyxy box in original-image
      pixels (methods that correct their training boxes),
    * `diagnostics() -> dict[str, float]` extra run metrics (e.g. SSD-Det bag quality),
    * `set_diagnostics(d: Diagnostics)` receives the clean boxes for metrics only (never for a loss).
  State a method keeps outside parameters/buffers (e.g. boxes refined so far) survives checkpoint/resume through
  `nn.Module.get_extra_state` / `set_extra_state`. `methods._core.geometry.boxes_to_original` maps model-frame boxes
  back to original-image pixels using the target's `orig_size` and `flip` entries.
- Training, checkpointing, prediction and evaluation are shared (`benchmark.engine`); an adapter overrides
  `train`/`predict` only when its method needs more than one training run (e.g. SSD-Det + re-train).

Clean boxes (`true_bbox`) are never visible to a method: `training_view` strips them, except for the oracle
(`reads_clean_boxes = True`), which trains on them instead of the noisy boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from benchmark.train_result import TrainResult  # the engine's result type, re-exported for adapters

if TYPE_CHECKING:  # keep `import methods` free of torch for fast CLI start-up
    import torch

    from benchmark.datasets.core import DetectionDataset


@dataclass(frozen=True)
class Paper:
    title: str
    venue: str = ""
    year: int | None = None
    url: str = ""
    code: str = ""

    def short(self) -> str:
        return f"{self.title} ({self.venue} {self.year})" if self.venue else self.title


@dataclass(frozen=True)
class Diagnostics:
    """Clean training boxes for run metrics only (never a loss): annotation id -> clean xyxy, original pixels.

    Built by `MethodAdapter.train` from the full training set before the clean boxes are stripped, and handed to
    the model's `set_diagnostics` hook; a method's losses must not depend on it (the contract kit checks this)."""

    clean_boxes: dict[int, tuple[float, float, float, float]]

    @classmethod
    def from_dataset(cls, dataset: DetectionDataset) -> Diagnostics | None:
        boxes = {}
        for a in dataset.annotations:
            tb = a.get("true_bbox")
            if tb is not None:
                x, y, w, h = (float(v) for v in tb)
                boxes[int(a["id"])] = (x, y, x + w, y + h)
        return cls(boxes) if boxes else None


class MethodAdapter:
    """Base class: subclass, set the class attributes, implement `build_model`, register with `@register_method`."""

    name: ClassVar[str] = ""
    paper: ClassVar[Paper | None] = None
    description: ClassVar[str] = ""
    reads_clean_boxes: ClassVar[bool] = False
    refines_boxes: ClassVar[bool] = False
    # training time relative to the core Faster R-CNN on the same config (a scheduling hint only: the runner
    # starts the costliest cells first, so a long cell does not end a sweep running alone on an idle machine)
    relative_cost: ClassVar[float] = 1.0
    # which detection core the method builds on: "two_stage" (Faster R-CNN, `methods.core.build_faster_rcnn`) or
    # "one_stage" (RetinaNet, `methods.core.build_retinanet`); recorded in the run config's `profile` section when
    # not "two_stage" (so two-stage cell ids stay as they were) and shown as the results' `detector` column
    detector: ClassVar[str] = "two_stage"

    # ---- configuration ----------------------------------------------------------------------------------
    def default_config(self, profile: str, noise_level: float | None = None, dataset_kind: str = "coco") -> dict:
        """Method-specific settings (the `method` section of the run config) for a profile and noise level."""
        return {}

    def profile_overrides(self, profile: str, noise_level: float | None = None, dataset_kind: str = "coco") -> dict:
        """Changes to the profile's `model`/`train` sections this method needs, e.g. `{"train": {"epochs": 14}}`.

        Applied before user overrides; unknown keys are errors (`benchmark.config.resolve_config`)."""
        return {}

    # ---- model --------------------------------------------------------------------------------------------
    def build_model(self, cfg: dict, num_classes: int) -> torch.nn.Module:
        raise NotImplementedError

    # ---- data the method may see ---------------------------------------------------------------------------
    def training_view(self, train: DetectionDataset) -> DetectionDataset:
        return train.with_clean_boxes_as_targets() if self.reads_clean_boxes else train.without_clean_boxes()

    # ---- lifecycle (shared engine by default) --------------------------------------------------------------
    def train(self, train: DetectionDataset, cfg: dict, workdir: Path, *, resume: bool = True,
              diagnostics: Any = None, progress: bool = True) -> TrainResult:
        """Train on the method's view of `train` (noisy boxes only, unless the oracle). `diagnostics` defaults to
        the clean boxes of `train` (a `Diagnostics`, or a dataset carrying `true_bbox`), for metrics only."""
        from benchmark.engine import fit

        if diagnostics is None or not isinstance(diagnostics, Diagnostics):
            diagnostics = Diagnostics.from_dataset(train if diagnostics is None else diagnostics)
        return fit(self, self.training_view(train), cfg, Path(workdir), resume=resume,
                   diagnostics=diagnostics, progress=progress)

    def predict(self, checkpoint: Path, dataset: DetectionDataset, cfg: dict, progress: bool = True) -> list[dict]:
        """COCO results list `[{image_id, category_id, bbox: [x, y, w, h], score}]` for `dataset`'s images."""
        from benchmark.engine import predict

        return predict(self, Path(checkpoint), dataset, cfg, progress=progress)
