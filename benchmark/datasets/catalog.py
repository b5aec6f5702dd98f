"""`load(spec)`: one entry point from a dataset name or path to its `train` and `test` splits.

A spec is
- a catalog name: `shapes` (default synthetic set), `shapes-mini` (tiny, for tests), `bccd` (real, VOC), and the
  datasets `bench data prepare` makes: `voc2007`, `voc2012`, `voc0712` (07+12 trainval / 07 test), `coco2017`
  (found through `ROOT/prepared.json`, ROOT = `$NOISYBOX_DATA` or `~/.cache/noisybox/data`: `prepare.data_root`);
- `shapes:train=N,val=N,size=PX,seed=S` (or `train_seed=` / `val_seed=`) for another synthetic set;
- a path whose layout tells the format: a COCO json file, a folder of COCO jsons (`train.json` + `val.json` /
  `test.json`, or `annotations/instances_{train,val}*.json`), a VOC root (`Annotations/`), a `VOCdevkit/` holding
  `VOC2007/` and/or `VOC2012/` (both: the 07+12 union, as `voc0712`), a YOLO root (`images/` + `labels/`);
- `coco:TRAIN.json,TEST.json`.

Split names are always `train` and `test`: VOC `trainval` (else `train`) -> train and `test` (else `val`) -> test;
YOLO and COCO folders `train` -> train and `test` (else `val`) -> test; shapes `train`/`val` -> train/test. A
single COCO file is the split its name says (`..train..` -> train, `..val..`/`..test..` -> test, its sibling
found by swapping the word); a file whose name says neither is returned as `train` alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import BenchError

from .coco import load_coco, save_coco
from .core import DetectionDataset
from .formats import FORMATS, RANK, DatasetFormat, by_scheme, detect_format, record_kind, source_kind
from .problems import UNCLIPPED_BOXES
from .shapes import ShapesConfig, cache_dir, ensure_shapes
from .voc import LEGACY_DRAW_SLOTS, load_voc, refuse_unwritable_names, save_voc, unwritable_class_names, voc_splits
from .yolo import check_entries, load_yolo, lone_export_split, save_yolo, unwritable_yolo_names, yolo_splits

REPO = Path(__file__).resolve().parents[2]
BCCD_RELATIVE = Path("..") / "shared" / "datasets" / "bccd" / "BCCD"


def bccd_root() -> Path | None:
    """BCCD's VOC folder: `$NOISYBOX_BCCD`, else ../shared/datasets/bccd/BCCD relative to the working directory,
    else relative to the repository."""
    env = os.environ.get("NOISYBOX_BCCD")
    candidates = [Path(env).expanduser()] if env else []
    candidates += [Path.cwd() / BCCD_RELATIVE, REPO / BCCD_RELATIVE]
    for c in candidates:
        if (c / "Annotations").is_dir():
            return c.resolve()
    return None


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    locate: Callable[[], tuple[Path | None, str]]  # -> (location, status)
    load: Callable[..., dict[str, DetectionDataset]]  # (progress=True) -> splits


def _shapes_location(cfg: ShapesConfig) -> tuple[Path, str]:
    path = cache_dir() / cfg.key()
    return path, ("cached" if (path / "val.json").is_file() else "generated on first use")


def _bccd_location() -> tuple[Path | None, str]:
    root = bccd_root()
    return (root, "found") if root else (None, "not found: set NOISYBOX_BCCD or place ../shared/datasets/bccd/BCCD")


SHAPES_MINI = ShapesConfig(train=64, val=32)


def _prepared_location(name: str) -> tuple[Path | None, str]:
    from .prepare import data_root, status

    try:
        st = status(name)
    except BenchError as exc:  # e.g. an unreadable prepared.json: `bench data ls` still lists the rest
        return None, f"unknown: {exc}"
    where = ", ".join(st["locations"]) or None
    if not st["prepared"]:
        return None, f"not prepared: bench data prepare {name} (data root {data_root()})"
    if st["missing"]:
        return where, f"prepared: {', '.join(st['prepared'])} only (bench data prepare {name} for the rest)"
    return where, "prepared" + ("" if st["images"] else " (annotations only, --no-images)")


def _prepared_entry(name: str, description: str) -> CatalogEntry:
    return CatalogEntry(name, description, lambda: _prepared_location(name),
                        lambda progress=True: load_prepared(name))


def _prepared_entries() -> dict[str, CatalogEntry]:
    from .prepare import load_sources

    return {n: _prepared_entry(n, d["description"]) for n, d in load_sources()["datasets"].items()}

CATALOG: dict[str, CatalogEntry] = {
    "shapes": CatalogEntry("shapes", "synthetic shapes, 128 px, 4 classes, 1500 train / 300 test (built in)",
                           lambda: _shapes_location(ShapesConfig()),
                           lambda progress=True: load_shapes(ShapesConfig(), "shapes", progress)),
    "shapes-mini": CatalogEntry("shapes-mini", "synthetic shapes, 64 train / 32 test, for quick tests",
                                lambda: _shapes_location(SHAPES_MINI),
                                lambda progress=True: load_shapes(SHAPES_MINI, "shapes-mini", progress)),
    "bccd": CatalogEntry("bccd", "BCCD blood cells (VOC), 3 classes, 292 trainval / 72 test",
                         _bccd_location, lambda progress=True: _load_bccd()),
    **_prepared_entries(),
}


def list_datasets() -> list[dict]:
    """The known datasets with where they are (or will be) and whether they are available."""
    out = []
    for e in CATALOG.values():
        loc, status = e.locate()
        out.append({"name": e.name, "description": e.description, "location": None if loc is None else str(loc),
                    "status": status})
    return out


# ---- per-source loaders -------------------------------------------------------------------------------------
def load_shapes(cfg: ShapesConfig | None = None, name: str = "shapes",
                progress: bool = True) -> dict[str, DetectionDataset]:
    root = ensure_shapes(cfg or ShapesConfig(), progress=progress)
    return record_kind({"train": load_coco(root / "train.json", root / "images", name=f"{name}/train"),
                        "test": load_coco(root / "val.json", root / "images", name=f"{name}/test")}, "shapes")


def parse_shapes_spec(spec: str) -> ShapesConfig:
    """`shapes:train=200,val=50,size=96,seed=3` -> ShapesConfig (`seed=S` sets train_seed=S, val_seed=S+1)."""
    fields, body = {}, spec.split(":", 1)[1]
    for item in filter(None, (s.strip() for s in body.split(","))):
        key, _, val = item.partition("=")
        key = {"test": "val", "test_seed": "val_seed"}.get(key.strip(), key.strip())
        if key not in ("train", "val", "size", "seed", "train_seed", "val_seed") or not val.strip().lstrip("-").isdigit():
            raise BenchError(f"bad shapes option {item!r} in {spec!r} (use train=N,val=N,size=PX,seed=S)")
        fields[key] = int(val)
    if "seed" in fields:
        seed = fields.pop("seed")
        fields.setdefault("train_seed", seed)
        fields.setdefault("val_seed", seed + 1)
    return ShapesConfig(**fields).validate()


def _load_bccd() -> dict[str, DetectionDataset]:
    root = bccd_root()
    if root is None:
        raise BenchError("dataset 'bccd' not found: set NOISYBOX_BCCD to BCCD's VOC folder (the BCCD/ folder of "
                         "github.com/Shenggan/BCCD_Dataset) or place it at ../shared/datasets/bccd/BCCD")
    return FORMATS.get("voc").load(root, "bccd")


def _align_by_name(splits: dict[str, DetectionDataset]) -> dict[str, DetectionDataset]:
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


def _load_voc_root(root: Path, name: str) -> dict[str, DetectionDataset]:
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
    return _align_by_name({k: load_voc(root, s, name=f"{name}/{k}") for k, s in pairs})


def _concat(parts: list[DetectionDataset], name: str) -> DetectionDataset:
    """One dataset from several VOC splits (the 07+12 union): categories aligned by name, image ids of each part
    shifted past the previous part's largest, annotation ids renumbered, file names relative to the parts' common
    folder. The order is the parts' order (mmdet's ConcatDataset order), which per-box noise draws follow."""
    if len(parts) == 1:
        return parts[0]
    parts = list(_align_by_name(dict(enumerate(parts))).values())
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


def _load_voc_parts(splits: dict[str, list[tuple[Path, str]]], name: str) -> dict[str, DetectionDataset]:
    """{split: [(VOC year folder, VOC split), ...]} -> aligned splits, several parts concatenated (`_concat`)."""
    out = {k: _concat([load_voc(root, s, name=f"{name}/{k}") for root, s in parts], f"{name}/{k}")
           for k, parts in splits.items() if parts}
    return _align_by_name(out)


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


def _load_voc_devkit(path: Path) -> dict[str, DetectionDataset]:
    """A `VOCdevkit/`: one year loads as that year's folder; 2007 + 2012 as the 07+12 union (train: 2007 trainval
    + 2012 trainval, test: 2007 test), as `voc0712` does."""
    years = voc_devkit_years(path)
    name = voc_devkit_name(path) or path.name
    if len(years) == 1:
        return _load_voc_root(next(iter(years.values())), name)
    if not {"2007", "2012"} <= set(years):
        raise BenchError(f"VOCdevkit with years {', '.join(years)}: only one year, or 2007 + 2012 (the 07+12 "
                         "union), is understood; point at one VOC<year> folder instead", path)
    v07, v12 = years["2007"], years["2012"]
    test = [(v07, "test")] if "test" in voc_splits(v07) else []
    return _load_voc_parts({"train": [(v07, "trainval"), (v12, "trainval")], "test": test}, name)


def load_prepared(name: str, root: str | Path | None = None) -> dict[str, DetectionDataset]:
    """A dataset `bench data prepare` made, from the stamp in the data root: the splits that are prepared."""
    from .prepare import data_root, load_sources, read_stamp

    sources = load_sources()
    root = data_root(root)
    stamp = read_stamp(root)
    entry = sources["datasets"][name]
    wanted: dict[str, list[tuple[Path, str | None]]] = {}
    for split in ("train", "test"):
        locs = [(stamp["parts"].get(p) or {}).get("location") for p, _ in entry[split]]
        if all(loc and Path(loc).is_dir() for loc in locs):
            wanted[split] = [(Path(loc), vs) for loc, (_, vs) in zip(locs, entry[split])]
    if not wanted:
        raise BenchError(f"dataset {name!r} is not prepared in {root}: run `bench data prepare {name}` (with --from "
                         "DIR for archives fetched by hand), or set NOISYBOX_DATA to the folder it was prepared in")
    part_of = {split: entry[split][0][0] for split in wanted}
    fmt = FORMATS.get(sources["parts"][part_of[next(iter(wanted))]]["format"])
    if fmt.name == "coco":
        out = {}
        for split, [(loc, _)] in wanted.items():
            spec = sources["parts"][part_of[split]]
            out[split] = load_coco(loc / spec["annotations"], loc / spec["image_dir"], name=f"{name}/{split}")
        return record_kind(_same_categories(out), fmt.kind)
    return record_kind(_load_voc_parts(wanted, name), fmt.kind)


def _load_yolo_root(root: Path, name: str, keep_columns: bool = False) -> dict[str, DetectionDataset]:
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


def _same_categories(splits: dict[str, DetectionDataset]) -> dict[str, DetectionDataset]:
    if "train" in splits and "test" in splits:
        a = {c["id"]: c["name"] for c in splits["train"].categories}
        b = {c["id"]: c["name"] for c in splits["test"].categories}
        if a != b:
            raise BenchError(f"categories differ from the train split's ({splits['train'].source})",
                             splits["test"].source)
    return splits


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
    return _same_categories(out)


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


# ---- the built-in formats (`formats.FORMATS`) -----------------------------------------------------------------
def _coco_detect(path: Path) -> int | None:
    if path.is_file():
        return RANK["file"] if path.suffix.lower() == ".json" else None
    try:
        return RANK["files"] if _coco_dir_files(path) else None
    except BenchError:  # e.g. two train files: it is a COCO folder, and reading it says which files clash
        return RANK["files"]


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
    return _coco_kind(_same_categories({k: load_coco(p, name=f"{name}/{k}", keep_columns=keep_columns)
                                        for k, p in sorted(files.items(), reverse=True)}))


def _coco_read_spec(spec: str, progress: bool = True, keep_columns: bool = False) -> dict[str, DetectionDataset]:
    files = [f for f in spec[5:].split(",") if f]
    if len(files) != 2:
        raise BenchError(f"bad dataset spec {spec!r}: use coco:TRAIN.json,TEST.json")
    return _coco_kind(_same_categories({"train": load_coco(files[0], name="train", keep_columns=keep_columns),
                                        "test": load_coco(files[1], name="test", keep_columns=keep_columns)}))


def _coco_split_file(dst: Path, split_name: str) -> Path:
    return dst if dst.suffix.lower() == ".json" else dst / f"{split_name}.json"


def _coco_save(ds: DetectionDataset, dst: Path, split_name: str, images: str, files: list,
               state: dict) -> tuple[Path, dict]:
    out = _coco_split_file(dst, split_name)
    files.append(save_coco(ds, out))
    return out, {"images": len(ds.images), "boxes": len(ds.annotations)}


def _voc_detect(path: Path) -> int | None:
    if (path / "Annotations").is_dir():
        return RANK["marker"]
    return RANK["container"] if voc_devkit_years(path) else None


def _voc_read(path: Path, name: str, keep_columns: bool = False) -> dict[str, DetectionDataset]:
    return _load_voc_root(path, name) if (path / "Annotations").is_dir() else _load_voc_devkit(path)


def _voc_save(ds: DetectionDataset, dst: Path, split_name: str, images: str, files: list,
              state: dict) -> tuple[Path, dict]:
    # one Annotations/ folder for all splits: `written` (VOC image id -> content) spans the conversion
    summary = save_voc(ds, dst, split_name, images=images, written=state.setdefault("voc_ids", {}), files=files)
    used = {a["category_id"] for a in ds.annotations}
    lost = sorted(c["name"] for c in ds.categories if c["id"] not in used)
    if lost:  # VOC has no class list: a class exists only through its objects
        summary["classes without boxes (VOC cannot record them)"] = ", ".join(lost)
    return dst, summary


def _yolo_detect(path: Path) -> int | None:
    if path.is_file():
        return RANK["file"] if path.suffix.lower() in (".yaml", ".yml") else None
    if (path / "labels").is_dir() and (path / "images").is_dir():
        return RANK["layout"]
    try:
        return RANK["listing"] if yolo_splits(path) else None  # a data.yaml listing its splits (Roboflow)
    except BenchError:  # a data.yaml that does not parse: reading it says why, if no other format claims the folder
        return RANK["listing"]


def _yolo_save(ds: DetectionDataset, dst: Path, split_name: str, images: str, files: list,
               state: dict) -> tuple[Path, dict]:
    return dst, save_yolo(ds, dst, split_name, images=images, files=files)


def _shapes_read_spec(spec: str, progress: bool = True, keep_columns: bool = False) -> dict[str, DetectionDataset]:
    return load_shapes(parse_shapes_spec(spec), name=spec, progress=progress)


COCO = DatasetFormat(
    "coco", kind="coco", read=_coco_read, detect=_coco_detect, scheme="coco", read_spec=_coco_read_spec,
    expects="a COCO .json file or a folder of COCO jsons (train.json, val.json, annotations/instances_*.json)",
    save=_coco_save, split_file=_coco_split_file, single_suffix=".json", split_map={"train": "train", "test": "test"})
VOC = DatasetFormat(
    "voc", kind="voc", read=_voc_read, detect=_voc_detect,
    expects="a VOC folder (Annotations/, or a VOCdevkit/ holding VOC<year>/ folders)",
    save=_voc_save, check_names=lambda names: refuse_unwritable_names("VOC", unwritable_class_names(names)),
    split_map={"train": "trainval", "test": "test"})
YOLO = DatasetFormat(
    "yolo", kind="yolo", read=_load_yolo_root, detect=_yolo_detect,
    expects="a YOLO folder (images/ + labels/, or a data.yaml listing its splits) or its .yaml file",
    save=_yolo_save, check_names=lambda names: refuse_unwritable_names("YOLO", unwritable_yolo_names(names)),
    split_map={"train": "train", "test": "val"})
SHAPES = DatasetFormat("shapes", kind="shapes", scheme="shapes", read_spec=_shapes_read_spec,
                       split_map={"train": "train", "test": "val"})
for _fmt in (COCO, VOC, YOLO, SHAPES):
    FORMATS.add(_fmt.name, _fmt)


def load(spec: str | Path, progress: bool = True, keep_columns: bool = False) -> dict[str, DetectionDataset]:
    """Load a dataset by catalog name, `SCHEME:...` spec (`shapes:...`, `coco:TRAIN,TEST`) or path; splits `train`
    and `test`, each recording its format's kind. `progress`: a bar while a `shapes` dataset is generated on first
    use. `keep_columns`: COCO json datasets keep their validated columns for the noise step (see `load_coco`)."""
    spec = str(spec)
    if spec in CATALOG:
        return CATALOG[spec].load(progress=progress)
    scheme, sep, _ = spec.partition(":")
    fmt = by_scheme(scheme) if sep else None
    if fmt is not None:
        return fmt.load_spec(spec, progress=progress, keep_columns=keep_columns)
    path = Path(spec).expanduser()
    if not path.exists():
        schemes = sorted(f"{f.scheme}:" for _, f in FORMATS.items() if f.scheme and f.read_spec)
        raise BenchError(f"unknown dataset {spec!r}: not a catalog name ({', '.join(CATALOG)}), "
                         f"not a {'/'.join(schemes)} spec, and no such file or folder")
    name = path.resolve().parent.name if path.suffix.lower() in (".yaml", ".yml") else (
        path.stem if path.is_file() else path.resolve().name)
    return detect_format(path).load(path, name, keep_columns)
