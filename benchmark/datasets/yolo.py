"""YOLO txt datasets: the `images/<split>/` + `labels/<split>/` layout, or whatever a `data.yaml` says.

A `data.yaml` (Ultralytics' format; also data.yml, dataset.yaml, or any .yaml given as the dataset path) names the
classes and may list the splits: `train` / `val` / `test`, each a folder of images, a .txt file listing images, or a
list of those, relative to `path` (itself relative to the yaml's folder). Resolved like Ultralytics does: a relative
entry that does not exist is retried without a leading `../` (Roboflow exports write `train: ../train/images` beside
`train/`, `valid/`, `test/`). The label file of an image is its path with the last `images/` folder replaced by
`labels/` and the extension by `.txt`. Without split entries `images/<split>/` is used; an entry naming nothing that
exists falls back to `images/<split>/` as a counted problem (`missing_split_entry`), or is an error without it.

Each label line is `class cx cy w h`, normalised to the image size; segmentation lines (`class x1 y1 x2 y2 ...`)
are reduced to their bounding box and counted. Image sizes are read from the file headers (no pixel decoding).
An image without a label file is a background image (kept, no boxes; a `.txt` beside it, Darknet-style, is
counted as `label_beside_image`). YOLO class k becomes category id k + 1.
A malformed label line is a `BenchError` naming the file and line; bad single boxes are dropped and counted.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path, PurePosixPath

import yaml

from benchmark.errors import BenchError
from benchmark.io import atomic_write_text

from .core import DetectionDataset
from .formats import FORMATS, RANK, DatasetFormat
from .images import image_size, is_image_file, place_image
from .problems import ProblemLog, clean_box
from .voc import refuse_unwritable_names, safe_relpath, unwritable_class_names

YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")
WRITTEN_BY = "# written by noisybox-bench"  # first line of the data.yaml `save_yolo` writes


# ---- class names ------------------------------------------------------------------------------------------------
def _class_index(k, path: Path) -> int:
    """A `names` mapping key: an integer or its digits (`0: a` or `"0": a`); 0.5, true or "a" are no index."""
    if type(k) is int:
        return k
    if isinstance(k, str) and re.fullmatch(r"\s*\d+\s*", k):
        return int(k)
    raise BenchError(f"'names' keys must be class indices 0..K-1, got {k!r}", path)


def _name_text(n, path: Path) -> str:
    """A class name as text: strings, and numbers as written (`names: [1, 2]`); None (an empty `-` entry), a bool
    (YAML reads an unquoted yes / no / on / off as one) or a list is not a name anyone meant."""
    if isinstance(n, str) and n.strip():
        return n
    if type(n) in (int, float):
        return str(n)
    hint = " (quote it: YAML reads yes/no/on/off as booleans)" if type(n) is bool else ""
    raise BenchError(f"'names': class name must be non-empty text, got {n!r}{hint}", path)


def _names_list(names, path: Path) -> list[str]:
    if isinstance(names, dict):
        index: dict[int, object] = {}
        for k, v in names.items():
            i = _class_index(k, path)
            if i in index:
                raise BenchError(f"'names' maps index {i} twice", path)
            index[i] = v
        keys = sorted(index)
        if keys != list(range(len(keys))):
            raise BenchError(f"'names' must map every index 0..{len(keys) - 1}, got {keys}", path)
        names = [index[k] for k in keys]
    if not isinstance(names, list) or not names:
        raise BenchError("'names' must be a non-empty list or index -> name mapping", path)
    names = [_name_text(n, path) for n in names]
    if len(set(names)) != len(names):
        raise BenchError(f"duplicate class names in 'names': {names}", path)
    return names


def _yaml_file(root: Path) -> Path | None:
    """The dataset's YAML: `root` itself when it is a .yaml file, else the first of `YAML_NAMES` in it."""
    if root.is_file():
        return root if root.suffix.lower() in (".yaml", ".yml") else None
    return next((root / f for f in YAML_NAMES if (root / f).is_file()), None)


def _read_text(path: Path, what: str) -> str:
    """A text file of the dataset (yaml, image list, classes.txt); bytes that are not UTF-8 or an unreadable file
    are a one-line `BenchError` naming it."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BenchError(f"not a UTF-8 text file (byte {exc.start}): expected {what}", path) from None
    except OSError as exc:
        raise BenchError(f"cannot read {what} ({exc.strerror or exc})", path) from None


def _read_yaml(path: Path):
    text = _read_text(path, "a YAML file")
    try:
        return yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError and friends
        raise BenchError(f"malformed YAML ({exc.__class__.__name__}: {str(exc).splitlines()[0]})", path) from None


def dataset_dir(root: str | Path) -> Path:
    """The folder of a YOLO dataset given as its folder or as its .yaml file."""
    root = Path(root)
    return root.parent if root.is_file() else root


def yolo_class_names(root: str | Path) -> list[str]:
    """Class names of a YOLO dataset: `names` of data.yaml (or data.yml / dataset.yaml), else classes.txt."""
    root = Path(root)
    p = _yaml_file(root)
    if p is not None:
        data = _read_yaml(p)
        names = data.get("names") if isinstance(data, dict) else None
        if names is None:
            raise BenchError("no 'names' key (the class names)", p)
        out = _names_list(names, p)
        nc = data.get("nc")
        if nc is not None and nc != len(out):  # Ultralytics refuses this too: one of the two is wrong
            raise BenchError(f"nc is {nc!r} but names lists {len(out)} classes", p)
        return out
    root = dataset_dir(root)
    for p in (root / "classes.txt", root / "labels" / "classes.txt"):
        if p.is_file():
            names = [l.strip() for l in _read_text(p, "one class name per line").splitlines() if l.strip()]
            return _names_list(names, p)
    raise BenchError("no class names: expected data.yaml with 'names' or classes.txt", root)


# ---- splits -----------------------------------------------------------------------------------------------------
SPLIT_KEYS = ("train", "val", "test")


def _yaml_splits(root: Path) -> tuple[dict[str, list[Path]], Path | None]:
    """data.yaml's split entries, resolved to paths (not checked for existence), and the yaml's path."""
    yaml_path = _yaml_file(root)
    if yaml_path is None:
        return {}, None
    data = _read_yaml(yaml_path)
    if not isinstance(data, dict):
        return {}, yaml_path
    base = yaml_path.parent
    if isinstance(data.get("path"), str) and data["path"].strip():
        p = Path(data["path"]).expanduser()
        p = p if p.is_absolute() else base / p
        if p.is_dir():  # else: an Ultralytics-relative `path` from another machine; the yaml's folder it is
            base = p
    out = {}
    for key in SPLIT_KEYS:
        entry = data.get(key)
        if entry is None or entry == "":
            continue
        items = entry if isinstance(entry, list) else [entry]
        if not items or not all(isinstance(i, str) and i.strip() for i in items):
            raise BenchError(f"'{key}' must be a path or a list of paths, got {entry!r}", yaml_path)
        out[key] = [_resolve_entry(base, item.strip()) for item in items]
    return out, yaml_path


def _resolve_entry(base: Path, item: str) -> Path:
    p = Path(item).expanduser()
    if p.is_absolute():
        return p
    if not (base / p).exists() and item.startswith("../"):
        return base / item[3:]
    return base / p


def _layout_dir(root: Path, split: str) -> Path:
    return dataset_dir(root) / "images" / split


def _split_sources(root: Path, split: str) -> tuple[list[Path], str]:
    """Image sources of `split` (folders, .txt lists or image files) and how they were found (for errors)."""
    entries, yaml_path = _yaml_splits(root)
    if split in entries and all(p.exists() for p in entries[split]):
        return entries[split], f"'{split}' in {yaml_path.name}"
    if _layout_dir(root, split).is_dir():
        return [_layout_dir(root, split)], f"images/{split}/"
    if split in entries:
        raise missing_entry_error(split, entries[split], yaml_path)
    avail = ", ".join(yolo_splits(root)) or "none"
    raise BenchError(f"not a YOLO split: no images/{split}/ directory (available splits: {avail})",
                     dataset_dir(root))


def missing_entry_error(split: str, paths: list[Path], yaml_path: Path) -> BenchError:
    missing = next(p for p in paths if not p.exists())
    return BenchError(f"split '{split}': {missing} does not exist (and there is no images/{split}/ folder); fix "
                      f"the '{split}' entry or remove it", yaml_path)


def missing_entries(root: str | Path) -> dict[str, Path]:
    """data.yaml's split entries naming something that does not exist: split -> the first missing path. Such a
    split cannot be loaded (`check_entries`), or `images/<split>/` is read in its place, which `load_yolo` records
    as a problem for `bench data check`."""
    entries, _ = _yaml_splits(Path(root))
    return {k: next(p for p in ps if not p.exists()) for k, ps in entries.items() if not all(p.exists() for p in ps)}


def check_entries(root: str | Path) -> None:
    """Refuse a data.yaml naming a split that exists neither where it says nor as `images/<split>/`: loading the
    other splits alone would silently drop it (a missing `train` leaves a test-only dataset that checks clean)."""
    entries, yaml_path = _yaml_splits(Path(root))
    for k, ps in entries.items():
        if not all(p.exists() for p in ps) and not _layout_dir(Path(root), k).is_dir():
            raise missing_entry_error(k, ps, yaml_path)


def yolo_splits(root: str | Path) -> list[str]:
    """Splits that can be loaded: data.yaml's entries that exist, then the folders under `images/`."""
    root = Path(root)
    entries, _ = _yaml_splits(root)
    found = [k for k, paths in entries.items() if all(p.exists() for p in paths)]
    d = dataset_dir(root) / "images"
    if d.is_dir():
        found += sorted(p.name for p in d.iterdir() if p.is_dir() and p.name not in found)
    return found


def lone_export_split(root: str | Path, a: str, b: str) -> str | None:
    """The one split a data.yaml `save_yolo` wrote really holds, when its splits `a` and `b` read the same images
    (it names a lone split under every key Ultralytics wants: `train: images/train` and `val: images/train` for a
    lone train split, `train: images/test` for a lone test one): the folder's name, else None. A user's yaml naming
    one folder twice means what it says."""
    yaml_path = _yaml_file(Path(root))
    if yaml_path is None or not _read_text(yaml_path, "a YAML file").startswith(WRITTEN_BY):
        return None
    sources = [[os.path.realpath(p) for p in _split_sources(Path(root), s)[0]] for s in (a, b)]
    if sources[0] != sources[1] or len(sources[0]) != 1:
        return None
    return Path(sources[0][0]).name


def labels_dir(folder: Path) -> Path:
    """Ultralytics' rule: the last `images` folder of the path becomes `labels` (unchanged without one)."""
    parts = list(folder.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return folder


def label_path(image: Path) -> Path:
    """The label file of an image: in `labels_dir` of its folder, extension `.txt`."""
    return labels_dir(image.parent) / f"{image.stem}.txt"


def _listed_images(source: Path, log: ProblemLog) -> list[Path]:
    """Image files of one source: a folder (recursively, sorted), a .txt list (one path per line, relative to the
    list's folder) or one image file. Listed images that do not exist are counted and skipped."""
    if source.is_dir():
        return [source / rel for rel in _walk(source, is_image_file)]
    if source.suffix.lower() == ".txt":
        out = []
        for ln, line in enumerate(_read_text(source, "a list of image paths").splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            p = Path(line).expanduser()
            p = p if p.is_absolute() else source.parent / p
            if p.is_file():
                out.append(p)
            else:
                log.skip("listed_image_missing", f"{source.name}: line {ln}: {line}")
        return out
    if is_image_file(source.name):
        return [source]
    raise BenchError("a split entry must be a folder of images, a .txt list of images or an image file", source)


# ---- loading ------------------------------------------------------------------------------------------------
def _walk(top: Path, keep) -> list[str]:
    """Relative posix paths of the files under `top` accepted by `keep`, sorted."""
    out = []
    for dirpath, dirnames, files in os.walk(top):
        dirnames.sort()
        rel = os.path.relpath(dirpath, top)
        for f in files:
            if keep(f):
                out.append(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
    return sorted(out)


def _parse_label_file(path: Path, rel: str, width: int, height: int, ncls: int, log: ProblemLog) -> list[tuple]:
    out = []
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark (Windows editors) is not a number
    except UnicodeDecodeError:
        raise BenchError("not a text label file", path) from None
    for ln, line in enumerate(text.splitlines(), start=1):
        tok = line.split()
        if not tok:
            continue
        try:
            vals = [float(t) for t in tok]
        except ValueError:
            raise BenchError(f"line {ln}: expected numbers 'class cx cy w h', got {line.strip()!r}", path) from None
        cls = vals[0]
        if not math.isfinite(cls) or cls != int(cls) or cls < 0:  # (int() of nan / inf raises)
            raise BenchError(f"line {ln}: class must be a non-negative integer, got {tok[0]!r}", path)
        where = f"{rel}: line {ln}"
        if len(vals) == 5:
            cx, cy, w, h = vals[1:]
        elif len(vals) >= 7 and len(vals) % 2 == 1:  # segmentation polygon
            xs, ys = vals[1::2], vals[2::2]
            cx, cy, w, h = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)
            log.note("polygon_label", where)
        else:
            raise BenchError(f"line {ln}: expected 5 values 'class cx cy w h' (or a polygon), got {len(vals)}", path)
        if int(cls) >= ncls:
            log.skip("unknown_category", f"{where}: class {int(cls)} but only {ncls} names")
            continue
        box = clean_box((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height, width, height, log, where)
        if box is not None:
            out.append((int(cls), box))
    return out


def _label_beside_image(image: Path, label: Path, shown: str, root: Path, log: ProblemLog) -> None:
    """Count a `.txt` next to an image that has no label file where YOLO looks (`labels/...`): a Darknet-style
    layout whose boxes would otherwise vanish without a word (the image loads as background)."""
    beside = image.with_suffix(".txt")
    if beside != label and beside.is_file():
        rel = os.path.relpath(beside, dataset_dir(root)).replace(os.sep, "/")
        log.skip("label_beside_image", f"{rel}: ignored, the label of {image.name} is read from {shown}")


def _unique_images(sources: list[Path], log: ProblemLog) -> list[Path]:
    """The images of a split's sources in listed order, each once; a second listing (a list naming a file twice,
    overlapping folders) is counted as `duplicate_image_in_split`, as VOC's split files are."""
    files: dict[str, Path] = {}
    for src in sources:
        for path in _listed_images(src, log):
            key = os.path.normpath(path)
            if key in files:
                log.skip("duplicate_image_in_split", f"{src.name}: {path.name}")
            else:
                files[key] = path
    return list(files.values())


def _count_lost_labels(label: Path, where: str, log: ProblemLog) -> None:
    """The boxes of an image dropped as unreadable go with it: counted, so a conversion says so."""
    try:
        n = sum(1 for line in label.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())
    except OSError:
        return
    if n:
        log.skip("box_of_unreadable_image", where, n=n)


def load_yolo(root: str | Path, split: str, name: str = "") -> DetectionDataset:
    """One split of a YOLO dataset given as its folder or its .yaml file (see the module docstring)."""
    root = Path(root)
    sources, found_by = _split_sources(root, split)
    names = yolo_class_names(root)
    log = ProblemLog()
    missing = missing_entries(root).get(split)
    if missing is not None:
        log.fix("missing_split_entry", f"'{split}' names {missing}, which does not exist; read images/{split}/ instead")
    files = _unique_images(sources, log)
    if len(sources) == 1 and sources[0].is_dir():
        image_root = sources[0]
    else:
        image_root = Path(os.path.commonpath([str(p.parent) for p in files])) if files else dataset_dir(root)
    images, annotations = [], []
    labels_seen = set()
    for i, path in enumerate(files, start=1):
        rel = Path(os.path.relpath(path, image_root)).as_posix()
        try:
            width, height = image_size(path)
        except BenchError as exc:
            log.skip("unreadable_image", str(exc))
            _count_lost_labels(label_path(path), str(exc), log)
            continue
        images.append({"id": i, "file_name": rel, "width": width, "height": height})
        label = label_path(path)
        labels_seen.add(os.path.normpath(label))
        shown = os.path.relpath(label, dataset_dir(root)).replace(os.sep, "/")
        if not label.is_file():
            _label_beside_image(path, label, shown, root, log)
            continue
        for cls, box in _parse_label_file(label, shown, width, height, len(names), log):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": cls + 1, "bbox": box,
                                "area": float(box[2]) * float(box[3]), "iscrowd": 0, "ignore": 0})
    for src in sources:  # label files of a folder source that no image of the split uses
        lbl_dir = labels_dir(src) if src.is_dir() else None
        if lbl_dir is None or lbl_dir == src or not lbl_dir.is_dir():
            continue
        for rel in _walk(lbl_dir, lambda f: f.endswith(".txt")):
            if rel != "classes.txt" and os.path.normpath(lbl_dir / rel) not in labels_seen:
                log.skip("label_without_image", os.path.relpath(lbl_dir / rel, dataset_dir(root)).replace(os.sep, "/"))
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(names)]
    info = log.store({"format": "yolo", "split": split, "split_from": found_by})
    folder = dataset_dir(root)
    return DetectionDataset(images, annotations, categories, image_root=image_root,
                            name=name or f"{folder.name}/{split}", source=str(folder), info=info)


# ---- saving -------------------------------------------------------------------------------------------------
def _yaml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unwritable_yolo_names(names: list[str]) -> list[str]:
    """The class names a YOLO export would not read back as themselves: those VOC cannot carry either (white space
    at an end, control characters, line breaks: YAML tools strip or fold them) and any the data.yaml written for
    them does not give back."""
    bad = unwritable_class_names(names)
    for n in names:
        if n not in bad and yaml.safe_load(f"names:\n  0: {_yaml_str(str(n))}\n") != {"names": {0: str(n)}}:
            bad.append(n)
    return bad


def _export_names(ds: DetectionDataset, images: str) -> list[PurePosixPath]:
    """Each image's path in `images/<split>` (its label: the same path with .txt). Images that share a stem in
    one folder (`a.jpg`, `a.png`) would share one label file: the later ones are renamed `a__2.png`, ... (with
    `images='none'` the export places no image to rename, so it is refused, naming the pair)."""
    rels = [safe_relpath(img["file_name"]) for img in ds.images]
    taken: dict[str, PurePosixPath] = {}
    out = []
    for rel in rels:
        label = str(rel.with_suffix(".txt"))
        if label in taken:
            if images == "none":
                raise BenchError(f"images {taken[label]} and {rel} would share the label file {label} (YOLO finds "
                                 "a label by the image's name without extension): rename one, or export with "
                                 "--images symlink or copy, which renames the second")
            k = 2
            while str(rel.with_name(f"{rel.stem}__{k}.txt")) in taken:
                k += 1
            rel = rel.with_name(f"{rel.stem}__{k}{rel.suffix}")
            label = str(rel.with_suffix(".txt"))
        taken[label] = rel
        out.append(rel)
    return out


def _refuse_foreign_files(root: Path, split: str, rels: list[PurePosixPath], images: str) -> None:
    """A YOLO split is whatever its folders hold: label or image files of an earlier, different export left in
    `labels/<split>` / `images/<split>` would load as part of this one. Refuse to mix them in."""
    folders = [("labels", {str(r.with_suffix(".txt")) for r in rels}, lambda name: name.endswith(".txt"))]
    if images != "none":
        folders.append(("images", {str(r) for r in rels}, is_image_file))
    for kind, ours, counted in folders:
        top = root / kind / split
        if not top.is_dir():
            continue
        foreign = [rel for rel in _walk(top, counted) if rel not in ours]
        if foreign:
            raise BenchError(f"{kind}/{split} already holds {len(foreign)} file(s) this export does not write (e.g. "
                             f"{foreign[0]}): they would load as part of the split; convert into an empty folder",
                             root)


def save_yolo(ds: DetectionDataset, root: str | Path, split: str, images: str = "symlink",
              files: list | None = None) -> dict:
    """Write `ds` as a YOLO split (labels with 6 decimals, images placed by 'symlink', 'copy' or 'none') and
    (re)write data.yaml. YOLO has no ignore flag: ignored boxes (difficult / crowd) are left out, as the usual
    VOC->YOLO converters do, and counted in the returned summary. Class names the data.yaml cannot carry are
    refused; images sharing a stem get unique names (`_export_names`). `files` collects every path written."""
    root = Path(root)
    files = [] if files is None else files
    cats = sorted(ds.categories, key=lambda c: c["id"])
    index = {c["id"]: k for k, c in enumerate(cats)}
    names = [c["name"] for c in cats]
    refuse_unwritable_names("YOLO", unwritable_yolo_names(names))
    yaml_path = root / "data.yaml"
    if yaml_path.is_file() and yolo_class_names(root) != names:
        raise BenchError(f"data.yaml lists other class names than the dataset ({names})", yaml_path)

    rels = _export_names(ds, images)
    _refuse_foreign_files(root, split, rels, images)
    by_image = ds.annotations_by_image()
    written = boxes = dropped = missing = 0
    for img, rel in zip(ds.images, rels):
        W, H = float(img["width"]), float(img["height"])
        lines = []
        for a in by_image.get(img["id"], []):
            if a.get("ignore", 0):
                dropped += 1
                continue
            x, y, w, h = a["bbox"]
            lines.append(f"{index[a['category_id']]} {(x + w / 2) / W:.6f} {(y + h / 2) / H:.6f} "
                         f"{w / W:.6f} {h / H:.6f}\n")
        boxes += len(lines)
        files.append(atomic_write_text(root / "labels" / split / rel.with_suffix(".txt"), "".join(lines)))
        if not place_image(ds.image_path(img), root / "images" / split / rel, images):
            missing += 1
        elif images != "none":
            files.append(root / "images" / split / rel)
        written += 1

    splits = sorted(set(yolo_splits(root)) | {split})
    val = "val" if "val" in splits else ("test" if "test" in splits else split)
    keys = {"train": "train" if "train" in splits else split, "val": val}
    if "test" in splits:
        keys["test"] = "test"
    text = f"{WRITTEN_BY}; paths relative to this file's folder\n" + "".join(f"{k}: images/{v}\n" for k, v in keys.items())
    text += f"nc: {len(names)}\nnames:\n" + "".join(f"  {k}: {_yaml_str(n)}\n" for k, n in enumerate(names))
    files.append(atomic_write_text(yaml_path, text))
    renamed = sum(r != safe_relpath(img["file_name"]) for img, r in zip(ds.images, rels))
    return {"images": written, "boxes": boxes, "ignored_boxes_left_out": dropped, "missing_source_images": missing,
            "renamed_images": renamed}

# ---- the `yolo` entry of `formats.FORMATS` (path layouts, reading, writing, kind) -----------------------------------
def load_yolo_root(root: Path, name: str, keep_columns: bool = False) -> dict[str, DetectionDataset]:
    """A YOLO folder (or its yaml) as `train` and `test` (its `test` split, else `val`)."""
    check_entries(root)
    avail = yolo_splits(root)
    test = "test" if "test" in avail else ("val" if "val" in avail else None)
    pairs = [(k, s) for k, s in (("train", "train"), ("test", test)) if s in avail]
    if not pairs:
        raise BenchError(f"YOLO dataset has no train, val or test split (data.yaml entries or images/<split>/ "
                         f"folders; found: {', '.join(avail) or 'nothing'})", root)
    lone = lone_export_split(root, pairs[0][1], pairs[1][1]) if len(pairs) == 2 else None
    if lone is not None:  # our export of one split names it under several keys: only that split is there
        pairs = pairs[:1] if lone == "train" else pairs[1:]
    return {k: load_yolo(root, s, name=f"{name}/{k}") for k, s in pairs}


def _yolo_save(ds: DetectionDataset, dst: Path, split_name: str, images: str, files: list,
               state: dict) -> tuple[Path, dict]:
    return dst, save_yolo(ds, dst, split_name, images=images, files=files)


YOLO = DatasetFormat(
    "yolo", kind="yolo", read=load_yolo_root,
    probes=((RANK["file"], lambda p: p.is_file() and p.suffix.lower() in (".yaml", ".yml")),
            (RANK["layout"], lambda p: (p / "labels").is_dir() and (p / "images").is_dir()),
            # a data.yaml listing its splits (Roboflow: train/images, valid/images, ...)
            (RANK["listing"], lambda p: p.is_dir() and bool(yolo_splits(p)))),
    expects="a YOLO folder (images/ + labels/, or a data.yaml listing its splits) or its .yaml file",
    save=_yolo_save, check_names=lambda names: refuse_unwritable_names("YOLO", unwritable_yolo_names(names)),
    split_map={"train": "train", "test": "val"})
FORMATS.add("yolo", YOLO)
