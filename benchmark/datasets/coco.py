"""COCO json: load (strict about structure, lenient about single boxes) and save (atomic).

A COCO file must be an object with `images`, `annotations` and `categories` lists; images need `id`, `file_name`,
`width`, `height`; annotations need `id`, `image_id`, `category_id`, `bbox`; ids must be unique integers. Any of
that wrong is a one-line `BenchError` naming the file. Bad single boxes (zero-size, inverted, non-finite, outside
the image, unknown category or image) are dropped and counted (see `problems.py`); boxes crossing the border are
clipped and counted. Images without annotations are valid and kept.
"""

from __future__ import annotations

import os
import re
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np

from benchmark.errors import BenchError
from benchmark.io import gc_paused, parse_json, read_bytes, sha256_bytes, write_json

from .core import AnnotationColumns, DetectionDataset, rows_by_id, same_categories
from .formats import FORMATS, RANK, DatasetFormat, source_kind
from .problems import ProblemLog, clean_box

_FLAG_TYPES = {int, bool, float, type(None)}  # COCO iscrowd 0 / 1; true / false, 0.0 / 1.0 and null read as meant
_NUMBER_TYPES = {int, float}  # a JSON number: bool is no number


def _is_int(v) -> bool:
    return type(v) is int  # bool is not an id


def _is_num(v) -> bool:
    return type(v) in _NUMBER_TYPES


def _not_an_id(where: str, v) -> str:
    """The error for a non-integer id. Only on the error path: JSON parsers read integers beyond 64 bits as floats
    (orjson: outside [-2**63, 2**64)), and "must be an integer, got 1.8e+19" would blame the wrong thing."""
    if type(v) is float and v.is_integer() and not -2.0 ** 63 < v < 2.0 ** 64:
        return (f"{where}: id {v!r} is outside the 64-bit integer range (JSON readers turn such numbers into "
                f"floats); ids must be integers that fit in 64 bits")
    return f"{where}: id must be an integer, got {v!r}"


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
            raise BenchError(_not_an_id(f"categories[{i}]", c["id"]), path)
        if not isinstance(c["name"], str) or not c["name"].strip():  # class names are text in every format
            raise BenchError(f"categories[{i}] (id {c['id']}): name must be a non-empty string, got {c['name']!r}",
                             path)
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
            raise BenchError(_not_an_id(f"images[{i}]", im["id"]), path)
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
                       log: ProblemLog, keep_columns: bool = False) -> tuple[list[dict], _Columns | None]:
    """Validate and normalise annotations in place (the parsed json is ours); with `keep_columns`, also the
    columns of the kept ones when the column-wise check could read them (see `AnnotationColumns`).

    COCO-sized files are checked column-wise first (`_rows_needing_care`): only the annotations that break a box
    rule then go through the per-annotation rules, so a clean COCO train file costs a few vector operations instead
    of ~1M Python-level checks. A structural problem anywhere sends the whole list through the per-annotation pass,
    which raises the error naming the first offending annotation."""
    care, cols = _rows_needing_care(items, images, category_ids)
    if not keep_columns:
        cols = None
    if care is None:
        seen: set = set()
        kept = [_checked_annotation(i, a, images, category_ids, path, log, seen) for i, a in enumerate(items)]
    else:
        kept = list(items)
        for i in care.tolist():
            kept[i] = _checked_annotation(i, items[i], images, category_ids, path, log, None)
        if cols is not None and care.size:
            cols = cols.after_care(kept, care)
    out = [a for a in kept if a is not None]
    for a in out:  # a plain loop: ~4x faster here than the same rules as chained maps
        crowd, ignore, difficult = a.get("iscrowd", 0), a.get("ignore", 0), a.get("difficult", 0)
        if type(crowd) not in _FLAG_TYPES or type(ignore) not in _FLAG_TYPES or type(difficult) not in _FLAG_TYPES:
            _bad_flag(a, path)  # "0" is a non-empty string: it would read as crowd / ignored
        crowd = 1 if crowd else 0
        a["iscrowd"] = crowd
        a["ignore"] = 1 if crowd or ignore or difficult else 0
        if "area" not in a:
            bb = a["bbox"]
            a["area"] = float(bb[2]) * float(bb[3])
        elif type(a["area"]) not in _NUMBER_TYPES or not a["area"] >= 0:  # `_is_num`, inline: 860 k rows
            raise BenchError(f"annotation {a['id']}: area must be a number >= 0 (or left out), got {a['area']!r}",
                             path)
    return out, cols


def _bad_flag(a: dict, path: Path) -> None:
    for key in ("iscrowd", "ignore", "difficult"):
        if type(a.get(key, 0)) not in _FLAG_TYPES:
            raise BenchError(f"annotation {a['id']}: {key} must be 0 or 1, got {a[key]!r}", path)


@dataclass
class _Columns:
    """What the column-wise check read, row i = annotation i (see `AnnotationColumns`)."""
    xywh: np.ndarray
    image_row: np.ndarray
    category_id: np.ndarray
    image_wh: np.ndarray

    def after_care(self, kept: list, care: np.ndarray) -> _Columns:
        """The columns of `kept` once the per-annotation rules ran on rows `care`: clipped boxes as clipped,
        dropped rows (None in `kept`) left out."""
        xywh = self.xywh.copy()
        dropped = []
        for i in care.tolist():
            if kept[i] is None:
                dropped.append(i)
            else:
                xywh[i] = kept[i]["bbox"]
        keep = np.ones(len(xywh), bool)
        keep[dropped] = False
        return _Columns(xywh[keep], self.image_row[keep], self.category_id[keep], self.image_wh)


def _rows_needing_care(items: list, images: dict[int, dict],
                       category_ids: set) -> tuple[np.ndarray | None, _Columns | None]:
    """Indices of the annotations a box rule may drop or clip (unknown image or category, a box not strictly inside
    its image, a non-number coordinate), or None when the list has a structural problem (not a dict, a missing key,
    a non-integer or duplicate id, a bbox that is not a 4-list) that the per-annotation pass must report. Second:
    the columns read on the way, or None where some could not be read as numbers (that pass then decides)."""
    n = len(items)
    if not n:
        return np.zeros(0, np.int64), None
    try:
        ids = list(map(itemgetter("id"), items))
        image_ids = list(map(itemgetter("image_id"), items))
        cats = list(map(itemgetter("category_id"), items))
        boxes = list(map(itemgetter("bbox"), items))
    except (KeyError, TypeError):
        return None, None
    if set(map(type, items)) != {dict} or set(map(type, ids)) != {int} or not _unique_ints(ids):
        return None, None
    if set(map(type, boxes)) != {list} or set(map(len, boxes)) != {4}:
        return None, None
    xywh = _numeric_boxes(boxes, n)
    numeric = xywh is not None
    if not numeric:  # bools, strings, nulls: every box through the per-annotation rules, which name the bad one
        xywh = np.full((n, 4), np.nan)
    size = np.full((n, 2), np.nan)  # unknown image -> NaN -> not inside -> the per-annotation rules skip it
    rows = _int_column_op(lambda: rows_by_id(np.fromiter(images.keys(), np.int64, len(images)),
                                             np.fromiter(image_ids, np.int64, n)), image_ids)
    wh = None
    if rows is not None:  # else: non-integer or huge ids, every box goes through the per-annotation rules
        wh = np.array([(im["width"], im["height"]) for im in images.values()], np.float64).reshape(-1, 2)
        size[rows >= 0] = wh[rows[rows >= 0]]
    cat = _int_column_op(lambda: np.fromiter(cats, np.int64, n), cats)
    known_cat = None if cat is None else _int_column_op(lambda: np.isin(cat, np.fromiter(category_ids, np.int64)),
                                                        category_ids)
    if known_cat is None:  # a non-int id (true == 1 in a set) goes through the per-annotation rules
        known_cat = np.fromiter((type(c) is int and c in category_ids for c in cats), bool, n)
    x, y, w, h = xywh.T
    with np.errstate(invalid="ignore"):
        inside = (w > 0) & (h > 0) & (x >= 0) & (y >= 0) & (x + w <= size[:, 0]) & (y + h <= size[:, 1])
    cols = _Columns(xywh, rows, cat, wh) if numeric and rows is not None and cat is not None else None
    return np.flatnonzero(~(inside & known_cat)), cols


def _numeric_boxes(boxes: list, n: int) -> np.ndarray | None:
    """The n x 4 coordinates when every one is a JSON number (int or float), else None.

    `array("d", ...)` rejects strings and nulls at C speed (np.fromiter would parse "1.5" and read null as NaN);
    a bool becomes 0.0 or 1.0, so only the few rows holding exactly 0 or 1 need their types looked at: ~0.4 s less
    than a type check of all 3.4 M coordinates of COCO train."""
    try:
        xywh = np.frombuffer(array("d", chain.from_iterable(boxes)), np.float64).reshape(n, 4)
    except (TypeError, OverflowError):
        return None
    maybe_bool = np.flatnonzero(((xywh == 0) | (xywh == 1)).any(axis=1)).tolist()
    if not set(map(type, chain.from_iterable(map(boxes.__getitem__, maybe_bool)))) <= {int, float}:
        return None
    return xywh


def _unique_ints(ids: list) -> bool:
    """No two equal values among Python ints (ids are usually increasing: one pass, no set of 1M ints)."""
    try:
        arr = np.fromiter(ids, np.int64, len(ids))
    except OverflowError:
        return len(set(ids)) == len(ids)
    return bool((arr[1:] > arr[:-1]).all()) or np.unique(arr).size == arr.size


def _int_column_op(op, *columns):
    """`op()` when every value of `columns` is a Python int that fits int64, else None (the caller's slow path)."""
    if any(set(map(type, col)) - {int} for col in columns):
        return None
    try:
        return op()
    except OverflowError:
        return None


def _checked_annotation(i: int, a, images: dict[int, dict], category_ids: set, path: Path, log: ProblemLog,
                        seen: set | None) -> dict | None:
    """One annotation through every rule: the annotation (its box clipped if needed), None if a box rule drops it
    (counted in `log`), or a `BenchError` for a structural problem. `seen` collects ids (None: already checked)."""
    if not isinstance(a, dict):
        raise BenchError(f"annotations[{i}] must be an object", path)
    try:
        aid, iid, cid, bb = a["id"], a["image_id"], a["category_id"], a["bbox"]
    except KeyError as exc:
        raise BenchError(f"annotations[{i}]: missing required key {exc}", path) from None
    if seen is not None:
        if type(aid) is not int:
            raise BenchError(_not_an_id(f"annotations[{i}]", aid), path)
        if aid in seen:
            raise BenchError(f"duplicate annotation id {aid} (annotations[{i}])", path)
        seen.add(aid)
    if type(bb) is not list or len(bb) != 4 or not all(type(v) in (int, float) for v in bb):  # true is no number
        raise BenchError(f"annotations[{i}] (id {aid}): bbox must be 4 numbers [x, y, w, h], got {bb!r}", path)
    for key, v in (("image_id", iid), ("category_id", cid)):
        if type(v) is bool or isinstance(v, (list, dict)):  # true == 1 as a dict key: it would land on image 1
            shown = str(v).lower() if type(v) is bool else repr(v)
            raise BenchError(f"annotations[{i}] (id {aid}): {key} must be an integer id, got {shown}", path)
    src = path.name
    img = images.get(iid)
    if img is None:
        log.skip("unknown_image", f"{src}: annotation {aid} refers to image id {iid!r}")
        return None
    if cid not in category_ids:
        log.skip("unknown_category", f"{src}: annotation {aid} has category id {cid!r}")
        return None
    x, y, w, h = bb
    try:  # comparisons raise TypeError for anything but numbers
        inside = w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]
        if not inside:
            bb = clean_box(x, y, w, h, img["width"], img["height"], log, f"{src}: annotation {aid} ({img['file_name']})")
            if bb is not None and bb != [x, y, w, h]:
                log.unclipped.append([aid, x, y, w, h])
    except TypeError:
        raise BenchError(f"annotations[{i}] (id {aid}): bbox must be 4 numbers [x, y, w, h], got {bb!r}",
                         path) from None
    if not inside:
        if bb is None:
            return None
        a["bbox"] = bb
    return a


def _guess_image_root(json_path: Path, images: list[dict], info: dict) -> Path:
    """Where the images live when the caller did not say: the first candidate holding the first image."""
    here = json_path.parent
    candidates = []
    if isinstance(info.get("image_root"), str):  # written by save_coco, relative to the json
        candidates.append(here / info["image_root"])
    candidates += [here, here / "images", here.parent, here.parent / "images"]
    stem = json_path.stem.split("_")[-1]  # instances_val2017.json -> val2017
    candidates += [here.parent / stem, here.parent / "images" / stem]
    # a few images spread over the list, not only the first (which may be the one missing file)
    n = len(images)
    probes = [images[i]["file_name"] for i in sorted({0, n // 3, 2 * n // 3, n - 1})] if n else []
    best, hits = candidates[0], 0
    for c in candidates:
        found = sum((c / name).is_file() for name in probes)
        if found > hits:
            best, hits = c, found
        if hits == len(probes) and probes:
            break
    return best


def load_coco(json_path: str | Path, image_root: str | Path | None = None, name: str = "",
              keep_columns: bool = False) -> DetectionDataset:
    """Load a COCO json. `image_root` defaults to the first of the json's folder, its `images/` subfolder, its
    parent (and a few COCO-layout variants) that holds the first image. `keep_columns`: also keep the validated
    columns for the noise step (`DetectionDataset.loaded_columns`), for a caller that edits no annotation."""
    path = Path(json_path)
    raw = read_bytes(path)
    with ThreadPoolExecutor(max_workers=1) as pool:  # hashlib releases the GIL: the file's hash (~0.4 s for COCO
        digest = pool.submit(sha256_bytes, raw)     # train) is taken on another core while the JSON is parsed
        data = parse_json(raw, path)
        file_sha256 = digest.result()
    if not isinstance(data, dict):
        hint = " (a detection results file?)" if isinstance(data, list) else ""
        raise BenchError(f"not a COCO dataset: expected an object with images/annotations/categories, "
                         f"got a JSON {type(data).__name__}{hint}", path)
    log = ProblemLog()
    with gc_paused():
        categories = _parse_categories(_list_of_dicts(data, "categories", path), path)
        images = _parse_images(_list_of_dicts(data, "images", path), path)
        by_id = {im["id"]: im for im in images}
        annotations, cols = _parse_annotations(_list_of_dicts(data, "annotations", path), by_id,
                                               {c["id"] for c in categories}, path, log, keep_columns)
        columns = None if cols is None else _annotation_columns(annotations, images, cols)
    info = dict(data["info"]) if isinstance(data.get("info"), dict) else {}
    root = Path(image_root) if image_root is not None else _guess_image_root(path, images, info)
    log.store(info)
    return DetectionDataset(images, annotations, categories, image_root=root, name=name or path.stem,
                            source=str(path), info=info, file_sha256=file_sha256, loaded_columns=columns)


def _annotation_columns(annotations: list[dict], images: list[dict], cols: _Columns) -> AnnotationColumns | None:
    n = len(annotations)
    try:
        area = np.fromiter(map(itemgetter("area"), annotations), np.float64, n)
    except OverflowError:  # an integer area beyond float range: the noise step reads the dicts instead
        return None
    return AnnotationColumns(annotations, images, cols.xywh, cols.image_row, cols.category_id,
                             np.fromiter(map(itemgetter("ignore"), annotations), np.int8, n).astype(bool), area,
                             cols.image_wh)


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

# ---- the `coco` entry of `formats.FORMATS` (path layouts, reading, writing, kind) -----------------------------------
_SPLIT_WORDS = {"train": "train", "val": "test", "test": "test"}


def _coco_file_split(path: Path) -> str | None:
    words = re.findall(r"train|val|test", path.stem.lower())
    return _SPLIT_WORDS[words[-1]] if words else None


def _load_coco_file(path: Path, keep_columns: bool = False) -> dict[str, DetectionDataset]:
    split = _coco_file_split(path)
    out = {split or "train": load_coco(path, keep_columns=keep_columns)}
    if split is not None:
        lo = path.name.lower()
        word = re.findall(r"train|val|test", lo)[-1]
        i = lo.rfind(word)
        partners = ("val", "test") if split == "train" else ("train",)
        other = "test" if split == "train" else "train"
        for p in partners:
            sib = path.with_name(path.name[:i] + p + path.name[i + len(word):])
            if sib.is_file():
                out[other] = load_coco(sib, keep_columns=keep_columns)
                break
    return same_categories(out)


_PLAIN_STEMS = {"train", "trainval", "val", "valid", "validation", "test"}  # a file named just for its split wins


def _coco_dir_files(root: Path) -> dict[str, Path]:
    """split -> json in a COCO folder; `instances_*` files first (COCO's annotations/ also holds keypoints and
    captions), then a `test` file over a `val` one for the test split."""
    cands: dict[str, list[Path]] = {}
    for folder in (root, root / "annotations"):
        if folder.is_dir():
            for p in folder.glob("*.json"):
                split = _coco_file_split(p)
                if split:
                    cands.setdefault(split, []).append(p)

    def rank(p: Path):
        lo = p.stem.lower()
        return (not lo.startswith("instances"), "test" not in lo, lo not in _PLAIN_STEMS)

    out = {}
    for split, ps in cands.items():
        best = min(rank(p) for p in ps)
        top = sorted(str(p) for p in ps if rank(p) == best)
        if len(top) > 1:  # e.g. train.json and onecls_train.json: never pick one silently
            raise BenchError(f"more than one {split} file in this folder ({', '.join(Path(t).name for t in top)}); "
                             "say which with coco:TRAIN.json,TEST.json", root)
        out[split] = Path(top[0])
    return out


def _coco_kind(splits: dict[str, DetectionDataset]) -> dict[str, DetectionDataset]:
    """A COCO json written from VOC or YOLO data (`bench data convert`) records the source format in its
    `info.format`: the data keeps that format's kind."""
    for ds in splits.values():
        ds.kind = source_kind(ds)
    return splits


def _coco_read(path: Path, name: str, keep_columns: bool = False) -> dict[str, DetectionDataset]:
    if path.is_file():
        return _coco_kind(_load_coco_file(path, keep_columns))
    files = _coco_dir_files(path)
    return _coco_kind(same_categories({k: load_coco(p, name=f"{name}/{k}", keep_columns=keep_columns)
                                        for k, p in sorted(files.items(), reverse=True)}))


def _coco_read_spec(spec: str, progress: bool = True, keep_columns: bool = False) -> dict[str, DetectionDataset]:
    files = [f for f in spec[5:].split(",") if f]
    if len(files) != 2:
        raise BenchError(f"bad dataset spec {spec!r}: use coco:TRAIN.json,TEST.json")
    return _coco_kind(same_categories({"train": load_coco(files[0], name="train", keep_columns=keep_columns),
                                        "test": load_coco(files[1], name="test", keep_columns=keep_columns)}))


def _coco_split_file(dst: Path, split_name: str) -> Path:
    return dst if dst.suffix.lower() == ".json" else dst / f"{split_name}.json"


def _coco_save(ds: DetectionDataset, dst: Path, split_name: str, images: str, files: list,
               state: dict) -> tuple[Path, dict]:
    out = _coco_split_file(dst, split_name)
    files.append(save_coco(ds, out))
    return out, {"images": len(ds.images), "boxes": len(ds.annotations)}


COCO = DatasetFormat(
    "coco", kind="coco", read=_coco_read, scheme="coco", read_spec=_coco_read_spec,
    probes=((RANK["file"], lambda p: p.is_file() and p.suffix.lower() == ".json"),
            # raises where two files claim one split (e.g. train.json and onecls_train.json): never pick one silently
            (RANK["files"], lambda p: p.is_dir() and bool(_coco_dir_files(p)))),
    expects="a COCO .json file or a folder of COCO jsons (train.json, val.json, annotations/instances_*.json)",
    save=_coco_save, split_file=_coco_split_file, single_suffix=".json", split_map={"train": "train", "test": "test"})
FORMATS.add("coco", COCO)
