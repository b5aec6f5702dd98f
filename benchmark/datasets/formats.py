"""`FORMATS`: the dataset formats, each one entry saying how to find, read and write it and which recipe kind it is.

Why: the format that read a dataset is the one thing that knows what the data is; the recipe kind (image size,
SSD-Det's bag, ...) is declared with the format and recorded on every split its reader returns
(`DetectionDataset.kind`), so a COCO file under a folder named `voc...` is coco and a VOC folder named `coco_like`
is voc. `benchmark.config.dataset_kind` reads it; nothing looks at path text.

A format is one module plus its registration: `FORMATS.add(NAME, DatasetFormat(NAME, ...))` at the end of the
module (as `coco.py`, `voc.py`, `yolo.py` and `shapes.py` do), and the module in `FORMATS`'s built-in list below
(or, for a plug-in, the entry point `noisybox_bench.formats` naming its `DatasetFormat`).
`benchmark.datasets.load` detects and reads it; `bench data convert --to NAME` writes it where it has a `save`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import BenchError
from benchmark.registry import Registry

from .core import DetectionDataset

Splits = dict[str, DetectionDataset]


@dataclass(frozen=True)
class DatasetFormat:
    """One dataset format.

    - `kind`: the recipe kind of data in this format (`benchmark.config.DATASET_KINDS`).
    - `read(path, name, keep_columns) -> {"train": ds, "test": ds}` (either split may be missing) for a path one
      of its `probes` recognised; `name` is the dataset name the splits are called by.
    - `probes`: `(rank, test(path) -> bool)` pairs; every format's probes run in rank order (`RANK`) and the first
      that holds picks its format, so a cheap, sure test (a suffix, a marker folder) runs before a costly or vague
      one, and a probe that raises a `BenchError` about the path it claims does so only when its turn comes.
    - `expects`: what a path of this format holds, for the message when no format recognises a path.
    - `scheme` + `read_spec(spec, progress, keep_columns)`: specs `SCHEME:...` (`coco:TRAIN,TEST`, `shapes:...`).
    - `save(ds, dst, split_name, images, files, state) -> (path written, summary)`: one split into `dst` (summary:
      `images`, `boxes` and whatever the format could not keep); `files` collects the paths written, `state` is
      shared by the splits of one conversion. `check_names(class names)` refuses, before anything is written,
      names the format cannot hold. `split_file(dst, split_name)`: the one file a split goes to, for formats that
      write a file per split (a `dst` ending in `single_suffix` is then one split's file).
    - `split_map`: the suite's split (`train`, `test`) -> the format's own split name, as `save` writes it.
    """

    name: str
    kind: str
    read: Callable[..., Splits] | None = None
    probes: tuple[tuple[int, Callable[[Path], bool]], ...] = ()
    expects: str = ""
    scheme: str | None = None
    read_spec: Callable[..., Splits] | None = None
    save: Callable[..., tuple[Path, dict]] | None = None
    check_names: Callable[[list[str]], None] | None = None
    split_file: Callable[[Path, str], Path] | None = None
    single_suffix: str | None = None
    split_map: dict[str, str] = field(default_factory=dict)

    def load(self, path: Path, name: str, keep_columns: bool = False) -> Splits:
        """Read `path`; every split records this format's kind unless the reader recorded one."""
        if self.read is None:
            raise BenchError(f"dataset format {self.name!r} cannot be read from a path", path)
        return record_kind(self.read(path, name, keep_columns), self.kind)

    def load_spec(self, spec: str, progress: bool = True, keep_columns: bool = False) -> Splits:
        """Read a `SCHEME:...` spec; every split records this format's kind unless the reader recorded one."""
        if self.read_spec is None:
            raise BenchError(f"dataset format {self.name!r} reads no {self.name}:... spec")
        return record_kind(self.read_spec(spec, progress, keep_columns), self.kind)


# probe ranks, surest first: a file's suffix or a layout's own marker folder beats a folder that merely
# holds files another format also uses
RANK = {"file": 0, "marker": 10, "container": 15, "layout": 20, "files": 30, "listing": 40}

FORMATS: Registry[DatasetFormat] = Registry("dataset format", "noisybox_bench.formats",
                                            builtin_modules=tuple(f"benchmark.datasets.{m}" for m in
                                                                  ("coco", "voc", "yolo", "shapes")))


def record_kind(splits: Splits, kind: str) -> Splits:
    for ds in splits.values():
        if ds.kind is None:
            ds.kind = kind
    return splits


def kind_of(ds: DetectionDataset) -> str:
    """The recipe kind of a dataset: the one its reader recorded; for a dataset built in memory, that of the
    format its `info["format"]` names (what the VOC and YOLO readers write there), else coco."""
    if getattr(ds, "kind", None):
        return str(ds.kind)
    fmt = ds.info.get("format") if isinstance(ds.info, dict) else None
    if isinstance(fmt, str) and fmt in FORMATS:
        return FORMATS.get(fmt).kind
    return "coco"


def source_kind(ds: DetectionDataset) -> str | None:
    """The kind a file written from another format records (`bench data convert` keeps the source's `info.format`
    in a COCO json): that format's kind, or None."""
    fmt = ds.info.get("format") if isinstance(ds.info, dict) else None
    return FORMATS.get(fmt).kind if isinstance(fmt, str) and fmt in FORMATS else None


def by_scheme(scheme: str) -> DatasetFormat | None:
    """The format that reads specs `SCHEME:...`, if any."""
    for _, fmt in FORMATS.items():
        if fmt.scheme == scheme and fmt.read_spec is not None:
            return fmt
    return None


def detect_format(path: Path) -> DatasetFormat:
    """The format of the first probe, in rank order (ties: by format name), that recognises `path`; a one-line error
    naming what each format expects when none does."""
    probes = sorted((rank, name, test) for name, fmt in FORMATS.items() for rank, test in fmt.probes)
    for _, name, test in probes:
        if test(path):
            return FORMATS.get(name)
    expects = [fmt.expects for _, fmt in FORMATS.items() if fmt.probes and fmt.expects]
    raise BenchError("cannot tell the dataset format: expected " + _one_of(expects), path)


def _one_of(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def writable() -> list[str]:
    """Names of the formats `bench data convert --to` can write."""
    return [name for name, fmt in FORMATS.items() if fmt.save is not None]
