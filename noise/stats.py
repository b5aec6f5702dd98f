"""Realised-noise statistics of a noisy file (one with `true_bbox`): how far the noisy boxes are from the clean
ones, overall and by COCO size of the clean box (small < 32^2 <= medium < 96^2 <= large, box area). IoU and sizes
follow `benchmark.boxes` (an unchanged zero-area box has IoU 1), as the report's realised IoU does."""

from __future__ import annotations

import numpy as np

from benchmark.boxes import area, paired_iou, size_groups, xywh_to_xyxy
from benchmark.datasets.core import is_ignored
from benchmark.errors import BenchError

STAT_DECIMALS = 4


def noise_stats(ds, manifest: dict | None = None) -> dict:
    """{"rows": {all|small|medium|large: {n, mean_iou, median_iou, p_iou_lt_0.5, p_iou_lt_0.75, unchanged}},
    "bogus": n, "ignored": n, "class_changed": n, "removed": n}. Ignored (crowd / difficult) boxes are left out of
    the rows. Relabelled and removed annotations leave no trace in the noisy file itself: they are counted from
    its `manifest` (None without one)."""
    where = ds.source or ds.name or None
    anns = [a for a in ds.annotations if "true_bbox" in a]
    if not anns:
        raise BenchError("no `true_bbox` fields: not a noisy file (make one with `bench noise make`)", where)
    bogus = sum(1 for a in anns if a["true_bbox"] is None)
    real = [a for a in anns if a["true_bbox"] is not None and not is_ignored(a)]
    ignored = len(anns) - bogus - len(real)
    try:
        noisy = xywh_to_xyxy([a["bbox"] for a in real])
        clean = xywh_to_xyxy([a["true_bbox"] for a in real])
    except (ValueError, TypeError):
        raise BenchError("bbox / true_bbox must be 4 numbers each", where) from None
    iou = paired_iou(noisy, clean)
    rows = {}
    for name, m in size_groups(area(clean)).items():
        v = iou[m]
        r = (lambda x: round(float(x), STAT_DECIMALS)) if v.size else (lambda x: None)
        rows[name] = {"n": int(m.sum()), "mean_iou": r(v.mean() if v.size else 0),
                      "median_iou": r(np.median(v) if v.size else 0),
                      "p_iou_lt_0.5": r((v < 0.5).mean() if v.size else 0),
                      "p_iou_lt_0.75": r((v < 0.75).mean() if v.size else 0),
                      "unchanged": int((v == 1.0).sum())}
    changes = _manifest_list(manifest, "class_changes")
    removed = _manifest_list(manifest, "removed")
    return {"rows": rows, "bogus": bogus, "ignored": ignored,
            "class_changed": None if changes is None else len(changes),
            "removed": None if removed is None else len(removed)}


def _manifest_list(manifest: dict | None, key: str) -> list | None:
    value = manifest.get(key) if isinstance(manifest, dict) else None
    return value if isinstance(value, list) else None


def format_stats(stats: dict) -> str:
    """The stats as a plain-text table (what `bench noise stats` prints)."""
    head = f"{'boxes':<8}{'n':>9}{'mean IoU':>10}{'median':>9}{'IoU<0.5':>9}{'IoU<0.75':>9}{'unchanged':>11}"
    lines = [head, "-" * len(head)]
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    for name, r in stats["rows"].items():
        lines.append(f"{name:<8}{r['n']:>9}{fmt(r['mean_iou']):>10}{fmt(r['median_iou']):>9}"
                     f"{fmt(r['p_iou_lt_0.5']):>9}{fmt(r['p_iou_lt_0.75']):>9}{r['unchanged']:>11}")
    lines.append(f"bogus (no clean box): {stats['bogus']}   ignored (crowd/difficult): {stats['ignored']}")
    if stats.get("class_changed") is None:
        lines.append("relabelled / removed: not known without the file's manifest")
    else:
        lines.append(f"relabelled: {stats['class_changed']}   removed: {stats['removed']}")
    return "\n".join(lines)
