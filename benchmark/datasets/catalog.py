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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import BenchError

from .coco import load_coco
from .core import DetectionDataset, same_categories
from .formats import FORMATS, by_scheme, detect_format, record_kind
from .shapes import ShapesConfig, cache_dir, load_shapes
from .voc import load_voc_parts

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


def _load_bccd() -> dict[str, DetectionDataset]:
    root = bccd_root()
    if root is None:
        raise BenchError("dataset 'bccd' not found: set NOISYBOX_BCCD to BCCD's VOC folder (the BCCD/ folder of "
                         "github.com/Shenggan/BCCD_Dataset) or place it at ../shared/datasets/bccd/BCCD")
    return FORMATS.get("voc").load(root, "bccd")


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
        return record_kind(same_categories(out), fmt.kind)
    return record_kind(load_voc_parts(wanted, name), fmt.kind)


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
