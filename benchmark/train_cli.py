"""`bench train` and `bench predict`: one method on one dataset, from the command line.

`bench train --method M --dataset D [--noise-file F] --profile P --out DIR` writes
  DIR/config.json, DIR/train/{checkpoint.pth, model_final.pth, train.log, train_metrics.json[, refined_boxes.json]},
  and (unless --no-eval) DIR/predictions.json + DIR/metrics.json on the dataset's clean test split.
`bench predict --checkpoint C --dataset D --out DIR` predicts and evaluates a trained model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from benchmark.config import PROFILES
from benchmark.errors import BenchError

THREADS_HELP = ("CPU threads for torch (default: torch's choice, one per core). On a shared machine use 1: "
                "oversubscribed threads make a training step up to 10x slower")


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def load_splits(spec: str, progress: bool = True) -> dict:
    from benchmark.datasets import load

    return load(spec, progress=progress)


def apply_noise_file(train, noise_file: Path):
    """The training split with annotations from a noise file (COCO json: noisy `bbox`, clean `true_bbox`)."""
    from benchmark.datasets.coco import load_coco

    noisy = load_coco(noise_file, image_root=train.image_root)
    by_id = {im["id"]: im for im in train.images}
    for im in noisy.images:
        own = by_id.get(im["id"])
        if own is None or own["file_name"] != im["file_name"]:
            raise BenchError(f"image {im['id']} ({im['file_name']}) is not in the training split of the dataset",
                             noise_file)
    if sorted(c["id"] for c in noisy.categories) != sorted(c["id"] for c in train.categories):
        raise BenchError("categories differ from the dataset's", noise_file)
    if not any("true_bbox" in a for a in noisy.annotations):
        click.echo(f"warning: {noise_file} has no true_bbox fields; the clean oracle would train on its bbox",
                   err=True)
    _check_clean_boxes(train, noisy, noise_file)
    out = train.subset(im["id"] for im in noisy.images).replace_annotations(
        noisy.annotations, name=f"{train.name}+{Path(noise_file).stem}")
    out.info = {**train.info, "noisybox": noisy.info.get("noisybox", {})}
    return out


def _check_clean_boxes(train, noisy, noise_file: Path) -> None:
    """The file's clean boxes (`true_bbox`) must be this training split's boxes: a file made from another dataset
    that shares its image ids and names (another `shapes` seed, another split) would train on other boxes."""
    own = {a["id"]: a["bbox"] for a in train.annotations}
    pairs = [(a["id"], a["true_bbox"], own.get(a["id"])) for a in noisy.annotations if a.get("true_bbox") is not None]
    wrong = [(aid, tb, box) for aid, tb, box in pairs if box is None or not _same_box(tb, box)]
    if wrong:
        aid, tb, box = wrong[0]
        what = "no such annotation" if box is None else f"its box is {box}"
        raise BenchError(f"its clean boxes are not this dataset's: {len(wrong)} of {len(pairs)} true_bbox differ "
                         f"(annotation {aid}: true_bbox {tb}, the dataset: {what}); was it made from another "
                         "dataset or split?", noise_file)


def _same_box(a, b) -> bool:
    try:
        return len(a) == len(b) == 4 and all(abs(float(u) - float(v)) <= 1e-4 for u, v in zip(a, b))
    except (TypeError, ValueError):  # a true_bbox that is no list of numbers is no clean box of ours
        return False


def evaluate_and_write(test, detections: list[dict], out: Path, extra: dict | None = None) -> dict:
    from benchmark.evaluation import evaluate
    from benchmark.io import write_json

    metrics = evaluate(test, detections)
    metrics.update(extra or {})
    write_json(out / "predictions.json", detections)
    write_json(out / "metrics.json", metrics, indent=True)
    return metrics


def _print_metrics(test, detections, metrics) -> None:
    from benchmark.evaluation.cli import format_table

    click.echo(format_table(test, len(detections), metrics))


@click.command("train")
@click.option("--method", "method_name", required=True, help="method adapter name (see `bench methods`)")
@click.option("--dataset", "dataset_spec", required=True,
              help="catalog name (shapes, shapes-mini, bccd) or a COCO json / VOC root / YOLO root")
@click.option("--noise-file", type=click.Path(dir_okay=False, path_type=Path),
              help="noisy training annotations (COCO json with clean boxes in true_bbox, from `bench noise`)")
@click.option("--profile", type=click.Choice(PROFILES), default="cpu", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="output directory")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path),
              help="local initial weights (backbone or detector state dict) instead of downloading")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="config override, repeatable (e.g. --set train.lr=0.01 --set train.epochs=6)")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML file of config overrides, the keys --set takes (--set wins)")
@click.option("--seed", type=int, help="initialisation seed (train.seed)")
@click.option("--data-seed", type=int, help="data order / augmentation seed (train.data_seed)")
@click.option("--noise-level", type=float, help="noise level for method defaults (else read from the noise file)")
@click.option("--resume/--no-resume", default=True, show_default=True, help="continue from DIR/train/checkpoint.pth")
@click.option("--eval/--no-eval", "do_eval", default=True, show_default=True,
              help="predict and evaluate on the test split after training")
@click.option("--threads", type=click.IntRange(min=1), help=THREADS_HELP)
@click.option("--quiet", is_flag=True, help="no progress bars")
def train(method_name, dataset_spec, noise_file, profile, out, weights, sets, config_file, seed, data_seed,
          noise_level, resume, do_eval, threads, quiet):
    """Train one method on one dataset (noisy boxes from --noise-file), then evaluate on the clean test split."""
    _set_threads(threads)
    from benchmark.config import config_file_sets, dataset_kind, parse_overrides, resolve_config
    from benchmark.io import write_json
    from methods import get_method

    method = get_method(method_name)
    splits = load_splits(dataset_spec, progress=not quiet)
    if "train" not in splits:
        raise BenchError(f"dataset has no train split (has {', '.join(sorted(splits))})", dataset_spec)
    train_ds = splits["train"]
    if noise_file is not None:
        train_ds = apply_noise_file(train_ds, noise_file)
        if noise_level is None:  # `bench noise` records the level in the file's info
            level = (train_ds.info.get("noisybox") or {}).get("level")
            noise_level = float(level) if isinstance(level, (int, float)) and not isinstance(level, bool) else None
    overrides = parse_overrides([*(config_file_sets(config_file) if config_file else []), *sets])
    if weights is not None:
        overrides["model.weights"] = str(weights)
    if seed is not None:
        overrides["train.seed"] = seed
    if data_seed is not None:
        overrides["train.data_seed"] = data_seed
    cfg = resolve_config(method, profile, dataset_kind(train_ds), noise_level, overrides)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {**cfg, "run": {"method": method_name, "dataset": dataset_spec,
                                                    "noise_file": str(noise_file) if noise_file else None,
                                                    "train_fingerprint": train_ds.fingerprint()}}, indent=True)
    t0 = time.perf_counter()
    result = method.train(train_ds, cfg, out / "train", resume=resume, progress=not quiet)
    train_s = time.perf_counter() - t0
    if not result.metrics:  # a non-zero DDP rank: rank 0 evaluates
        return
    click.echo(f"trained {method_name}: {result.metrics.get('iterations')} iterations in "
               f"{result.metrics.get('train_seconds', train_s):.0f}s -> {result.checkpoint}", err=True)
    if not do_eval:
        return
    if "test" not in splits:
        click.echo("no test split: skipping evaluation", err=True)
        return
    test = splits["test"]
    t1 = time.perf_counter()
    dets = method.predict(result.checkpoint, test, cfg, progress=not quiet)
    predict_s = time.perf_counter() - t1
    metrics = evaluate_and_write(test, dets, out, {
        "train": result.metrics,
        "timing": {"train_s": round(train_s, 2), "predict_s": round(predict_s, 2)}})
    _print_metrics(test, dets, metrics)


@click.command("predict")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, path_type=Path),
              help="model_final.pth / checkpoint.pth, or a run directory holding one (bench train --out, a results-store cell)")
@click.option("--dataset", "dataset_spec", required=True, help="catalog name or dataset path")
@click.option("--split", default="test", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--method", "method_name", help="method adapter (default: the one recorded in the checkpoint)")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
@click.option("--eval/--no-eval", "do_eval", default=True, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help=THREADS_HELP)
@click.option("--quiet", is_flag=True)
def predict(checkpoint, dataset_spec, split, out, method_name, device, do_eval, threads, quiet):
    """Predict a dataset split with a trained model; write predictions.json (+ metrics.json)."""
    import torch

    _set_threads(threads)

    from benchmark.engine import find_checkpoint
    from benchmark.io import write_json
    from methods import get_method

    checkpoint = find_checkpoint(checkpoint)
    if method_name is None:
        path = checkpoint
        try:
            meta = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BenchError(f"cannot read checkpoint ({type(exc).__name__})", path) from None
        method_name = meta.get("method") if isinstance(meta, dict) else None
        if not method_name:
            raise BenchError("checkpoint does not record its method; pass --method", path)
    method = get_method(method_name)
    splits = load_splits(dataset_spec, progress=not quiet)
    if split not in splits:
        raise BenchError(f"dataset has no split {split!r} (has {', '.join(sorted(splits))})", dataset_spec)
    test = splits[split]
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dets = method.predict(checkpoint, test, {"train": {"device": device}}, progress=not quiet)
    seconds = time.perf_counter() - t0
    if not do_eval:
        write_json(out / "predictions.json", dets)
        click.echo(f"{len(dets)} detections -> {out / 'predictions.json'}", err=True)
        return
    metrics = evaluate_and_write(test, dets, out, {"timing": {"predict_s": round(seconds, 2)}})
    _print_metrics(test, dets, metrics)
    print(f"predictions and metrics written to {out}", file=sys.stderr)
