"""`bench noise`: list noise models, make noisy training sets, print their realised noise, draw them."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from benchmark.errors import BenchError
from benchmark.io import atomic_write_bytes, atomic_write_text, dumps_json, read_json, sha256_bytes, sha256_file
from noise.levels import parse_levels
from noise.make import (
    MANIFEST_FORMAT,
    RNG_MODES,
    calibrate,
    check_levels,
    iter_noisy,
    params_record,
    try_levels,
    write_levels,
)
from noise.make import model_from_spec as make_model_from_spec
from noise.registry import NOISE_MODELS, NoiseModel, get_model

MMDET_CONFIG = "mmdet_config.py"  # written beside each noisy file by --emit mmdet-config


@click.group("noise")
def noise():
    """Make, inspect and list box-noise models."""


@noise.command("ls")
def ls_cmd():
    """List the noise models: name, level range, kind, what it models."""
    rows = []
    for name in NOISE_MODELS.names():
        nm = get_model(name)
        origin = NOISE_MODELS.origin(name)
        params = ", ".join(f"{k}={v!r}" for k, v in nm.defaults().items())
        extra = (" [oamil-legacy]" if nm.legacy else "") + ("" if origin == "builtin" else f" ({origin})")
        rows.append((name, nm.level_range(), nm.kind, nm.summary + extra, params))
    width = max(len(r[0]) for r in rows)
    for name, lv, kind, summary, params in rows:
        click.echo(f"{name:<{width}}  {lv:<7} {kind:<8} {summary}")
        if params:
            click.echo(f"{'':<{width}}  {'':<7} {'':<8} params: {params}")


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def model_from_spec(spec: str, params: tuple[str, ...]) -> tuple[str | NoiseModel, dict]:
    """`noise.make.model_from_spec` with `-p key=value` strings (values read as JSON where they parse)."""
    parsed = {}
    for item in params:
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise BenchError(f"--param {item!r}: use key=value")
        parsed[key] = _value(val)
    return make_model_from_spec(spec, parsed)


def _tag(label: str, level: float, seed: int, variant: str = "") -> str:
    """The folder of one level: the level as written back exactly (`0.4`, `1e-05`, `0.1000000001`), so two
    levels never share a folder and 0.99999999 is not named `r1`; `variant` (`_variant`) tells apart outputs of
    other parameters or generators."""
    text = repr(float(level))
    text = text[:-2] if text.endswith(".0") else text
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", f"{label}-r{text}-s{seed}" + (f"-{variant}" if variant else ""))


def _variant(manifest: dict, default_params: dict, layout: str) -> str:
    """What besides model, level and seed makes this output differ from the default run's, for its folder name:
    the generator (`oamil-legacy`, and the --layout given), and `p<hash>` of parameters other than the defaults.
    Empty for the default run, which keeps its plain name."""
    parts = []
    if manifest["rng"] != "numpy":
        parts.append(manifest["rng"] + (f"-{layout}" if layout != "auto" else ""))
    if dumps_json(manifest["params"]) != dumps_json(default_params) or manifest.get("param_files"):
        recorded = {"params": manifest["params"], "param_files": manifest.get("param_files") or {}}
        parts.append("p" + sha256_bytes(dumps_json(recorded))[:8])
    return "-".join(parts)


def _refuse_other_output(folder: Path, payload: bytes, manifest: dict) -> Path:
    """`folder`, unless it holds another noisy output than this one (a run on other data, or of another suite
    version): replacing the same bytes is harmless, replacing other ones would destroy them."""
    data, old = folder / "train.json", folder / "manifest.json"
    sha = sha256_bytes(payload)
    if data.is_file() and sha256_file(data) != sha:
        raise BenchError("holds another noisy training set than this run makes (other data, parameters or suite "
                         "version): not overwriting it; choose another --out or remove the folder", folder)
    if old.is_file():
        try:
            recorded = read_json(old)
            same = recorded.get("format") == MANIFEST_FORMAT and recorded["output"]["sha256"] == sha
        except (BenchError, AttributeError, KeyError, TypeError):
            same = False
        if not same:
            raise BenchError("holds a manifest.json of another output than this run makes: not overwriting it; "
                             "choose another --out or remove the folder", folder)
    return folder


@noise.command("make")
@click.option("--dataset", "-d", required=True, help="catalog name (shapes, bccd, ...) or dataset path")
@click.option("--model", "-m", default="uniform", show_default=True,
              help="noise model, or a composition such as uniform+missing@0.1")
@click.option("--level", "-l", "levels", required=True, help="levels: 0.4, 0.1..0.4 (step 0.1), 0.1,0.3")
@click.option("--seed", "-s", type=int, default=None, help="noise seed [default: 0; 45 with --rng oamil-legacy]")
@click.option("--rng", type=click.Choice(RNG_MODES), default="numpy", show_default=True,
              help="oamil-legacy regenerates OA-MIL's published files (model uniform)")
@click.option("--layout", type=click.Choice(["auto", "coco", "voc"]), default="auto", show_default=True,
              help="which mmdet 2.x parser --rng oamil-legacy mimics")
@click.option("--param", "-p", "params", multiple=True, help="model parameter key=value (value as JSON)")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="output directory")
@click.option("--emit", multiple=True, type=click.Choice(["mmdet-config"]), help="also write an mmdet 3.x config")
@click.option("--mmdet-base", default=None, help="detector config the mmdet config inherits")
def make_cmd(dataset, model, levels, seed, rng, layout, params, out, emit, mmdet_base):
    """Write noisy training sets: OUT/<model>-r<level>-s<seed>/{train.json,manifest.json}; the test split is
    written clean once, to OUT/test.json. Other parameters than the model's defaults add `-p<hash>` to the folder
    name, another --rng adds its name; a folder (or test.json) holding another output is never overwritten."""
    from tqdm import tqdm

    from benchmark.datasets import load
    from noise.mmdet_config import DEFAULT_BASE, mmdet_config

    levels = parse_levels(levels)
    if layout != "auto" and rng != "oamil-legacy":  # the layout picks which mmdet 2.x parser the legacy mode mimics
        raise BenchError(f"--layout {layout} applies to --rng oamil-legacy only")
    model_arg, model_params = model_from_spec(model, params)
    check_levels(model_arg, model_params, rng, levels)  # what needs no data, before loading it
    splits = load(dataset, keep_columns=True)
    if "train" not in splits:
        raise BenchError(f"dataset {dataset!r} has no train split")
    train, test = splits["train"], splits.get("test")
    out = Path(out)
    try_levels(train, model_arg, levels, seed=seed, rng=rng, layout=layout, **model_params)  # before writing
    results = iter_noisy(train, model_arg, levels, seed=seed, rng=rng, layout=layout, **model_params)
    test_file = None
    if test is not None:
        test_file, payload = out / "test.json", dumps_json(test.to_coco())
        if test_file.is_file() and sha256_file(test_file) != sha256_bytes(payload):
            raise BenchError("holds the test split of another dataset (or of another version of this one): not "
                             "overwriting it; choose another --out or remove it", test_file)
        atomic_write_bytes(test_file, payload)
    rows = []
    default_model, default_params = make_model_from_spec(model, {})
    default_nm = get_model(default_model) if isinstance(default_model, str) else default_model
    default_record = params_record(default_nm, default_params)["params"]

    def folder(r):
        m = r.manifest
        return _refuse_other_output(out / _tag(m["model"], m["level"], m["seed"], _variant(m, default_record, layout)),
                                    r.payload, m)

    written = write_levels(results, folder)
    for result, paths in tqdm(written, total=len(levels), desc="noise", unit="level", file=sys.stderr,
                              disable=len(levels) < 2):
        m = result.manifest
        folder = paths["manifest"].parent
        if "mmdet-config" in emit:
            classes = [str(c.get("name", c["id"])) for c in train.categories]
            text = mmdet_config(paths["annotations"], classes, train.image_root, test_file,
                                None if test is None else test.image_root, mmdet_base or DEFAULT_BASE, m)
            atomic_write_text(folder / MMDET_CONFIG, text)
        c, iou = m["counts"], m["realised_iou"]["all"]["mean"]
        rows.append((m["level"], folder, c, iou))
    click.echo(f"{'level':>6} {'perturbed':>9} {'clipped':>8} {'kept':>6} {'removed':>8} {'added':>6} "
               f"{'relabel':>8} {'mean IoU':>9}  folder")
    for level, folder, c, iou in rows:
        click.echo(f"{level:>6g} {c['perturbed']:>9} {c['clipped']:>8} {c['kept_clean_degenerate']:>6} "
                   f"{c['removed']:>8} {c['added']:>6} {c['class_changed']:>8} "
                   f"{'-' if iou is None else format(iou, '.3f'):>9}  {folder}")
    if test_file is not None:
        click.echo(f"clean test split: {test_file}")
    elif (out / "test.json").is_file():  # an earlier run's, for a dataset with a test split: not this one's
        click.echo(f"note: {out / 'test.json'} was left by an earlier run; {dataset!r} has no test split, so it "
                   "is not this dataset's test split", err=True)


def _load_noisy(path: str):
    from benchmark.datasets.core import DetectionDataset

    coco = read_json(path)
    if not isinstance(coco, dict) or not isinstance(coco.get("annotations"), list) \
            or not isinstance(coco.get("images"), list):
        raise BenchError("not a COCO annotation file (needs 'images' and 'annotations' lists)", path)
    try:
        return DetectionDataset.from_coco(coco, source=str(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"malformed annotations ({type(exc).__name__}: {exc})", path) from None


@noise.command("calibrate")
@click.option("--dataset", "-d", required=True, help="catalog name (shapes, bccd, ...) or dataset path")
@click.option("--model", "-m", default="uniform", show_default=True, help="noise model (a geometric one)")
@click.option("--target", "-t", "target", required=True, type=float, help="realised mean IoU wanted, in (0, 1)")
@click.option("--seed", "-s", type=int, default=None, help="noise seed [default: 0]")
@click.option("--param", "-p", "params", multiple=True, help="model parameter key=value (value as JSON)")
def calibrate_cmd(dataset, model, target, seed, params):
    """The level at which MODEL gives realised mean IoU TARGET on the dataset's train split (then use it as
    `noise make --level` / `bench run --noise`)."""
    from benchmark.datasets import load

    model_arg, model_params = model_from_spec(model, params)
    splits = load(dataset, keep_columns=True)
    if "train" not in splits:
        raise BenchError(f"dataset {dataset!r} has no train split")
    level = calibrate(splits["train"], model_arg, target, seed=seed, **model_params)
    click.echo(f"{level:g}")


@noise.command("stats")
@click.argument("file", type=click.Path())
@click.option("--manifest", type=click.Path(), default=None,
              help="the file's manifest (default: manifest.json beside FILE, if it describes FILE)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def stats_cmd(file, manifest, as_json):
    """Realised noise of a noisy file: IoU(noisy, clean) overall and by box size; relabelled and removed
    annotations from its manifest."""
    from noise.stats import format_stats, noise_stats

    stats = noise_stats(_load_noisy(file), _manifest_of(Path(file), manifest))
    click.echo(json.dumps(stats, indent=2, sort_keys=True) if as_json else format_stats(stats))


def _manifest_of(file: Path, given: str | None) -> dict | None:
    """The manifest `bench noise make` wrote for FILE: the one given (an error if it describes another file), else
    `manifest.json` beside FILE when its output hash is FILE's (another file's manifest is no manifest)."""
    from benchmark.io import sha256_file

    path = Path(given) if given else file.with_name("manifest.json")
    if not given and not path.is_file():
        return None
    manifest = read_json(path)
    output = manifest.get("output") if isinstance(manifest, dict) else None
    recorded = output.get("sha256") if isinstance(output, dict) else None
    if isinstance(recorded, str) and recorded == sha256_file(file):
        return manifest
    if given:
        raise BenchError(f"not the manifest of {file} (its output sha256 differs)", path)
    return None


def _image_prefix_beside(file: Path) -> str | None:
    """The training image folder recorded in the `mmdet_config.py` beside FILE (`bench noise make --emit
    mmdet-config` writes it; the noisy json itself holds no paths, so that it stays byte-identical across
    machines)."""
    import ast

    from noise.mmdet_config import TRAIN_IMAGES_VAR

    cfg = file.with_name(MMDET_CONFIG)
    if not cfg.is_file():
        return None
    try:
        tree = ast.parse(cfg.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and TRAIN_IMAGES_VAR in [getattr(t, "id", None) for t in node.targets]:
            value = node.value.value if isinstance(node.value, ast.Constant) else None
            return value if isinstance(value, str) and Path(value).is_dir() else None
    return None


def _is_box(b) -> bool:
    return isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                       for v in b)


def _ids(items) -> list:
    """Image ids as typed: integers where they read as integers (COCO ids usually are), else the text."""
    return [int(i) if i.lstrip("-").isdigit() else i for i in items]


@noise.command("show")
@click.argument("file", type=click.Path())
@click.option("--out", "-o", "out_png", required=True, type=click.Path(dir_okay=False),
              help="picture to write: .png, or .jpg / .pdf / .svg by its extension")
@click.option("--manifest", type=click.Path(dir_okay=False), default=None,
              help="manifest (default: manifest.json beside FILE, if any) to draw removed boxes")
@click.option("--image-root", type=click.Path(file_okay=False), default=None, help="folder the file_names are in")
@click.option("--dataset", "-d", default=None, help="take the image folder from this dataset's train split")
@click.option("--n", "n_images", type=int, default=6, show_default=True, help="number of images")
@click.option("--seed", type=int, default=0, show_default=True, help="which images (seeded choice)")
@click.option("--image-id", "image_ids", multiple=True, help="draw this image (repeatable); instead of a random choice")
@click.option("--worst", type=int, default=None, help="draw the N images whose noisy boxes have the lowest IoU")
@click.option("--class", "category", default=None, help="only boxes of this class (name or id)")
@click.option("--refined", type=click.Path(dir_okay=False), default=None,
              help="a method's refined boxes (a cell's refined_boxes.json), drawn blue")
@click.option("--predictions", type=click.Path(dir_okay=False), default=None,
              help="detections (COCO results json, e.g. a cell's predictions.json), drawn dotted orange")
@click.option("--min-score", type=float, default=0.3, show_default=True, help="predictions scored below are not drawn")
def show_cmd(file, out_png, manifest, image_root, dataset, n_images, seed, image_ids, worst, category, refined,
             predictions, min_score):
    """Draw a few images of a noisy file with clean (green) and noisy (red) boxes."""
    from noise.show import draw_noisy

    noisy = _load_noisy(file)
    beside = Path(file).with_name("manifest.json")
    man = read_json(manifest) if manifest else (read_json(beside) if beside.is_file() else None)
    if image_root is None and dataset:
        from benchmark.datasets import load

        image_root = load(dataset)["train"].image_root
    if image_root is None and not dataset:
        image_root = _image_prefix_beside(Path(file))
    extra = {}
    for name, path in (("refined", refined), ("predictions", predictions)):
        if path is not None:
            boxes = read_json(path)
            if not isinstance(boxes, list) or not all(isinstance(a, dict) and _is_box(a.get("bbox"))
                                                      and "image_id" in a for a in boxes):
                raise BenchError(f"--{name} must be a list of {{image_id, category_id, bbox}} records", path)
            extra[name] = boxes
    done = draw_noisy(noisy, out_png, man, image_root, n_images, seed, image_ids=_ids(image_ids), worst=worst,
                      category=category, min_score=min_score, **extra)
    hint = "" if image_root or dataset else "; say where the images are with --image-root DIR or --dataset SPEC"
    note = f" ({done['missing_image_files']} image files not found: drawn on grey{hint})" \
        if done["missing_image_files"] else ""
    ids = f" (ids {', '.join(map(str, done['image_ids']))})" if worst or image_ids else ""
    click.echo(f"wrote {out_png}: {done['images']} images{ids}{note}")
