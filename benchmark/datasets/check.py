"""`check(ds)`: what is in a dataset and everything wrong with it, as a dict (and as text for `bench data check`).

Problems come from three places and are reported together:
- what the loader dropped or clipped (`ds.info["skipped"]`, `ds.info["fixed"]`, see `problems.py`),
- what is still wrong in the dataset itself (datasets built in memory, e.g. by noise, skip the loaders),
- image files that are missing, undecodable or of another size than annotated (`validate_images`, optional).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from benchmark.boxes import SIZE_BUCKETS, size_groups

from .core import DetectionDataset
from .images import validate_images
from .problems import REASONS, ProblemLog, clean_box

PIXEL_BINS = (8, 16, 32, 64, 128, 256)  # on sqrt(box area)

EXTRA_REASONS = {
    "duplicate_image_id": "two images with the same id",
    "duplicate_file_name": "one image file listed as several images (its boxes split between them)",
    "duplicate_annotation_id": "two annotations with the same id",
    "bad_image_size": "image without a positive width/height",
    "malformed_box": "bbox that is not 4 numbers",
    "missing_image_file": "image file not found",
    "unreadable_image_file": "image file that does not decode",
    "image_size_mismatch": "image file of another size than annotated",
}


def _describe(reason: str) -> str:
    return REASONS.get(reason) or EXTRA_REASONS.get(reason, reason.replace("_", " "))


def _find_problems(ds: DetectionDataset) -> ProblemLog:
    """Re-validate the dataset's content (the loaders' rules, without changing anything)."""
    log = ProblemLog()
    images, files = {}, {}
    for im in ds.images:
        if im["id"] in images:
            log.skip("duplicate_image_id", f"image id {im['id']} ({im.get('file_name')})")
        images[im["id"]] = im
        name = im.get("file_name")
        if name in files and files[name] != im["id"]:
            log.skip("duplicate_file_name", f"image ids {files[name]} and {im['id']} are both {name!r}")
        files.setdefault(name, im["id"])
        w, h = im.get("width"), im.get("height")
        if not (isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0):
            log.skip("bad_image_size", f"image id {im['id']} ({im.get('file_name')}): {w!r}x{h!r}")
    cats = {c["id"] for c in ds.categories}
    seen = set()
    for a in ds.annotations:
        where = f"annotation {a.get('id')}"
        if a.get("id") in seen:
            log.skip("duplicate_annotation_id", where)
        seen.add(a.get("id"))
        im = None if type(a.get("image_id")) is bool else images.get(a.get("image_id"))  # true is no id
        if im is None:
            log.skip("unknown_image", f"{where}: image id {a.get('image_id')!r}")
            continue
        if type(a.get("category_id")) is bool or a.get("category_id") not in cats:
            log.skip("unknown_category", f"{where}: category id {a.get('category_id')!r}")
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
        except (TypeError, ValueError):
            log.skip("malformed_box", f"{where}: bbox {a.get('bbox')!r}")
            continue
        clean_box(x, y, w, h, float(im.get("width") or 0), float(im.get("height") or 0), log,
                  f"{where} ({im.get('file_name')})")
    return log


def _size_histograms(ds: DetectionDataset) -> dict:
    if ds.annotations:
        wh = np.array([a["bbox"][2:4] for a in ds.annotations], dtype=np.float64).reshape(-1, 2)
        area = np.clip(wh[:, 0], 0, None) * np.clip(wh[:, 1], 0, None)
    else:
        area = np.zeros(0)
    groups = size_groups(area)  # by w * h, COCO's area of a box
    coco = {k: int(groups[k].sum()) for k in SIZE_BUCKETS}
    side = np.sqrt(area)
    edges = (0,) + PIXEL_BINS + (math.inf,)
    pixels = {}
    for lo, hi in zip(edges[:-1], edges[1:]):
        label = f"<{hi}" if lo == 0 else (f">={lo}" if hi == math.inf else f"{lo}-{hi}")
        pixels[label] = int(((side >= lo) & (side < hi)).sum())
    pct = np.percentile(side, [0, 10, 50, 90, 100]).round(1).tolist() if len(side) else []
    return {"coco_area": coco, "sqrt_area_px": pixels, "sqrt_area_percentiles_0_10_50_90_100": pct}


def _no_images_note(ds: DetectionDataset) -> dict:
    """Every image missing: the image folder is wrong, not the files (a noisy file from `bench noise make` does
    not record its images' folder: the file must stay byte-identical wherever it is written)."""
    noisy = isinstance(ds.info, dict) and "noisybox" in ds.info
    hint = ("a noisy file made by `bench noise make`: its images are the source dataset's (`bench noise show "
            "--image-root DIR`, or `noise make --emit mmdet-config` records the folder)" if noisy else
            "put the json next to its images (or in an `annotations/` folder beside `images/`), or write the "
            "folder, relative to the json, into `info.image_root`")
    return {"note": "no_image_found", "count": len(ds.images), "examples": [],
            "description": f"no image file found under {ds.image_root}: {hint}"}


def _class_notes(per_class: dict) -> list[dict]:
    """Classes a detector cannot learn (no boxes) or that look like a typo (a handful of boxes while the others have
    many: a misspelt class name in VOC XML or a stray index in YOLO labels becomes a class of its own)."""
    boxes = [pc["boxes"] for pc in per_class.values() if pc["boxes"]]
    median = float(np.median(boxes)) if boxes else 0.0  # of the classes that have boxes
    empty = [pc["name"] for pc in per_class.values() if pc["boxes"] == 0]
    rare = [f"{pc['name']} ({pc['boxes']} box{'es' if pc['boxes'] > 1 else ''})" for pc in per_class.values()
            if 0 < pc["boxes"] <= max(2.0, median / 100) and median >= 20]
    notes = []
    if empty:
        notes.append({"note": "empty_class", "count": len(empty), "examples": empty[:5],
                      "description": "class without boxes in this split (its AP is undefined): " + ", ".join(empty[:5])})
    if rare:
        notes.append({"note": "rare_class", "count": len(rare), "examples": rare[:5],
                      "description": "class with very few boxes next to the others (a misspelt class name?): "
                                     + ", ".join(rare[:5])})
    return notes


def check(ds: DetectionDataset, images: bool = True, progress: bool = True) -> dict:
    """Counts per class, images without boxes, box-size histograms and every problem found.

    Box sizes are binned by box area w*h (not the annotation's `area`, which COCO sets to the mask area).
    `images=True` also decodes every image file (slow on big datasets)."""
    names = ds.category_names()
    per_img = Counter(a["image_id"] for a in ds.annotations)
    per_class = {cid: {"id": cid, "name": n, "boxes": 0, "ignored": 0, "images": set()} for cid, n in names.items()}
    for a in ds.annotations:
        pc = per_class.get(a["category_id"])
        if pc is None:
            continue
        pc["boxes"] += 1
        pc["ignored"] += int(bool(a.get("ignore", 0)))
        pc["images"].add(a["image_id"])
    counts = [per_img.get(im["id"], 0) for im in ds.images]

    problems = []
    for action, key in (("skipped", "skipped"), ("fixed", "fixed")):
        for reason, n in sorted(ds.info.get(key, {}).items()):
            problems.append({"problem": reason, "count": int(n), "action": f"{action} by the loader",
                             "description": _describe(reason),
                             "examples": ds.info.get("problem_examples", {}).get(reason, [])})
    found = _find_problems(ds)
    for reason, n in sorted((found.skipped + found.fixed).items()):
        problems.append({"problem": reason, "count": int(n), "action": "found in the data",
                         "description": _describe(reason), "examples": found.examples.get(reason, [])})
    notes = [{"note": reason, "count": int(n), "description": _describe(reason),
              "examples": ds.info.get("problem_examples", {}).get(reason, [])}
             for reason, n in sorted(ds.info.get("notes", {}).items())]
    notes += _class_notes(per_class)
    files = None
    if images:
        files = validate_images(ds, progress=progress)
        for key, reason in (("missing", "missing_image_file"), ("unreadable", "unreadable_image_file"),
                            ("size_mismatch", "image_size_mismatch")):
            if files[key]:
                problems.append({"problem": reason, "count": len(files[key]), "action": "found in the files",
                                 "description": _describe(reason), "examples": files[key][:5]})
        if files["checked"] and len(files["missing"]) == files["checked"]:
            notes.append(_no_images_note(ds))

    return {
        "name": ds.name,
        "source": ds.source,
        "image_root": None if ds.image_root is None else str(ds.image_root),
        "images": len(ds.images),
        "annotations": len(ds.annotations),
        "ignored_annotations": sum(int(bool(a.get("ignore", 0))) for a in ds.annotations),
        "categories": len(ds.categories),
        "images_without_boxes": sum(1 for c in counts if c == 0),
        "boxes_per_image": {"min": min(counts, default=0), "mean": round(float(np.mean(counts)), 3) if counts else 0.0,
                            "max": max(counts, default=0)},
        "per_class": [{**pc, "images": len(pc["images"])} for _, pc in sorted(per_class.items())],
        "box_sizes": _size_histograms(ds),
        "image_files": None if files is None else {k: (v if k == "checked" else len(v)) for k, v in files.items()},
        "problems": problems,
        "notes": notes,
        "ok": not problems,
    }


def format_report(report: dict) -> str:
    """The report as text for the terminal."""
    r = report
    lines = [f"{r['name']}  ({r['source']})",
             f"  images {r['images']}   boxes {r['annotations']} (ignored {r['ignored_annotations']})   "
             f"classes {r['categories']}   images without boxes {r['images_without_boxes']}",
             f"  boxes per image: min {r['boxes_per_image']['min']}  mean {r['boxes_per_image']['mean']}  "
             f"max {r['boxes_per_image']['max']}",
             "  per class:"]
    width = max((len(c["name"]) for c in r["per_class"]), default=4)
    for c in r["per_class"]:
        lines.append(f"    {c['name']:<{width}}  id {c['id']:<4} boxes {c['boxes']:<7} ignored {c['ignored']:<5} "
                     f"images {c['images']}")
    bs = r["box_sizes"]
    lines.append("  box size (COCO area): " + "  ".join(f"{k} {v}" for k, v in bs["coco_area"].items()))
    lines.append("  box size (sqrt area, px): " + "  ".join(f"{k}: {v}" for k, v in bs["sqrt_area_px"].items()))
    if r["image_files"] is not None:
        f = r["image_files"]
        lines.append(f"  image files: {f['checked']} checked, {f['missing']} missing, {f['unreadable']} unreadable, "
                     f"{f['size_mismatch']} of another size")
    else:
        lines.append("  image files: not checked")
    if not r["problems"]:
        lines.append("  problems: none")
    else:
        lines.append(f"  problems ({sum(p['count'] for p in r['problems'])}):")
        for p in r["problems"]:
            lines.append(f"    {p['problem']}: {p['count']} ({p['action']}) - {p['description']}")
            for ex in p["examples"]:
                lines.append(f"      e.g. {ex}")
    for n in r.get("notes", []):
        lines.append(f"  note: {n['note']}: {n['count']} - {n['description']}")
    return "\n".join(lines)
