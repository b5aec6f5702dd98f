"""Per-box problems found while loading: counted, exampled, and stored in `ds.info`.

Loaders are strict about structure (a malformed file is a `BenchError`) and lenient about single boxes: an
invalid box is dropped (or clipped) and counted here, so training never sees it and `bench data check` reports it.

`ds.info` keys written by `ProblemLog.store`:
- `skipped`:  reason -> number of boxes/images/lines dropped,
- `fixed`:    reason -> number of boxes repaired in place (e.g. clipped to the image),
- `notes`:    reason -> number of lawful conversions worth knowing about (e.g. YOLO polygons read as boxes),
- `problem_examples`: reason -> up to `MAX_EXAMPLES` one-line descriptions naming the file,
- `unclipped_boxes` (`UNCLIPPED_BOXES`): `[annotation id, x, y, w, h]` of every box the loader clipped to its image
  (round-off included), as the file had it: `rng="oamil-legacy"` perturbs these, since mmdet 2.x's parsers, which
  OA-MIL's generator ran, never clipped.
"""

from __future__ import annotations

import math
from collections import Counter

MAX_EXAMPLES = 5
ROUNDING_PX = 1e-3  # overshoot of the image border smaller than this is float round-off: clamped silently
UNCLIPPED_BOXES = "unclipped_boxes"

# reason -> what it means (used by `check` to print a readable report)
REASONS: dict[str, str] = {
    "zero_size_box": "box with zero width or height (dropped)",
    "inverted_box": "box with negative width or height / xmax < xmin (dropped)",
    "non_finite_box": "box with NaN or infinite coordinates (dropped)",
    "box_outside_image": "box entirely outside its image (dropped)",
    "box_clipped_to_image": "box extending past the image border (clipped to the image)",
    "unknown_category": "box of a category not in the category list (dropped)",
    "unknown_image": "annotation for an image id not in the image list (dropped)",
    "unreadable_image": "image file missing or unreadable where its size was needed (image dropped)",
    "box_of_unreadable_image": "box of an image dropped as unreadable (dropped with it)",
    "label_without_image": "label file with no matching image (ignored)",
    "duplicate_image_in_split": "image listed twice in a split (file or folders; second listing ignored)",
    "polygon_label": "YOLO segmentation polygon read as its bounding box",
    "lookalike_class_names": "VOC class names that differ only in case or separators (each is its own class)",
    "label_beside_image": "YOLO label file next to its image instead of in labels/ (ignored: the image has no boxes)",
}


class ProblemLog:
    """Counts problems by reason and keeps a few examples of each."""

    def __init__(self):
        self.skipped: Counter[str] = Counter()
        self.fixed: Counter[str] = Counter()
        self.notes: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self.unclipped: list[list] = []  # [annotation id, x, y, w, h] before clipping

    def _example(self, reason: str, where: str) -> None:
        ex = self.examples.setdefault(reason, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(where)

    def skip(self, reason: str, where: str, n: int = 1) -> None:
        self.skipped[reason] += n
        self._example(reason, where)

    def fix(self, reason: str, where: str) -> None:
        self.fixed[reason] += 1
        self._example(reason, where)

    def note(self, reason: str, where: str) -> None:
        self.notes[reason] += 1
        self._example(reason, where)

    def store(self, info: dict) -> dict:
        """Record the counts in a dataset's `info` (replacing any left from an earlier load of the same data)."""
        info["skipped"] = dict(self.skipped)
        info["fixed"] = dict(self.fixed)
        info["notes"] = dict(self.notes)
        info["problem_examples"] = {k: list(v) for k, v in self.examples.items()}
        if self.unclipped:  # (kept otherwise: a file saved after clipping still carries the boxes it had before)
            info[UNCLIPPED_BOXES] = [list(r) for r in self.unclipped]
        return info


def clean_box(x: float, y: float, w: float, h: float, width: float, height: float,
              log: ProblemLog, where: str) -> list[float] | None:
    """Validate one COCO box against its image: the box to keep (clipped if needed), or None if it is dropped.

    The order of checks fixes which reason a doubly-bad box is counted under: non-finite, inverted, zero-size,
    outside the image, clipped.
    """
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        log.skip("non_finite_box", where)
        return None
    if w < 0 or h < 0:
        log.skip("inverted_box", f"{where}: w={w:g} h={h:g}")
        return None
    if w == 0 or h == 0:
        log.skip("zero_size_box", f"{where}: w={w:g} h={h:g}")
        return None
    x1, y1, x2, y2 = x, y, x + w, y + h
    if width > 0 and height > 0 and (x1 < 0 or y1 < 0 or x2 > width or y2 > height):
        cx1, cy1 = max(x1, 0.0), max(y1, 0.0)
        cx2, cy2 = min(x2, float(width)), min(y2, float(height))
        if max(cx1 - x1, cy1 - y1, x2 - cx2, y2 - cy2) <= ROUNDING_PX:  # float round-off, not a real problem
            return [cx1, cy1, cx2 - cx1, cy2 - cy1]
        if cx2 <= cx1 or cy2 <= cy1:
            log.skip("box_outside_image", f"{where}: [{x:g}, {y:g}, {w:g}, {h:g}] in {width:g}x{height:g}")
            return None
        log.fix("box_clipped_to_image", f"{where}: [{x:g}, {y:g}, {w:g}, {h:g}] in {width:g}x{height:g}")
        return [cx1, cy1, cx2 - cx1, cy2 - cy1]
    return [x, y, w, h]
