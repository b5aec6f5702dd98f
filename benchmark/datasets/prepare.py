"""`bench data prepare NAME`: VOC and COCO from their official archives into the data root, checked and stamped.

The catalog data file (`sources.json`, or another one with the same layout: tests pass a small one) lists
- `archives`: file name -> url, size, md5;
- `parts`: what one or more archives give once extracted (a VOC year's split, a COCO split) and the image and box
  counts that part must have;
- `datasets`: catalog name -> the parts (and VOC split) of its `train` and `test` splits.

`prepare` fetches each missing archive (resumable, checked: `benchmark.download`) or takes it from `--from DIR`,
extracts it safely (no member may leave the target folder), counts images and boxes against the part's figures
and records the part in `ROOT/prepared.json`. A part found already extracted in `--from DIR` (an existing
`VOCdevkit/`, a COCO folder) is checked and recorded where it is: nothing is copied or changed there. A second call
finds every part recorded and does nothing.

The data root is `--root`, else `$NOISYBOX_DATA`, else `~/.cache/noisybox/data`; `load('voc2007')` reads the same
stamp, so a prepared dataset is found by name.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from benchmark.errors import BenchError
from benchmark.io import read_json, write_json

SOURCES = Path(__file__).with_name("sources.json")
STAMP = "prepared.json"
DOWNLOADS = "downloads"


def data_root(root: str | Path | None = None) -> Path:
    """`root`, else `$NOISYBOX_DATA`, else `~/.cache/noisybox/data`."""
    if root is None:
        root = os.environ.get("NOISYBOX_DATA") or Path.home() / ".cache" / "noisybox" / "data"
    return Path(root).expanduser().resolve()


def load_sources(path: str | Path | None = None) -> dict:
    src = read_json(Path(path) if path else SOURCES)
    for key in ("archives", "parts", "datasets"):
        if not isinstance(src.get(key), dict):
            raise BenchError(f"catalog data file has no {key!r} table", path or SOURCES)
    return src


def read_stamp(root: Path) -> dict:
    path = root / STAMP
    if not path.is_file():
        return {"schema": 1, "parts": {}}
    stamp = read_json(path)
    if not isinstance(stamp, dict) or not isinstance(stamp.get("parts"), dict):
        raise BenchError("not a prepared.json written by `bench data prepare`", path)
    return stamp


def dataset_parts(sources: dict, name: str, only: str | None = None) -> list[str]:
    """The parts dataset `name` needs (for split `only`: 'train' or 'test'), in order, each once."""
    if name not in sources["datasets"]:
        raise BenchError(f"unknown dataset {name!r} for `bench data prepare` (known: {', '.join(sources['datasets'])})")
    entry = sources["datasets"][name]
    splits = [only] if only else ["train", "test"]
    out: list[str] = []
    for split in splits:
        for part, _ in entry[split]:
            if part not in out:
                out.append(part)
    return out


def part_location(stamp: dict, part: str) -> Path | None:
    """Where a prepared part lives (None when it is not recorded or its folder is gone)."""
    rec = stamp["parts"].get(part)
    if not rec:
        return None
    loc = Path(rec["location"])
    return loc if loc.is_dir() else None


def status(name: str, root: str | Path | None = None, sources: dict | None = None) -> dict:
    """{'prepared': [splits], 'missing': [splits], 'location': common folder or None, 'images': bool}."""
    sources = sources or load_sources()
    root = data_root(root)
    stamp = read_stamp(root) if (root / STAMP).is_file() else {"parts": {}}
    out = {"prepared": [], "missing": [], "locations": [], "images": True}
    for split in ("train", "test"):
        parts = dataset_parts(sources, name, split)
        locs = [part_location(stamp, p) for p in parts]
        if all(locs):
            out["prepared"].append(split)
            out["locations"] += [str(l) for l in locs if str(l) not in out["locations"]]
            out["images"] &= all(stamp["parts"][p].get("with_images", True) for p in parts)
        else:
            out["missing"].append(split)
    return out


# ---- archives -----------------------------------------------------------------------------------------------
def _safe_target(dest: Path, member: str) -> Path:
    """`dest / member` if that stays inside `dest`; a member that would leave it (absolute, `..`) is refused."""
    pure = PurePosixPath(member.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise BenchError(f"archive member {member!r} would be written outside {dest}; refusing to extract")
    return dest / Path(*pure.parts) if pure.parts else dest


def extract(archive: Path, dest: Path, progress: bool = True) -> None:
    """Extract a tar or zip into `dest`: regular files and folders only, none outside `dest` (links, devices and
    path tricks are refused, as Python's tarfile `data` filter does)."""
    from tqdm import tqdm

    dest.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=archive.stat().st_size, desc=f"extracting {archive.name}", unit="B", unit_scale=True,
               unit_divisor=1024, disable=not progress, leave=False)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    target = _safe_target(dest, info.filename)
                    mode = (info.external_attr >> 16) & 0o170000
                    if mode == 0o120000:  # a symbolic link stored in the zip
                        raise BenchError(f"archive member {info.filename!r} is a link; refusing to extract", archive)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    bar.update(info.compress_size)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for m in tf:
                    _safe_target(dest, m.name)
                    if not (m.isfile() or m.isdir()):
                        raise BenchError(f"archive member {m.name!r} is not a file or folder; refusing to extract",
                                         archive)
                    if hasattr(tarfile, "data_filter"):
                        tf.extract(m, dest, filter="data")
                    else:  # Python without extraction filters: the checks above are the filter
                        tf.extract(m, dest)
                    bar.update(m.size)
        else:
            raise BenchError("not a tar or zip archive", archive)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise BenchError(f"cannot extract ({type(exc).__name__}: {exc}); the archive is damaged", archive) from None
    except OSError as exc:  # a full disk, a read-only folder: the archive is kept, a rerun extracts it again
        raise BenchError(f"cannot extract {archive.name} ({exc.strerror or exc}); free space or fix the folder and "
                         "rerun", exc.filename or dest) from None
    finally:
        bar.close()


# ---- counts -------------------------------------------------------------------------------------------------
def count_part(spec: dict, location: Path, with_images: bool) -> dict:
    """{'images': n, 'boxes': n} of an extracted part, read from its annotations; images listed but missing on
    disk are an error when images are expected."""
    if spec["format"] == "voc":
        return _count_voc(location, spec["split"], with_images)
    return _count_coco(location / spec["annotations"], location / spec["image_dir"], with_images)


def _count_voc(root: Path, split: str, with_images: bool) -> dict:
    set_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not set_file.is_file():
        raise BenchError(f"split list {split}.txt not found after extraction", set_file)
    ids = [line.split()[0] for line in set_file.read_text().splitlines() if line.strip()]
    images = set(os.listdir(root / "JPEGImages")) if with_images and (root / "JPEGImages").is_dir() else set()
    boxes = 0
    for stem in ids:
        xml = root / "Annotations" / f"{stem}.xml"
        try:
            boxes += len(ET.parse(xml).getroot().findall("object"))
        except (OSError, ET.ParseError) as exc:
            raise BenchError(f"unreadable annotation ({type(exc).__name__})", xml) from None
        if with_images and f"{stem}.jpg" not in images:
            raise BenchError(f"image {stem}.jpg listed in {split}.txt is missing", root / "JPEGImages")
    return {"images": len(ids), "boxes": boxes}


def _count_coco(ann: Path, image_dir: Path, with_images: bool) -> dict:
    if not ann.is_file():
        raise BenchError("annotation file not found after extraction", ann)
    data = read_json(ann)
    imgs, anns = data.get("images") or [], data.get("annotations") or []
    if with_images:
        present = set(os.listdir(image_dir)) if image_dir.is_dir() else set()
        missing = [i["file_name"] for i in imgs if i["file_name"] not in present]
        if missing:
            raise BenchError(f"{len(missing)} images listed in {ann.name} are missing (e.g. {missing[0]})", image_dir)
    return {"images": len(imgs), "boxes": len(anns)}


def check_counts(part: str, spec: dict, got: dict, where: Path) -> None:
    for key in ("images", "boxes"):
        want = spec.get(key)
        if want is not None and got[key] != want:
            raise BenchError(f"{part}: {got[key]} {key}, expected {want}; the extracted data is incomplete or not "
                             "the official release", where)


# ---- prepare ------------------------------------------------------------------------------------------------
def _extracted_in(src: Path, spec: dict) -> Path | None:
    """An already extracted copy of a part inside `src` (a VOCdevkit, VOC2007 itself, a COCO folder)."""
    rel = PurePosixPath(spec["dir"])
    cands = [src / Path(*rel.parts), src / rel.name, src]
    if spec["format"] == "coco":
        cands += [src / "coco"]
    for c in cands:
        if spec["format"] == "voc" and (c / "ImageSets" / "Main" / f"{spec['split']}.txt").is_file() \
                and (c / "Annotations").is_dir():
            return c
        if spec["format"] == "coco" and (c / spec["annotations"]).is_file():
            return c
    return None


def prepare(name: str, root: str | Path | None = None, source_dir: str | Path | None = None,
            only: str | None = None, images: bool = True, mirror: str | None = None, keep_archives: bool = False,
            sources: dict | None = None, progress: bool = True, retries: int = 3, backoff: float = 2.0,
            echo: Callable[[str], None] = print) -> dict:
    """Make dataset `name` ready under the data root; returns the updated stamp. See the module docstring."""
    from benchmark.download import DownloadRefused, check_file, download

    sources = sources or load_sources()
    if only not in (None, "train", "test"):
        raise BenchError(f"--only must be train or test, got {only!r}")
    parts = dataset_parts(sources, name, only)
    if not images and not any(sources["parts"][p].get("image_archives") for p in parts):
        raise BenchError(f"--no-images: the archives of {name!r} hold images and annotations together (it applies "
                         "to COCO, whose annotations come in their own zip)")
    root = data_root(root)
    src = Path(source_dir).expanduser().resolve() if source_dir else None
    if src is not None and not src.is_dir():
        raise BenchError("--from: folder not found", src)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create the data root ({exc.strerror or exc}); pass --root DIR", root) from None
    stamp = read_stamp(root)
    todo = []
    for p in parts:
        rec = stamp["parts"].get(p)
        if part_location(stamp, p) is not None and (rec.get("with_images", True) or not images):
            continue
        todo.append(p)
    if not todo:
        echo(f"{name}: already prepared in {root} (nothing to do)")
        return stamp

    extracted: set[str] = set()  # archives extracted in this call (COCO's annotation zip serves two parts)
    fetched: list[Path] = []
    for p in todo:
        spec = sources["parts"][p]
        in_place = _extracted_in(src, spec) if src is not None else None
        archives = list(spec["archives"]) + (list(spec.get("image_archives") or []) if images else [])
        ours = root / Path(*PurePosixPath(spec["dir"]).parts)
        rec = stamp["parts"].get(p)
        if images and part_location(stamp, p) == ours and not rec.get("with_images", True):
            archives = list(spec.get("image_archives") or [])  # our annotations are there: add the images
        if in_place is not None and not _has_archives(src, archives):  # archives there win: they are checked
            location = in_place
            echo(f"{p}: using the extracted copy in {location}")
        else:
            for a in archives:
                if a in extracted:
                    continue
                meta = sources["archives"][a]
                if src is not None:
                    path = src / a
                    if not path.is_file():
                        raise BenchError(f"{a} is not in this folder (nor an extracted {spec['dir']}); fetch it from "
                                         f"{meta['url']}", src)
                    echo(f"{a}: checking")
                    check_file(path, meta.get("size"), meta.get("md5"), progress=progress)
                else:
                    urls = [f"{mirror.rstrip('/')}/{a}"] if mirror else [meta["url"], *meta.get("alternates", [])]
                    path = root / DOWNLOADS / a
                    if not path.is_file():
                        hint = (f"pass --mirror URL (a folder with the same file names) or fetch {a} by hand and "
                                f"run `bench data prepare {name} --from DIR`")
                        for i, url in enumerate(urls):
                            echo(f"{a}: downloading from {url}")
                            try:
                                download(url, path, meta.get("size"), meta.get("md5"), progress=progress,
                                         retries=retries, backoff=backoff, hint=hint)
                                break
                            except DownloadRefused as exc:
                                if i == len(urls) - 1:
                                    raise
                                echo(f"{a}: {exc.reason}; trying {urls[i + 1]}")
                    else:
                        check_file(path, meta.get("size"), meta.get("md5"), progress=progress)
                    fetched.append(path)
                extract(path, root / spec["extract_to"], progress=progress)
                extracted.add(a)
            location = ours
        echo(f"{p}: counting images and boxes in {location}")
        got = count_part(spec, location, images)
        check_counts(p, spec, got, location)
        used = list(spec["archives"]) + (list(spec.get("image_archives") or []) if images else [])
        stamp["parts"][p] = {"location": str(location), "with_images": images, **got, "time": time.time(),
                             "archives": {a: sources["archives"][a].get("md5") for a in used}}
        write_json(root / STAMP, stamp, indent=True)
        echo(f"{p}: {got['images']} images, {got['boxes']} boxes in {location}")
    if not keep_archives:
        for path in fetched:  # ours (downloaded into ROOT/downloads): the extracted copy is checked and recorded
            path.unlink(missing_ok=True)
    echo(f"{name}: prepared in {root}")
    return stamp


def _has_archives(src: Path, archives: list[str]) -> bool:
    return all((src / a).is_file() for a in archives)
