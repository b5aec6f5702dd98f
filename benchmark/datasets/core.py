"""The one internal dataset representation: COCO-style images / annotations / categories.

Conventions (every module relies on them):
- `bbox` is COCO `[x, y, w, h]` in pixels of the original image, continuous coordinates (no +1 widths);
  `x2 = x + w`. VOC `xmin/ymin` are shifted by -1 on load (the detectron2/mmdet convention), `xmax/ymax` kept.
- `iscrowd` is COCO's crowd flag; `ignore` is 1 for boxes that must be neither trained on as positives nor
  counted in evaluation: COCO crowd boxes and VOC `difficult` objects. `difficult` keeps VOC's own flag.
- `true_bbox` (optional) is the clean box of a noisy annotation, written by `noise/`. Methods never see it
  (see `without_clean_boxes`) except the clean oracle and diagnostics.
- Category ids are whatever the source uses (COCO's are non-contiguous); `contiguous_labels()` maps them to 1..K
  for the detector, 0 being background.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import BenchError
from benchmark.io import dumps_json, sha256_bytes

ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "ignore")


def is_ignored(ann: dict) -> bool:
    """Crowd / difficult / `ignore` boxes: never perturbed and not objects to learn, find or count (the loaders set
    `ignore`; hand-built dicts may carry only one of the other flags). The one rule noise and reports use."""
    return bool(ann.get("ignore") or ann.get("iscrowd") or ann.get("difficult"))


def rows_by_id(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row in `ids` of each of `wanted` (int64 arrays), -1 where absent; the first of duplicate ids wins.

    Vectorised: a dict lookup per annotation costs ~1 s on COCO train. Unique ids spanning a range at most a few
    times their count (COCO's, VOC's, ours) go through a lookup table (~20 ms for 860k annotations); anything
    else through a sorted search (~0.2 s)."""
    if not len(ids):
        return np.full(len(wanted), -1, np.int64)
    lo, hi = int(ids.min()), int(ids.max())
    if hi - lo < 4 * len(ids) + 1024:
        table = np.full(hi - lo + 1, -1, np.int64)
        slot = ids - lo
        table[slot] = np.arange(len(ids))
        if (table[slot] == np.arange(len(ids))).all():  # no duplicate ids: the table is exact
            out = np.full(len(wanted), -1, np.int64)
            known = (wanted >= lo) & (wanted <= hi)
            out[known] = table[wanted[known] - lo]
            return out
    order = np.argsort(ids, kind="stable")
    pos = np.minimum(np.searchsorted(ids[order], wanted), len(ids) - 1)
    return np.where(ids[order][pos] == wanted, order[pos], -1).astype(np.int64)


@dataclass(frozen=True)
class AnnotationColumns:
    """A COCO loader's validated columns of the annotations it returned, row i = `annotations[i]`.

    Why: the noise step needs exactly these arrays, and reading them again from ~1M dicts costs ~0.8 s on COCO
    train, as much as the loader just spent. Only `load_coco(..., keep_columns=True)` makes them, for a caller that
    hands the dataset straight to the noise step (`bench noise make`); an in-place edit of the dicts would make them
    stale, so nothing else asks for them and every method returning a new dataset drops them."""
    annotations: list  # the list these columns describe (checked by identity before use)
    images: list  # the image list `image_row` indexes
    xywh: np.ndarray  # (N, 4) float64 `bbox`, after the loader's clipping
    image_row: np.ndarray  # (N,) int64 row in `images`
    category_id: np.ndarray  # (N,) int64
    ignored: np.ndarray  # (N,) bool `ignore` as the loader set it (crowd, difficult or ignore)
    area: np.ndarray  # (N,) float64 `area` as the loader set it
    image_wh: np.ndarray  # (n_images, 2) float64 width, height

    def describe(self, annotations: list, images: list) -> bool:
        return self.annotations is annotations and self.images is images and len(self.xywh) == len(annotations)


@dataclass
class DetectionDataset:
    images: list[dict]
    annotations: list[dict]
    categories: list[dict]
    image_root: Path | None = None
    name: str = ""
    source: str = ""
    info: dict = field(default_factory=dict)
    # sha256 of the file this dataset was loaded from, as read (None for datasets built or derived in memory: every
    # method returning a new dataset drops it). Noise manifests record it as the source-file hash.
    file_sha256: str | None = field(default=None, compare=False, repr=False)
    # the loader's columns of `annotations` (`AnnotationColumns`), only when asked for; dropped like file_sha256
    loaded_columns: AnnotationColumns | None = field(default=None, compare=False, repr=False)
    # the recipe kind the format that read this dataset declares (`formats.FORMATS`; `formats.kind_of` reads it),
    # kept by every view below; None for data built in memory. Never written to a file, never in a fingerprint.
    kind: str | None = field(default=None, compare=False, repr=False)

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_coco(cls, coco: dict, image_root: str | Path | None = None, name: str = "", source: str = "") -> DetectionDataset:
        """Build from an already-validated COCO dict, normalising the optional flags."""
        anns = []
        for a in coco.get("annotations", []):
            a = dict(a)
            a.setdefault("iscrowd", 0)
            a["iscrowd"] = int(bool(a["iscrowd"]))
            a["ignore"] = int(bool(a.get("ignore", 0)) or a["iscrowd"] or bool(a.get("difficult", 0)))
            if "area" not in a:
                a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
            anns.append(a)
        return cls(
            images=[dict(i) for i in coco.get("images", [])],
            annotations=anns,
            categories=[dict(c) for c in coco.get("categories", [])],
            image_root=None if image_root is None else Path(image_root),
            name=name,
            source=source,
            info=dict(coco.get("info", {})),
        )

    def to_coco(self) -> dict:
        """COCO json dict (extra fields such as `ignore`, `difficult`, `true_bbox` are kept)."""
        return {
            "info": dict(self.info),
            "images": [dict(i) for i in self.images],
            "annotations": [dict(a) for a in self.annotations],
            "categories": [dict(c) for c in self.categories],
        }

    # ---- views ------------------------------------------------------------------------------------------
    def copy(self) -> DetectionDataset:
        return copy.deepcopy(self)

    def replace_annotations(self, annotations: list[dict], name: str | None = None) -> DetectionDataset:
        return DetectionDataset(self.images, annotations, self.categories, self.image_root,
                                self.name if name is None else name, self.source, dict(self.info), kind=self.kind)

    def without_clean_boxes(self) -> DetectionDataset:
        """The view every method trains on: `true_bbox` removed, so a method cannot read the clean boxes."""
        return self.replace_annotations([{k: v for k, v in a.items() if k != "true_bbox"} for a in self.annotations])

    def with_clean_boxes_as_targets(self) -> DetectionDataset:
        """The oracle's view: `bbox` replaced by `true_bbox` where present; boxes with no clean origin dropped."""
        out = []
        for a in self.annotations:
            a = dict(a)
            if "true_bbox" in a:
                tb = a.pop("true_bbox")
                if tb is None:  # an annotation the noise added (bogus box): not a real object
                    continue
                a["bbox"] = list(tb)
                a["area"] = float(tb[2]) * float(tb[3])
            out.append(a)
        return self.replace_annotations(out)

    def subset(self, image_ids: Iterable[int]) -> DetectionDataset:
        keep = set(image_ids)
        return DetectionDataset([i for i in self.images if i["id"] in keep],
                                [a for a in self.annotations if a["image_id"] in keep],
                                self.categories, self.image_root, self.name, self.source, dict(self.info),
                                kind=self.kind)

    # ---- derived ----------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def category_names(self) -> dict[int, str]:
        return {c["id"]: c["name"] for c in self.categories}

    def contiguous_labels(self) -> dict[int, int]:
        """category id -> detector label 1..K (sorted by category id; 0 is background)."""
        return {cid: i + 1 for i, cid in enumerate(sorted(c["id"] for c in self.categories))}

    def annotations_by_image(self) -> dict[int, list[dict]]:
        out: dict[int, list[dict]] = {i["id"]: [] for i in self.images}
        for a in self.annotations:
            out.setdefault(a["image_id"], []).append(a)
        return out

    def image_path(self, image: dict) -> Path:
        root = self.image_root if self.image_root is not None else Path(".")
        return root / image["file_name"]

    def fingerprint(self) -> str:
        """sha256 of the canonical annotation content (not the pixels): identifies the dataset in cell hashes.
        Serialised straight from the lists (keys sorted), without the copies `to_coco` makes."""
        return sha256_bytes(dumps_json({"images": self.images, "annotations": self.annotations,
                                        "categories": self.categories}))

    def __len__(self) -> int:
        return len(self.images)

    def summary(self) -> dict[str, Any]:
        return {"images": len(self.images), "annotations": len(self.annotations), "categories": len(self.categories)}


def same_categories(splits: dict[str, DetectionDataset]) -> dict[str, DetectionDataset]:
    """`splits`, checked: train and test must number their categories alike (formats whose ids are the file's)."""
    if "train" in splits and "test" in splits:
        a = {c["id"]: c["name"] for c in splits["train"].categories}
        b = {c["id"]: c["name"] for c in splits["test"].categories}
        if a != b:
            raise BenchError(f"categories differ from the train split's ({splits['train'].source})",
                             splits["test"].source)
    return splits
