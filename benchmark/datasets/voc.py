"""Pascal VOC folders: `Annotations/<id>.xml`, `ImageSets/Main/<split>.txt`, `JPEGImages/<id>.<ext>`.

Loading follows `core.py`'s conventions: `xmin/ymin` shifted by -1, `xmax/ymax` kept (a VOC box covering pixel
columns 1..10 becomes x=0, w=10); `difficult` objects are kept with `difficult=1` and `ignore=1`. The xml `<path>`
(usually the annotator's machine) is ignored: images are found in `JPEGImages/` by id. Width and height come from
`<size>`, or from the image header when missing or 0.

A box with `xmax == xmin` (or `ymax == ymin`) is a point click, not an object: it is dropped as `zero_size_box`
(BCCD has two). `xmax < xmin` is dropped as `inverted_box`. Image ids are 1 + the position of the xml in the
sorted `Annotations/` listing, so they are the same whichever split the image is loaded from.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path, PurePosixPath
from xml.sax.saxutils import escape

from benchmark.errors import BenchError
from benchmark.io import atomic_write_text

from .core import DetectionDataset
from .formats import FORMATS, RANK, DatasetFormat
from .images import image_size, is_image_file, place_image
from .problems import UNCLIPPED_BOXES, ProblemLog, clean_box


def voc_splits(root: str | Path) -> list[str]:
    """Split names available under `ImageSets/Main` (class-specific lists such as `cat_train.txt` excluded)."""
    main = Path(root) / "ImageSets" / "Main"
    if not main.is_dir():
        return []
    return sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem)


def _number(el: ET.Element, tag: str, xml_path: Path, what: str) -> float | None:
    text = el.findtext(tag)
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise BenchError(f"{what}: <{tag}> is not a number: {text.strip()!r}", xml_path) from None


def _flag(text: str | None, xml_path: Path, what: str) -> int:
    text = (text or "0").strip() or "0"
    try:
        return int(float(text) != 0)
    except ValueError:
        raise BenchError(f"{what} is not 0 or 1: {text!r}", xml_path) from None


def _read_split_ids(set_file: Path, log: ProblemLog) -> list[str]:
    """The image ids of a split file. An id is a file name in `Annotations/` without `.xml`: one with a path
    separator (`a/b`, `../x`) names no such file (and could reach outside the dataset), so it is refused."""
    ids, seen = [], set()
    try:
        text = set_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BenchError(f"not a UTF-8 text file (byte {exc.start}): a split file lists one image id per line",
                         set_file) from None
    except OSError as exc:
        raise BenchError(f"cannot read the split file ({exc.strerror or exc})", set_file) from None
    for ln, line in enumerate(text.splitlines(), start=1):
        tok = line.split()
        if not tok:
            continue
        if "/" in tok[0] or "\\" in tok[0] or "\0" in tok[0] or tok[0] in (".", ".."):
            raise BenchError(f"line {ln}: image id {tok[0]!r} is a path; ids are file names in Annotations/ "
                             "without .xml (no sub-folders)", set_file)
        if tok[0] in seen:
            log.skip("duplicate_image_in_split", f"{set_file.name}: {tok[0]}")
            continue
        seen.add(tok[0])
        ids.append(tok[0])
    return ids


# `info` key: boxes this loader drops (zero-size, inverted, outside the image) that OA-MIL's VOC parser keeps, so its
# generator spends four draws on each: [image id, number of this image's annotations before it]. `oamil-legacy` noise
# spends the same draws there, so the boxes after them get the published values.
LEGACY_DRAW_SLOTS = "legacy_draw_slots"


def _note_lookalike_classes(names: list[str], log: ProblemLog, where: str) -> None:
    """Class names that differ only in case, spaces, `_` or `-` ("RBC" and "rbc "): most likely one class typed
    two ways, which would train and score as two. Noted (the data may mean it), with the object counts;
    `--classes` fixes the list."""
    counts = Counter(names)
    groups: dict[str, list[str]] = {}
    for name in sorted(counts):
        groups.setdefault(re.sub(r"[\s_-]+", "", name).casefold(), []).append(name)
    for alike in (g for g in groups.values() if len(g) > 1):
        said = " and ".join(f"{n!r} ({counts[n]} object{'s' if counts[n] != 1 else ''})" for n in alike)
        log.note("lookalike_class_names", f"{where}: classes {said} differ only in case or separators; the same "
                                          "class? pass --classes to fix the list")


def load_voc(root: str | Path, split: str, classes: list[str] | None = None, name: str = "") -> DetectionDataset:
    """Load the images listed in `ImageSets/Main/<split>.txt`.

    `classes` fixes the category list (ids 1..K in that order; objects of other classes are dropped and counted);
    by default it is the sorted set of class names found in this split (`load()` aligns train and test)."""
    root = Path(root)
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    if not ann_dir.is_dir():
        raise BenchError("not a VOC folder: no Annotations/ directory", root)
    set_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not set_file.is_file():
        avail = ", ".join(voc_splits(root)) or "none"
        raise BenchError(f"split file not found (available splits: {avail})", set_file)

    log = ProblemLog()
    ids = _read_split_ids(set_file, log)
    id_of = {stem: i + 1 for i, stem in enumerate(sorted(f[:-4] for f in os.listdir(ann_dir) if f.endswith(".xml")))}
    image_files: dict[str, str] = {}  # stem -> file name in JPEGImages/
    if img_dir.is_dir():
        for f in sorted(os.listdir(img_dir)):
            if is_image_file(f):
                image_files.setdefault(os.path.splitext(f)[0], f)
    image_names = set(image_files.values())

    fixed_classes = list(classes) if classes is not None else None
    cat_of: dict[str, int] = {c: i + 1 for i, c in enumerate(fixed_classes)} if fixed_classes else {}
    images, raw = [], []  # raw: (image_id, class name, bbox, difficult)
    dropped = []  # (image_id, annotations of that image before it, class name): dropped boxes OA-MIL draws for
    for stem in ids:
        xml_path = ann_dir / f"{stem}.xml"
        rel = f"Annotations/{stem}.xml"
        try:
            el = ET.parse(xml_path).getroot()
        except FileNotFoundError:
            raise BenchError(f"annotation file not found (listed in {set_file.name})", xml_path) from None
        except IsADirectoryError:
            raise BenchError(f"is a directory, expected an XML annotation file (listed in {set_file.name})",
                             xml_path) from None
        except OSError as exc:
            raise BenchError(f"cannot read the annotation file ({exc.strerror or exc})", xml_path) from None
        except ET.ParseError as exc:
            raise BenchError(f"malformed XML ({exc})", xml_path) from None
        if el.tag != "annotation":
            raise BenchError(f"not a VOC annotation: root element is <{el.tag}>, expected <annotation>", xml_path)

        xml_name = (el.findtext("filename") or "").strip()
        file_name = image_files.get(stem) or (xml_name if xml_name in image_names else f"{stem}.jpg")
        size = el.find("size")
        width = _number(size, "width", xml_path, "<size>") if size is not None else None
        height = _number(size, "height", xml_path, "<size>") if size is not None else None
        if not all(v is None or (math.isfinite(v) and v >= 0) for v in (width, height)):
            got = "x".join("?" if v is None else f"{v:g}" for v in (width, height))
            raise BenchError(f"<size>: width and height must be positive numbers, got {got}", xml_path)
        # whole pixels (a fractional <size>, 100.7, kept as 100): the boxes are clipped to the size the image keeps
        width, height = (None if v is None else int(v) for v in (width, height))
        if not width or not height:
            try:
                width, height = image_size(img_dir / file_name)
            except BenchError as exc:
                log.skip("unreadable_image", f"{rel}: no <size> and {exc}")
                if el.findall("object"):  # its boxes go with it: counted, so a conversion says so
                    log.skip("box_of_unreadable_image", rel, n=len(el.findall("object")))
                continue
        image_id = id_of[stem]
        images.append({"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)})

        kept_here = 0
        for k, obj in enumerate(el.findall("object"), start=1):
            cname = (obj.findtext("name") or "").strip()
            if not cname:
                raise BenchError(f"object {k}: missing <name>", xml_path)
            what = f"object {k} ({cname})"
            bnd = obj.find("bndbox")
            if bnd is None:
                raise BenchError(f"{what}: missing <bndbox>", xml_path)
            coords = [_number(bnd, t, xml_path, what) for t in ("xmin", "ymin", "xmax", "ymax")]
            if any(c is None for c in coords):
                raise BenchError(f"{what}: <bndbox> needs xmin, ymin, xmax and ymax", xml_path)
            xmin, ymin, xmax, ymax = coords
            where = f"{rel}: {what}"
            if fixed_classes is not None and cname not in cat_of:
                log.skip("unknown_category", f"{where}: class not in {fixed_classes}")
                continue
            if not all(math.isfinite(c) for c in coords):
                log.skip("non_finite_box", where)
                continue
            difficult = _flag(obj.findtext("difficult"), xml_path, f"{what}: <difficult>")
            box = None
            if xmax < xmin or ymax < ymin:
                log.skip("inverted_box", f"{where}: xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g}")
            elif xmax == xmin or ymax == ymin:
                log.skip("zero_size_box", f"{where}: xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g}")
            else:
                box = clean_box(xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1, width, height, log, where)
            if box is None:
                if not difficult:  # OA-MIL's VOC parser keeps it and its generator draws for it
                    dropped.append((image_id, kept_here, cname))
                continue
            as_read = [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]
            raw.append((image_id, cname, box, difficult, None if box == as_read else as_read))
            kept_here += 1

    if fixed_classes is None:
        cat_of = {c: i + 1 for i, c in enumerate(sorted({r[1] for r in raw}))}
        _note_lookalike_classes([r[1] for r in raw], log, str(root))
    categories = [{"id": i, "name": c} for c, i in cat_of.items()]
    annotations = [
        {"id": n, "image_id": iid, "category_id": cat_of[c], "bbox": box, "area": float(box[2]) * float(box[3]),
         "iscrowd": 0, "ignore": d, "difficult": d}
        for n, (iid, c, box, d, _) in enumerate(raw, start=1)
    ]
    log.unclipped += [[n, *before] for n, (*_, before) in enumerate(raw, start=1) if before is not None]
    info = log.store({"format": "voc", "split": split})
    slots = [[iid, before] for iid, before, c in dropped if c in cat_of]
    if slots:
        info[LEGACY_DRAW_SLOTS] = slots
    return DetectionDataset(images, annotations, categories, image_root=img_dir, name=name or f"{root.name}/{split}",
                            source=str(root), info=info)


def safe_relpath(file_name: str) -> PurePosixPath:
    """`file_name` as a relative path that cannot leave an export folder (drops '..', drive and leading '/')."""
    parts = [p for p in PurePosixPath(file_name.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    if not parts:
        raise BenchError(f"cannot export image with file_name {file_name!r}")
    return PurePosixPath(*parts)


def voc_stem(file_name: str) -> str:
    """The VOC image id for an image: its file name without extension, sub-folders joined by '__'."""
    rel = safe_relpath(file_name)
    return "__".join(rel.with_suffix("").parts)


def _xml(img: dict, stem: str, ext: str, objects: list[str]) -> str:
    return (
        "<annotation>\n\t<folder>JPEGImages</folder>\n"
        f"\t<filename>{escape(stem + ext)}</filename>\n"
        f"\t<size>\n\t\t<width>{int(img['width'])}</width>\n\t\t<height>{int(img['height'])}</height>\n"
        "\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n" + "".join(objects) + "</annotation>\n"
    )


def _object(name: str, box: list[float], difficult: int, width: int, height: int) -> tuple[str, bool]:
    """One <object>, and whether its box had to be widened: VOC's integer pixels read back as xmax - xmin + 1 wide,
    so a box rounding to under 2 px is widened (kept inside the image, where the reader would drop it)."""
    x, y, w, h = box
    xmin, ymin = math.floor(x + 0.5) + 1, math.floor(y + 0.5) + 1
    xmax = max(math.floor(x + w + 0.5), xmin + 1)  # xmax == xmin would read back as a zero-size point
    ymax = max(math.floor(y + h + 0.5), ymin + 1)
    widened = xmax != math.floor(x + w + 0.5) or ymax != math.floor(y + h + 0.5)
    if xmax > width >= 2:
        xmax, xmin = width, min(xmin, width - 1)
    if ymax > height >= 2:
        ymax, ymin = height, min(ymin, height - 1)
    return (
        f"\t<object>\n\t\t<name>{escape(name)}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>{difficult}</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{xmin}</xmin>\n\t\t\t<ymin>{ymin}</ymin>\n"
        f"\t\t\t<xmax>{xmax}</xmax>\n\t\t\t<ymax>{ymax}</ymax>\n\t\t</bndbox>\n\t</object>\n"
    ), widened


def unwritable_class_names(names: list[str]) -> list[str]:
    """The class names a VOC export would not read back as themselves: empty, leading or trailing white space (the
    reader strips it), control characters or line breaks (XML cannot carry most; it turns CR into LF), surrogates
    and non-characters."""
    bad = []
    for n in names:
        n = str(n)
        odd = any(unicodedata.category(ch) in ("Cc", "Cs") or (ord(ch) & 0xFFFE) == 0xFFFE
                  or 0xFDD0 <= ord(ch) <= 0xFDEF for ch in n)
        if not n or n != n.strip() or odd:
            bad.append(n)
            continue
        try:
            back = ET.fromstring(f"<name>{escape(n)}</name>").text
        except ET.ParseError:
            back = None
        if (back or "").strip() != n:
            bad.append(n)
    return bad


def refuse_unwritable_names(fmt: str, bad: list[str], where=None) -> None:
    """One line naming the class names (`bad`) the format `fmt` cannot carry."""
    if bad:
        raise BenchError(f"{len(bad)} class name(s) cannot be written as {fmt}: "
                         + ", ".join(repr(n) for n in bad[:5]) + (" ..." if len(bad) > 5 else "")
                         + f" (leading/trailing spaces, control characters and line breaks do not survive {fmt}); "
                           "rename them first", where)


def _free_stem(stem: str, content: tuple, written: dict) -> str:
    """`stem`, or `stem__2`, `stem__3`, ... if another image of this export already took it: one xml per id, so
    `val/0001.jpg` written after `train/0001.jpg` (or `a.png` after `a.jpg`) would replace its annotations."""
    candidate, k = stem, 1
    while written.setdefault(candidate, content) != content:
        k += 1
        candidate = f"{stem}__{k}"
    return candidate


def save_voc(ds: DetectionDataset, root: str | Path, split: str, images: str = "symlink",
             written: dict | None = None, files: list | None = None) -> dict:
    """Write `ds` as a VOC split: one xml per image, `ImageSets/Main/<split>.txt`, images placed in
    `JPEGImages/` ('symlink', 'copy' or 'none').

    Coordinates are written as integers (VOC's precision: edges move by at most 0.5 px, except that a box under
    2 px wide or high is widened, counted as `widened_boxes`); ignored boxes (VOC difficult, COCO crowd) are
    written with `<difficult>1</difficult>`. Class names VOC cannot carry are refused (`unwritable_class_names`).
    `written` (image id -> content, shared by the splits of one export) keeps ids unique: an image whose id is
    taken by another one is renamed `<id>__2`. `files` collects every path written. Returns counts of what was
    written."""
    root = Path(root)
    names = ds.category_names()
    refuse_unwritable_names("VOC", unwritable_class_names(list(names.values())))
    by_image = ds.annotations_by_image()
    written = {} if written is None else written
    files = [] if files is None else files
    stems, missing, boxes, renamed, widened = [], 0, 0, 0, 0
    for img in ds.images:
        ext = PurePosixPath(img["file_name"]).suffix or ".jpg"
        objects = []
        for a in by_image.get(img["id"], []):
            text, wide = _object(names[a["category_id"]], a["bbox"], int(bool(a.get("ignore", 0))),
                                 int(img["width"]), int(img["height"]))
            objects.append(text)
            widened += wide
        content = (os.path.abspath(ds.image_path(img)), int(img["width"]), int(img["height"]), tuple(objects))
        stem = _free_stem(voc_stem(img["file_name"]), content, written)
        renamed += stem != voc_stem(img["file_name"])
        boxes += len(objects)
        files.append(atomic_write_text(root / "Annotations" / f"{stem}.xml", _xml(img, stem, ext, objects)))
        if not place_image(ds.image_path(img), root / "JPEGImages" / f"{stem}{ext}", images):
            missing += 1
        elif images != "none":
            files.append(root / "JPEGImages" / f"{stem}{ext}")
        stems.append(stem)
    files.append(atomic_write_text(root / "ImageSets" / "Main" / f"{split}.txt", "".join(s + "\n" for s in stems)))
    return {"images": len(stems), "boxes": boxes, "missing_source_images": missing,
            "renamed_images": renamed, "widened_boxes": widened}

# ---- the `voc` entry of `formats.FORMATS` (path layouts, reading, writing, kind) ------------------------------------
def align_by_name(splits: dict[str, DetectionDataset]) -> dict[str, DetectionDataset]:
    """Give every split the same categories (the sorted union of names, ids 1..K): formats whose classes are
    names (VOC) would otherwise number a class missing from one split differently."""
    names = sorted({c["name"] for ds in splits.values() for c in ds.categories})
    new_id = {n: i + 1 for i, n in enumerate(names)}
    cats = [{"id": new_id[n], "name": n} for n in names]
    for ds in splits.values():
        if ds.categories == cats:
            continue
        old_to_new = {c["id"]: new_id[c["name"]] for c in ds.categories}
        for a in ds.annotations:
            a["category_id"] = old_to_new[a["category_id"]]
        ds.categories = [dict(c) for c in cats]
    return splits


def load_voc_root(root: Path, name: str) -> dict[str, DetectionDataset]:
    """A VOC year folder as `train` (`trainval`, else `train`) and `test` (`test`, else `val`)."""
    avail = voc_splits(root)
    if "test" in avail:
        pairs = [("train", "trainval" if "trainval" in avail else "train"), ("test", "test")]
    elif "val" in avail and "train" in avail:
        pairs = [("train", "train"), ("test", "val")]
    else:
        pairs = [("train", s) for s in ("trainval", "train") if s in avail][:1]
    pairs = [(k, s) for k, s in pairs if s in avail]
    if not pairs:
        raise BenchError("VOC folder has no split files in ImageSets/Main (expected trainval/train and test/val)", root)
    return align_by_name({k: load_voc(root, s, name=f"{name}/{k}") for k, s in pairs})


def _concat(parts: list[DetectionDataset], name: str) -> DetectionDataset:
    """One dataset from several VOC splits (the 07+12 union): categories aligned by name, image ids of each part
    shifted past the previous part's largest, annotation ids renumbered, file names relative to the parts' common
    folder. The order is the parts' order (mmdet's ConcatDataset order), which per-box noise draws follow."""
    if len(parts) == 1:
        return parts[0]
    parts = list(align_by_name(dict(enumerate(parts))).values())
    roots = [Path(p.image_root).resolve() for p in parts]
    common = Path(os.path.commonpath(roots))
    images, anns, info = [], [], {"format": "voc", "parts": [p.source for p in parts]}
    img_shift, ann_shift = 0, 0
    for p, r in zip(parts, roots):
        rel = r.relative_to(common)
        for im in p.images:
            images.append({**im, "id": im["id"] + img_shift, "file_name": (rel / im["file_name"]).as_posix()})
        for a in p.annotations:
            anns.append({**a, "id": a["id"] + ann_shift, "image_id": a["image_id"] + img_shift})
        for key, value in p.info.items():
            if key == UNCLIPPED_BOXES:
                value = [[r0 + ann_shift, *rest] for r0, *rest in value]
            elif key == LEGACY_DRAW_SLOTS:
                value = [[iid + img_shift, before] for iid, before in value]
            if isinstance(value, list):
                info.setdefault(key, []).extend(value)
            elif isinstance(value, dict) and key != "problem_examples":
                merged = info.setdefault(key, {})
                for k, v in value.items():
                    merged[k] = merged.get(k, 0) + v if isinstance(v, (int, float)) else v
            elif isinstance(value, dict):
                merged = info.setdefault(key, {})
                for k, v in value.items():
                    merged.setdefault(k, []).extend(v)
        img_shift = max((im["id"] for im in images), default=img_shift)
        ann_shift = max((a["id"] for a in anns), default=ann_shift)
    return DetectionDataset(images, anns, parts[0].categories, image_root=common, name=name,
                            source=str(common), info=info)


def load_voc_parts(splits: dict[str, list[tuple[Path, str]]], name: str) -> dict[str, DetectionDataset]:
    """{split: [(VOC year folder, VOC split), ...]} -> aligned splits, several parts concatenated (`_concat`)."""
    out = {k: _concat([load_voc(root, s, name=f"{name}/{k}") for root, s in parts], f"{name}/{k}")
           for k, parts in splits.items() if parts}
    return align_by_name(out)


def voc_devkit_years(path: Path) -> dict[str, Path]:
    """{'2007': folder, ...} of the `VOC<year>/` folders with `Annotations/` in a `VOCdevkit/` folder."""
    if not path.is_dir() or (path / "Annotations").is_dir():
        return {}
    return {m.group(1): c for c in sorted(path.iterdir())
            if (m := re.fullmatch(r"VOC(\d{4})", c.name, re.IGNORECASE)) and (c / "Annotations").is_dir()}


def voc_devkit_name(path: Path) -> str | None:
    """The catalog name a `VOCdevkit/` loads as: `voc0712` for 2007 + 2012, else `voc<year>` of its one year."""
    years = voc_devkit_years(path)
    if set(years) >= {"2007", "2012"}:
        return "voc0712"
    return f"voc{next(iter(years))}" if len(years) == 1 else None


def load_voc_devkit(path: Path) -> dict[str, DetectionDataset]:
    """A `VOCdevkit/`: one year loads as that year's folder; 2007 + 2012 as the 07+12 union (train: 2007 trainval
    + 2012 trainval, test: 2007 test), as `voc0712` does."""
    years = voc_devkit_years(path)
    name = voc_devkit_name(path) or path.name
    if len(years) == 1:
        return load_voc_root(next(iter(years.values())), name)
    if not {"2007", "2012"} <= set(years):
        raise BenchError(f"VOCdevkit with years {', '.join(years)}: only one year, or 2007 + 2012 (the 07+12 "
                         "union), is understood; point at one VOC<year> folder instead", path)
    v07, v12 = years["2007"], years["2012"]
    test = [(v07, "test")] if "test" in voc_splits(v07) else []
    return load_voc_parts({"train": [(v07, "trainval"), (v12, "trainval")], "test": test}, name)


def _voc_read(path: Path, name: str, keep_columns: bool = False) -> dict[str, DetectionDataset]:
    return load_voc_root(path, name) if (path / "Annotations").is_dir() else load_voc_devkit(path)


def _voc_save(ds: DetectionDataset, dst: Path, split_name: str, images: str, files: list,
              state: dict) -> tuple[Path, dict]:
    # one Annotations/ folder for all splits: `written` (VOC image id -> content) spans the conversion
    summary = save_voc(ds, dst, split_name, images=images, written=state.setdefault("voc_ids", {}), files=files)
    used = {a["category_id"] for a in ds.annotations}
    lost = sorted(c["name"] for c in ds.categories if c["id"] not in used)
    if lost:  # VOC has no class list: a class exists only through its objects
        summary["classes without boxes (VOC cannot record them)"] = ", ".join(lost)
    return dst, summary


VOC = DatasetFormat(
    "voc", kind="voc", read=_voc_read,
    probes=((RANK["marker"], lambda p: (p / "Annotations").is_dir()),
            (RANK["container"], lambda p: bool(voc_devkit_years(p)))),
    expects="a VOC folder (Annotations/, or a VOCdevkit/ holding VOC<year>/ folders)",
    save=_voc_save, check_names=lambda names: refuse_unwritable_names("VOC", unwritable_class_names(names)),
    split_map={"train": "trainval", "test": "test"})
FORMATS.add("voc", VOC)
