"""`bench inspect`: a results store or a noisy file as a FiftyOne dataset, to look at boxes interactively.

One sample per image and split. Box fields (FiftyOne `Detections`, relative [x, y, w, h]):
- `clean` / `noisy` (training images): the clean boxes and the perturbed ones, each noisy box with its IoU with the
  clean box and the manifest's flags (`added`, `class_changed`); `removed` for boxes the noise dropped;
- `refined_<cell>`: a method's refined training boxes, tagged with their failure mode (good, group, drift, ...);
- `ground_truth` / `pred_<cell>` (test images): the clean test boxes and each cell's detections (confidence =
  score), tagged with their failure mode.
The records are plain data built here (and testable without FiftyOne); `to_fiftyone` turns them into a dataset.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from benchmark.boxes import paired_iou, xywh_to_xyxy
from benchmark.errors import BenchError
from benchmark.evaluation.failure_modes import classify_detections, classify_training
from benchmark.io import read_json
from reports.analysis import Datasets
from reports.store import Cell, load_cells

FIELD = re.compile(r"[^A-Za-z0-9]+")


def field_name(prefix: str, label: str) -> str:
    """A FiftyOne field name (letters, digits, underscores) for a cell's boxes."""
    return f"{prefix}_{FIELD.sub('_', label).strip('_').lower()}"


def _box(ann: dict, image: dict, bbox, names: dict, **attrs) -> dict:
    w, h = float(image.get("width") or 1), float(image.get("height") or 1)
    x, y, bw, bh = (float(v) for v in bbox)
    return {"label": names.get(ann.get("category_id"), str(ann.get("category_id"))),
            "bounding_box": [x / w, y / h, bw / w, bh / h], **attrs}


def _iou(a, b) -> float:
    return float(paired_iou(xywh_to_xyxy(a), xywh_to_xyxy(b))[0])


class Samples:
    """Samples keyed by (split, image path), filled field by field."""

    def __init__(self):
        self.by_key: dict[tuple[str, str], dict] = {}

    def get(self, split: str, path: str, image: dict) -> dict:
        key = (split, path)
        if key not in self.by_key:
            self.by_key[key] = {"filepath": path, "split": split, "image_id": image["id"],
                                "width": image.get("width"), "height": image.get("height"), "fields": {}}
        return self.by_key[key]

    def add(self, split: str, path: str, image: dict, field: str, box: dict | None) -> None:
        boxes = self.get(split, path, image)["fields"].setdefault(field, [])
        if box is not None:
            boxes.append(box)

    def records(self) -> list[dict]:
        return sorted(self.by_key.values(), key=lambda r: (r["split"], str(r["filepath"])))


def _image_path(root: Path | None, image: dict) -> str:
    name = str(image.get("file_name") or image["id"])
    return str((root / name) if root is not None else Path(name))


def add_noisy(samples: Samples, coco: dict, manifest: dict | None, image_root: Path | None) -> None:
    """`clean`, `noisy` and `removed` fields of a noisy training file."""
    names = {c["id"]: c.get("name", str(c["id"])) for c in coco.get("categories", [])}
    images = {im["id"]: im for im in coco.get("images", [])}
    manifest = manifest or {}
    added = set(manifest.get("added_ids") or [])
    relabelled = {r.get("id") for r in manifest.get("class_changes") or [] if isinstance(r, dict)}
    for im in images.values():  # every image is a sample, boxes or not
        path = _image_path(image_root, im)
        samples.add("train", path, im, "clean", None)
        samples.add("train", path, im, "noisy", None)
    for a in coco.get("annotations", []):
        im = images.get(a.get("image_id"))
        if im is None:
            continue
        path = _image_path(image_root, im)
        clean = a.get("true_bbox", a["bbox"])
        if clean is not None:
            samples.add("train", path, im, "clean", _box(a, im, clean, names, annotation_id=a["id"]))
        attrs = {"annotation_id": a["id"], "added": a["id"] in added or clean is None,
                 "class_changed": a["id"] in relabelled}
        if clean is not None:
            attrs["iou"] = _iou(a["bbox"], clean)
        samples.add("train", path, im, "noisy", _box(a, im, a["bbox"], names, **attrs))
    for r in manifest.get("removed") or []:
        a = r.get("annotation") or {}
        im = images.get(a.get("image_id"))
        if im is not None and a.get("bbox") is not None:
            samples.add("train", _image_path(image_root, im), im, "removed",
                        _box(a, im, a["bbox"], names, annotation_id=a.get("id")))


def records_from_noisy_file(path: str | Path, image_root: str | Path | None = None) -> list[dict]:
    """Records of a noisy COCO file (`bench noise make` output; its manifest beside it, if any)."""
    path = Path(path)
    coco = read_json(path)
    if not isinstance(coco, dict) or not isinstance(coco.get("annotations"), list):
        raise BenchError("not a COCO file (no annotations list)", path)
    beside = path.with_name("manifest.json")
    manifest = read_json(beside) if beside.is_file() else None
    samples = Samples()
    add_noisy(samples, coco, manifest, Path(image_root) if image_root else None)
    return samples.records()


def records_from_store(store: str | Path, echo=print) -> list[dict]:
    """Records of every finished cell of a results store: each noisy training set once, refined boxes and
    predictions per cell, failure modes as tags. Cells whose data cannot be read are counted and named."""
    frame = load_cells(store)
    samples, datasets, seen = Samples(), Datasets(), set()
    skipped: dict[str, list[str]] = defaultdict(list)
    for row in frame.itertuples(index=False):
        cell = Cell(Path(row.cell_dir))
        label = f"{row.method}_{row.noise_level:g}_s{row.seed}"
        try:
            splits = datasets.splits(cell)
            train_root, test = splits["train"].image_root, splits["test"]
            noisy = cell.noisy_train
            if noisy is not None:
                if cell.noise_key() not in seen:
                    seen.add(cell.noise_key())
                    add_noisy(samples, noisy, cell.manifest, train_root)
                refined = cell.refined_boxes
                if refined:
                    add_cell_boxes(samples, "train", train_root, noisy, refined,
                                   classify_training(noisy, refined), "ann_id", "id",
                                   field_name("refined", label))
            preds = cell.predictions
            if preds is not None:
                gt = datasets.test_gt(cell)
                add_ground_truth(samples, gt, test.image_root)
                modes = classify_detections(gt, preds)
                add_cell_boxes(samples, "test", test.image_root, gt, preds, modes, "det_index", None,
                               field_name("pred", label))
        except BenchError as exc:
            skipped[str(exc)].append(cell.path.name)
    for reason, cells in skipped.items():
        echo(f"left out: {len(cells)} cell(s) ({', '.join(cells[:5])}): {reason}")
    return samples.records()


def add_ground_truth(samples: Samples, gt: dict, root: Path | None) -> None:
    names = {c["id"]: c.get("name", str(c["id"])) for c in gt.get("categories", [])}
    images = {im["id"]: im for im in gt.get("images", [])}
    for im in images.values():
        samples.add("test", _image_path(root, im), im, "ground_truth", None)
    for a in gt.get("annotations", []):
        im = images.get(a["image_id"])
        if im is not None:
            samples.add("test", _image_path(root, im), im, "ground_truth",
                        _box(a, im, a["bbox"], names, annotation_id=a["id"], iscrowd=bool(a.get("iscrowd"))))


def add_cell_boxes(samples: Samples, split: str, root: Path | None, coco: dict, boxes: list[dict], modes,
                   key: str, id_key: str | None, field: str) -> None:
    """A cell's boxes as one field; `modes` (a failure-mode frame) gives each its tag, matched on `key`."""
    names = {c["id"]: c.get("name", str(c["id"])) for c in coco.get("categories", [])}
    images = {im["id"]: im for im in coco.get("images", [])}
    tag = dict(zip(modes[key], modes["mode"])) if len(modes) else {}
    for k, b in enumerate(boxes):
        im = images.get(b.get("image_id"))
        if im is None:
            continue
        ident = b.get(id_key) if id_key else k
        attrs = {"tags": [str(tag[ident])] if ident in tag else []}
        if "score" in b:
            attrs["confidence"] = float(b["score"])
        samples.add(split, _image_path(root, im), im, field, _box(b, im, b["bbox"], names, **attrs))


def to_fiftyone(records: list[dict], name: str, overwrite: bool = True):
    """A FiftyOne dataset of the records (needs the `[fiftyone]` extra and its database)."""
    try:
        import fiftyone as fo
    except ImportError:
        raise BenchError("FiftyOne is not installed (pip install 'noisybox-bench[fiftyone]'); "
                         "`bench inspect --json FILE` writes the same records without it") from None
    try:
        dataset = fo.Dataset(name, overwrite=overwrite)
        dataset.add_samples([to_sample(fo, r) for r in records])
    except Exception as exc:  # noqa: BLE001 -- FiftyOne's database errors are long; one line names the cause
        raise BenchError(f"FiftyOne could not make the dataset ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return dataset


def to_sample(fo, record: dict):
    """One FiftyOne sample (in memory) from one record."""
    sample = fo.Sample(filepath=record["filepath"], tags=[record["split"]])
    sample["image_id"] = record["image_id"]
    for field, boxes in record["fields"].items():
        dets = []
        for b in boxes:
            extra = {k: v for k, v in b.items() if k not in ("label", "bounding_box", "tags", "confidence")}
            dets.append(fo.Detection(label=b["label"], bounding_box=b["bounding_box"], tags=b.get("tags", []),
                                     confidence=b.get("confidence"), **extra))
        sample[field] = fo.Detections(detections=dets)
    return sample
