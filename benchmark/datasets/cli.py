"""`bench data ls | check | convert`."""

from __future__ import annotations

from pathlib import Path

import click

from benchmark.errors import BenchError
from benchmark.io import dumps_json

from .formats import FORMATS, writable


@click.group()
def data():
    """List, check, convert and prepare datasets."""


@data.command("ls")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def ls_cmd(as_json):
    """Known datasets and where they are."""
    from .catalog import list_datasets

    rows = list_datasets()
    if as_json:
        click.echo(dumps_json(rows, indent=True).decode())
        return
    w = max(len(r["name"]) for r in rows)
    for r in rows:
        click.echo(f"{r['name']:<{w}}  {r['description']}")
        click.echo(f"{'':<{w}}  {r['status']}" + (f": {r['location']}" if r["location"] else ""))


@data.command("prepare")
@click.argument("name")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Data root [default: $NOISYBOX_DATA, else ~/.cache/noisybox/data]; `bench run -d NAME` looks "
                   "there, so set NOISYBOX_DATA when you pass another one.")
@click.option("--from", "source_dir", type=click.Path(file_okay=False), default=None,
              help="Folder with the archives fetched by hand (checked, then extracted), or an already extracted "
                   "VOCdevkit / COCO folder (checked and used where it is).")
@click.option("--only", type=click.Choice(["train", "test"]), default=None, help="Prepare one split only.")
@click.option("--no-images", is_flag=True, help="COCO: annotations only (the 250 MB zip, not the 19 GB of images).")
@click.option("--mirror", default=None, metavar="URL",
              help="Fetch the archives from URL/<archive name> instead of the official hosts.")
@click.option("--keep-archives", is_flag=True, help="Keep downloaded archives after extraction.")
@click.option("--catalog", "catalog_file", type=click.Path(dir_okay=False), default=None, hidden=True,
              help="Another catalog data file (tests).")
@click.option("--retries", type=int, default=3, show_default=True, help="Retries of a failed transfer.")
@click.option("--progress/--no-progress", default=None, help="Progress bars [default: when stderr is a terminal].")
def prepare_cmd(name, root, source_dir, only, no_images, mirror, keep_archives, catalog_file, retries, progress):
    """Download (or take from --from DIR), check and extract NAME: voc2007, voc2012, voc0712, coco2017.

    Downloads resume where they stopped; archives are checked against their size and md5, image and box counts
    against the official figures; a `prepared.json` stamp in the data root makes a second call a no-op."""
    import sys

    from .prepare import load_sources, prepare

    prepare(name, root=root, source_dir=source_dir, only=only, images=not no_images, mirror=mirror,
            keep_archives=keep_archives, sources=load_sources(catalog_file) if catalog_file else None,
            progress=sys.stderr.isatty() if progress is None else progress, retries=retries, echo=click.echo)


def _selected(splits: dict, wanted: tuple[str, ...], spec: str) -> dict:
    if not wanted:
        return splits
    missing = [s for s in wanted if s not in splits]
    if missing:
        raise BenchError(f"dataset {spec!r} has no split {', '.join(missing)} (it has: {', '.join(splits)})")
    return {k: v for k, v in splits.items() if k in wanted}


@data.command("check")
@click.argument("spec")
@click.option("--split", "splits", multiple=True, type=click.Choice(["train", "test"]), help="only these splits")
@click.option("--no-images", is_flag=True, help="do not decode the image files (fast)")
@click.option("--json", "as_json", is_flag=True, help="print the reports as JSON")
@click.option("--strict", is_flag=True, help="exit with status 1 if any problem is found")
def check_cmd(spec, splits, no_images, as_json, strict):
    """Validate a dataset (catalog name, path or spec): counts per class, box sizes and every problem found."""
    from .catalog import load
    from .check import check, format_report

    loaded = _selected(load(spec), splits, spec)
    reports = {k: check(ds, images=not no_images) for k, ds in loaded.items()}
    if as_json:
        click.echo(dumps_json(reports, indent=True).decode())
    else:
        click.echo("\n\n".join(f"[{k}] {format_report(r)}" for k, r in reports.items()))
    if strict and not all(r["ok"] for r in reports.values()):
        click.get_current_context().exit(1)


def _read_problems(ds) -> str:
    """What the loader dropped or clipped while reading a split (`ds.info`): a conversion loses it from the output,
    so it is counted here, never silent."""
    from .check import _describe

    parts = [f"{n} {_describe(reason)}" for key in ("skipped", "fixed")
             for reason, n in sorted((ds.info.get(key) or {}).items()) if n]
    return "; ".join(parts)


def _output_folder(dst: Path, overwrite: bool):
    """DST as an `OwnedFolder`: empty or new; or, with --overwrite, an earlier conversion's output, which is
    removed first (the whole dataset is replaced). A folder holding any file no conversion wrote is refused."""
    from benchmark.owned import RECORD, OwnedFolder

    folder = OwnedFolder(dst, COMMAND)
    if not dst.is_dir() or not any(p.name != RECORD for p in dst.iterdir()):
        return folder.open("DST")
    if not overwrite:
        raise BenchError("DST is not empty (an earlier export or other files): mixing two datasets in one folder "
                         "would load as one; give --overwrite to replace an earlier `bench data convert` output, or "
                         "choose an empty folder", dst)
    folder.open("DST")
    foreign = folder.foreign()
    if foreign:
        raise BenchError(f"DST holds {len(foreign)} file(s) `{COMMAND}` did not write or that changed since (e.g. "
                         f"{foreign[0]}): --overwrite replaces only an earlier conversion, never other files", dst)
    folder.remove_earlier()
    return folder


COMMAND = "bench data convert"


class _WritableFormats(click.Choice):
    """`--to`: the formats with a `save` in `FORMATS`, read when the option is used, so a format registered after
    this module was imported is offered too."""

    def __init__(self):
        super().__init__([])

    @property  # type: ignore[override]
    def choices(self):
        return tuple(writable())

    @choices.setter
    def choices(self, value):
        pass


@data.command("convert")
@click.argument("src")
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--to", "fmt", required=True, type=_WritableFormats(),
              help="output format (the dataset formats that can be written)")
@click.option("--split", "splits", multiple=True, type=click.Choice(["train", "test"]),
              help="only these splits (default: all)")
@click.option("--images", default="symlink", show_default=True, type=click.Choice(["symlink", "copy", "none"]),
              help="how VOC/YOLO outputs get their image files")
@click.option("--overwrite", is_flag=True,
              help="replace the dataset an earlier conversion wrote in DST (refused if DST holds other files)")
def convert_cmd(src, dst, fmt, splits, images, overwrite):
    """Convert dataset SRC (catalog name, path or spec) into DST as COCO json, VOC or YOLO (or a plug-in format).

    COCO writes DST/train.json and DST/test.json (or DST itself if it ends in .json and one split is chosen);
    VOC writes ImageSets/Main/trainval.txt and test.txt; YOLO writes images|labels/train and val. `bench data
    check DST` and `load(DST)` read the result back. DST must be empty or new: --overwrite replaces an earlier
    conversion's output as a whole (DST/.noisybox-written.json records its files), and is refused where DST
    holds anything else. What the reader dropped or clipped, and what the format cannot keep, is counted."""
    from .catalog import load

    out_format = FORMATS.get(fmt)
    source = Path(src).expanduser()
    root = source.parent if source.suffix.lower() in (".yaml", ".yml") else source  # a YOLO dataset's yaml
    if root.is_dir() and root.resolve() == dst.resolve():
        raise BenchError("DST is the source dataset's own folder: converting in place would overwrite its files; "
                         "choose another folder", dst)
    loaded = _selected(load(src), splits, src)
    single = out_format.single_suffix is not None and dst.suffix.lower() == out_format.single_suffix
    if single and len(loaded) != 1:
        raise BenchError(f"a single {out_format.single_suffix} output needs exactly one split: add --split train or "
                         "--split test", dst)
    if out_format.check_names is not None:
        for ds in loaded.values():  # before anything is written or replaced
            out_format.check_names([c["name"] for c in ds.categories])
    if out_format.split_file is not None and source.is_file():
        for split in loaded:
            out = out_format.split_file(dst, out_format.split_map[split])
            if out.resolve() == source.resolve():
                raise BenchError("the output would overwrite the source file; choose another DST", out)
    if single:
        if dst.is_dir() or ((dst.exists() or dst.is_symlink()) and not overwrite):
            raise BenchError("exists: give --overwrite to replace it, or choose another DST", dst)
        folder = None
    else:
        folder = _output_folder(dst, overwrite)
    files: list = []
    try:
        _convert(loaded, dst, out_format, images, files)
    finally:
        if folder is not None and (files or folder.before):
            for f in files:
                folder.add(f)
            folder.save()


def _convert(loaded: dict, dst: Path, fmt, images: str, files: list) -> None:
    """Write each split with the format's `save`, print what it wrote and what did not make it; `files` collects
    the paths written."""
    state: dict = {}  # shared by the splits of this conversion (VOC: one Annotations/ folder for all of them)
    for split, ds in loaded.items():
        name = fmt.split_map[split]
        out, summary = fmt.save(ds, dst, name, images=images, files=files, state=state)
        extra = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items() if k not in ("images", "boxes") and v)
        click.echo(f"{split} -> {out} ({fmt.name} split {name!r}): {summary['images']} images, {summary['boxes']} boxes"
                   + (f"; {extra}" if extra else ""))
        read = _read_problems(ds)
        if read:
            click.echo(f"  not converted as the source has it (left out or clipped while reading {split}): {read}")
