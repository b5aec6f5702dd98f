"""COCO json: load (strict about structure, lenient about single boxes) and save (atomic).

A COCO file must be an object with `images`, `annotations` and `categories` lists; images need `id`, `file_name`,
`width`, `height`; annotations need `id`, `image_id`, `category_id`, `bbox`; ids must be unique integers. Any of
that wrong is a one-line `BenchError` naming the file. Bad single boxes (zero-size, inverted, non-finite, outside
the image, unknown category or image) are dropped and counted (see `problems.py`); boxes crossing the border are
clipped and counted. Images without annotations are valid and kept.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.errors import BenchError
from benchmark.io import gc_paused, read_json, write_json

from .core import DetectionDataset
from .problems import ProblemLog, clean_box


def _is_int(v) -> bool:
    return type(v) is int  # bool is not an id


def _is_num(v) -> bool:
    return type(v) in (int, float)


def _list_of_dicts(data: dict, key: str, path: Path) -> list[dict]:
    if key not in data:
        raise BenchError(f"not a COCO dataset: missing required key '{key}'", path)
    items = data[key]
    if not isinstance(items, list):
        raise BenchError(f"'{key}' must be a list, got {type(items).__name__}", path)
    return items


def _parse_categories(items: list, path: Path) -> list[dict]:
    seen_ids, seen_names, out = set(), set(), []
    for i, c in enumerate(items):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise BenchError(f"categories[{i}] must be an object with 'id' and 'name'", path)
        if not _is_int(c["id"]):
            raise BenchError(f"categories[{i}]: id must be an integer, got {c['id']!r}", path)
        if c["id"] in seen_ids:
            raise BenchError(f"duplicate category id {c['id']} (categories[{i}])", path)
        if c["name"] in seen_names:
            raise BenchError(f"duplicate category name {c['name']!r} (categories[{i}])", path)
        seen_ids.add(c["id"])
        seen_names.add(c["name"])
        out.append(dict(c))
    return out


def _parse_images(items: list, path: Path) -> list[dict]:
    seen, out = set(), []
    for i, im in enumerate(items):
        if not isinstance(im, dict):
            raise BenchError(f"images[{i}] must be an object", path)
        for key in ("id", "file_name", "width", "height"):
            if key not in im:
                ident = f" (id {im['id']})" if "id" in im else ""
                raise BenchError(f"images[{i}]{ident}: missing required key '{key}'", path)
        if not _is_int(im["id"]):
            raise BenchError(f"images[{i}]: id must be an integer, got {im['id']!r}", path)
        if im["id"] in seen:
            raise BenchError(f"duplicate image id {im['id']} (images[{i}])", path)
        if not isinstance(im["file_name"], str) or not im["file_name"]:
            raise BenchError(f"images[{i}] (id {im['id']}): file_name must be a non-empty string", path)
        if not (_is_num(im["width"]) and _is_num(im["height"]) and im["width"] > 0 and im["height"] > 0):
            raise BenchError(f"images[{i}] (id {im['id']}): width/height must be positive numbers, "
                             f"got {im['width']!r}x{im['height']!r}", path)
        seen.add(im["id"])
        out.append(dict(im))
    return out


def _parse_annotations(items: list, images: dict[int, dict], category_ids: set, path: Path,
                       log: ProblemLog) -> list[dict]:
    """Validate and normalise annotations in place (the parsed json is ours). Hot loop on COCO-sized files:
    the common case (a valid box inside its image) costs a handful of comparisons; messages are only built for
    problems."""
    seen: set = set()
    out = []
    src = path.name
    for i, a in enumerate(items):
        if not isinstance(a, dict):
            raise BenchError(f"annotations[{i}] must be an object", path)
        try:
            aid, iid, cid, bb = a["id"], a["image_id"], a["category_id"], a["bbox"]
        except KeyError as exc:
            raise BenchError(f"annotations[{i}]: missing required key {exc}", path) from None
        if type(aid) is not int:
            raise BenchError(f"annotations[{i}]: id must be an integer, got {aid!r}", path)
        if aid in seen:
            raise BenchError(f"duplicate annotation id {aid} (annotations[{i}])", path)
        seen.add(aid)
        if type(bb) is not list or len(bb) != 4:
            raise BenchError(f"annotations[{i}] (id {aid}): bbox must be 4 numbers [x, y, w, h], got {bb!r}", path)
        img = images.get(iid)
        if img is None:
            log.skip("unknown_image", f"{src}: annotation {aid} refers to image id {iid!r}")
            continue
        if cid not in category_ids:
            log.skip("unknown_category", f"{src}: annotation {aid} has category id {cid!r}")
            continue
        x, y, w, h = bb
        try:  # comparisons raise TypeError for anything but numbers
            inside = w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]
            if not inside:
                bb = clean_box(x, y, w, h, img["width"], img["height"], log,
                               f"{src}: annotation {aid} ({img['file_name']})")
        except TypeError:
            raise BenchError(f"annotations[{i}] (id {aid}): bbox must be 4 numbers [x, y, w, h], got {bb!r}",
                             path) from None
        if not inside:
            if bb is None:
                continue
            a["bbox"] = bb
        crowd = a.get("iscrowd", 0)
        a["iscrowd"] = crowd = 1 if crowd else 0
        a["ignore"] = 1 if (crowd or a.get("ignore", 0) or a.get("difficult", 0)) else 0
        if "area" not in a:
            a["area"] = float(bb[2]) * float(bb[3])
        out.append(a)
    return out


def _guess_image_root(json_path: Path, images: list[dict], info: dict) -> Path:
    """Where the images live when the caller did not say: the first candidate holding the first image."""
    here = json_path.parent
    candidates = []
    if isinstance(info.get("image_root"), str):  # written by save_coco, relative to the json
        candidates.append(here / info["image_root"])
    candidates += [here, here / "images", here.parent, here.parent / "images"]
    stem = json_path.stem.split("_")[-1]  # instances_val2017.json -> val2017
    candidates += [here.parent / stem, here.parent / "images" / stem]
    if images:
        probe = images[0]["file_name"]
        for c in candidates:
            if (c / probe).is_file():
                return c
    return candidates[0]


def load_coco(json_path: str | Path, image_root: str | Path | None = None, name: str = "") -> DetectionDataset:
    """Load a COCO json. `image_root` defaults to the first of the json's folder, its `images/` subfolder, its
    parent (and a few COCO-layout variants) that holds the first image."""
    path = Path(json_path)
    data = read_json(path)
    if not isinstance(data, dict):
        hint = " (a detection results file?)" if isinstance(data, list) else ""
        raise BenchError(f"not a COCO dataset: expected an object with images/annotations/categories, "
                         f"got a JSON {type(data).__name__}{hint}", path)
    log = ProblemLog()
    with gc_paused():
        categories = _parse_categories(_list_of_dicts(data, "categories", path), path)
        images = _parse_images(_list_of_dicts(data, "images", path), path)
        by_id = {im["id"]: im for im in images}
        annotations = _parse_annotations(_list_of_dicts(data, "annotations", path), by_id,
                                         {c["id"] for c in categories}, path, log)
    info = dict(data["info"]) if isinstance(data.get("info"), dict) else {}
    root = Path(image_root) if image_root is not None else _guess_image_root(path, images, info)
    log.store(info)
    return DetectionDataset(images, annotations, categories, image_root=root, name=name or path.stem,
                            source=str(path), info=info)


def save_coco(ds: DetectionDataset, path: str | Path) -> Path:
    """Write `ds` as COCO json (atomically). The image root is recorded in `info.image_root`, relative to the
    json, so `load_coco(path)` finds the images again."""
    path = Path(path)
    coco = ds.to_coco()
    if ds.image_root is not None:
        try:
            rel = os.path.relpath(Path(ds.image_root).resolve(), path.resolve().parent)
        except ValueError:  # different drives on Windows
            rel = str(Path(ds.image_root).resolve())
        coco["info"]["image_root"] = rel
    return write_json(path, coco)
