"""`bench eval`: score a detections file against ground truth (COCO AP and/or VOC AP50, or any registered
evaluator: `benchmark.evaluation.metrics`), print a table."""

from __future__ import annotations

import math
from pathlib import Path

import click

from benchmark.errors import BenchError

SPEC_PREFIXES = ("coco:", "shapes:")  # specs `benchmark.datasets.load` reads (`coco:A.json,B.json` ends in .json)


def is_json_file(spec: str) -> bool:
    """A single COCO json, scored as it is (no split), rather than a dataset spec."""
    path = Path(spec)
    return path.suffix.lower() == ".json" and not path.is_dir() and not spec.startswith(SPEC_PREFIXES)


def load_ground_truth(spec: str, split: str):
    """A COCO json file as it is, else any dataset spec `bench data` takes (catalog name, `coco:TRAIN,TEST`,
    `shapes:...`, a folder) via `benchmark.datasets.load`, split `split`."""
    if is_json_file(spec):
        from benchmark.datasets.coco import load_coco

        return load_coco(spec)
    from benchmark.datasets import load

    splits = load(spec)
    if split not in splits:
        raise BenchError(f"dataset has no split {split!r} (has {', '.join(sorted(splits)) or 'none'})", spec)
    return splits[split]


UNDEFINED = "–"  # how an undefined metric prints everywhere (reports and the leaderboard too); never 0.0


def _pts(v, scale: float = 100.0) -> str:
    return UNDEFINED if v is None or not math.isfinite(v) else f"{scale * v:.1f}"


def noisy_marker(gt) -> str | None:
    """What shows `gt` is a noisy training file rather than ground truth, or None: the marker `bench noise make`
    writes (`info.noisybox`), or clean boxes kept beside noisy ones (`true_bbox`). Scoring against noisy boxes
    gives numbers that mean nothing (perfect detections of the clean boxes score far below 100)."""
    made = gt.info.get("noisybox") if isinstance(gt.info, dict) else None
    if made is not None:
        what = ", ".join(f"{k} {made[k]}" for k in ("model", "level") if isinstance(made, dict) and k in made)
        return "its info.noisybox marks it as made by `bench noise make`" + (f" ({what})" if what else "")
    carrier = next((a for a in gt.annotations if "true_bbox" in a), None)
    if carrier is not None:
        return f"annotation {carrier.get('id')} carries a true_bbox (the clean box beside a noisy one)"
    return None


def _gt_problems(gt) -> str | None:
    """One line on ground-truth boxes the loader dropped or repaired (they change what is scored)."""
    info = gt.info or {}
    parts = [f"{n} {reason}" for reason, n in {**info.get("skipped", {}), **info.get("fixed", {})}.items() if n]
    return "ground truth problems (see `bench data check`): " + ", ".join(parts) if parts else None


def format_table(gt, num_detections: int, results: dict) -> str:
    """Metrics as shown values (AP points: x100, one decimal, as papers print them); `–` where undefined. One block
    per evaluator in `results` (`benchmark.evaluation.metrics`): a line for a single metric, else a row of names
    over a row of values; then a per-class column for each evaluator that has one."""
    from benchmark.evaluation import metrics as registry
    from benchmark.evaluation.coco import class_names

    n_ignored = sum(1 for a in gt.annotations if a.get("ignore") or a.get("iscrowd"))
    lines = [f"{len(gt.images)} images, {len(gt.annotations)} ground-truth boxes ({n_ignored} ignored: crowd or "
             f"difficult), {gt.num_classes} classes, {num_detections} detections"]
    if (note := _gt_problems(gt)) is not None:
        lines.append(note)
    shown = [e for e in registry.evaluator_names() if results.get(e) is not None]
    for name in shown:
        ev, section = registry.get_evaluator(name), results[name]
        ms = registry.metrics(evaluator=name)
        values = [_pts(section.get(m.key), m.scale) for m in ms]
        if len(ms) == 1:
            lines += ["", f"{ev.title}: {values[0]}"]
        else:
            widths = [max(5, len(m.key), len(v)) for m, v in zip(ms, values)]
            lines += ["", ev.title, "  ".join(f"{m.key:>{w}}" for m, w in zip(ms, widths)),
                      "  ".join(f"{v:>{w}}" for v, w in zip(values, widths))]
    columns = [(registry.get_evaluator(e).per_class, results[e].get("per_class") or {}) for e in shown
               if registry.get_evaluator(e).per_class]
    names = class_names(gt)
    width = max([len(n) for n in names] + [8])
    lines += ["", f"{'class':<{width}}" + "".join(f"  {head}" for head, _ in columns)]
    for n in names:
        lines.append(f"{n:<{width}}" + "".join(f"  {_pts(values.get(n)):>{len(head)}}" for head, values in columns))
    return "\n".join(lines)


@click.command("eval")
@click.option("--gt", "gt_spec", required=True,
              help="ground truth: a COCO json, or a dataset spec `bench data` takes (catalog name, "
                   "coco:TRAIN.json,TEST.json, shapes:..., a VOC / YOLO / COCO folder) with --split")
@click.option("--dt", "dt_path", required=True, type=click.Path(dir_okay=False),
              help="detections: COCO results json (also mmdet .bbox.json, detectron2, ultralytics) or an mmdet "
                   "tools/test.py --out pickle (pickles can run code: only load trusted files)")
@click.option("--metric", default=None,
              help="comma-separated evaluators (`benchmark.evaluation.metrics`; built in: coco, voc); default: all")
@click.option("--split", default="test", show_default=True, help="split of a dataset spec (ignored for a json)")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="also write the metrics (fractions) here")
@click.option("--classes", default=None,
              help="comma-separated class names in detector label order (mmdet config `classes`); "
                   "default: ground-truth categories by id")
@click.option("--category-ids", type=click.Choice(["dataset", "index0", "index1"]), default="dataset",
              show_default=True, help="what json category_id holds: GT category ids or 0/1-based class indices")
@click.option("--match-images", type=click.Choice(["id", "file_stem"]), default="id", show_default=True,
              help="match detection image ids (json or pickle) to GT image ids, or to image file stems "
                   "(ultralytics, mmdet 3.x on VOC)")
@click.option("--allow-noisy-gt", is_flag=True,
              help="score against a noisy training file (info.noisybox / true_bbox) as it is; refused otherwise")
def eval_cmd(gt_spec, dt_path, metric, split, json_out, classes, category_ids, match_images, allow_noisy_gt):
    """Evaluate detections against ground truth: COCO AP (faster-coco-eval) and VOC AP50 (mmdet eval_map)."""
    from benchmark.evaluation import evaluate, load_detection_arrays
    from benchmark.evaluation.detections import boxes_past_image
    from benchmark.evaluation.metrics import evaluator_names
    from benchmark.io import write_json

    known = evaluator_names()
    metrics = known if metric is None else [m.strip().lower() for m in metric.split(",") if m.strip()]
    bad = [m for m in metrics if m not in known]
    if bad or not metrics:
        raise BenchError(f"--metric {metric!r}: choose from {', '.join(known)}")
    gt = load_ground_truth(gt_spec, split)
    if not allow_noisy_gt and (why := noisy_marker(gt)) is not None:
        raise BenchError(f"ground truth is a noisy file: {why}; score against the clean annotations, or pass "
                         "--allow-noisy-gt to score against the noisy boxes as they are", gt_spec)
    class_list = [c.strip() for c in classes.split(",")] if classes else None
    dets = load_detection_arrays(dt_path, gt, classes=class_list, category_ids=category_ids,
                                 match_images=match_images)
    results = evaluate(gt, dets, metrics)
    click.echo(format_table(gt, len(dets), results))
    if (note := boxes_past_image(gt, dets)) is not None:
        click.echo(note, err=True)
    if json_out:
        write_json(json_out, {"gt": gt_spec, "split": None if is_json_file(gt_spec) else split,
                              "detections": str(dt_path), "num_detections": len(dets), **results}, indent=True)
        click.echo(f"\nwrote {json_out}")
